"""All-class one-pixel corner maps of the paper's networks, per region (issue 16).

    python -m experiments.corner_maps --models=allconv,nin,compact_fast --images=500 \
        --workdir=runs/corner-maps [--batch=4] [--data-file=...]
    python -m experiments.corner_maps --report --workdir=runs/corner-maps [--de=DE_WORKDIR]
    python -m experiments.corner_maps --certify --models=allconv --images=50 --batch=2 \
        --workdir=runs/corner-maps [--max-boxes=64 --search-steps=8 ...]

Scans every pixel x the 8 colour-cube corners of each classifier's first N correctly
classified images (`experiments.corner_maps.study`), batch by batch into WORKDIR/NET/
(resumable: a re-run scans only what is missing), with GrabCut masks of all the images
cached in WORKDIR/masks.npz, then writes report.md, report.json and figures/
(`experiments.corner_maps.analysis`, `experiments.corner_maps.report`). --report only rewrites
the report from the finished batches; it takes no lock, so it can read a running run.
--de adds one-pixel DE of an `experiments.cifar --sample-order=first` workdir on the
same images beside the maps (`experiments.corner_maps.de`). --certify certifies the same
images with `rpx.certify` (any colour) instead of scanning, resumably too
(`experiments.corner_maps.certify`); the report sets the certificates beside the maps.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments import classifiers, cli, masks, store
from experiments.corner_maps import analysis, certify, report, study
from experiments.images import ASSETS, ROOT, cifar10_test
from rpx import incremental, segment

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar10-test-first932.npz")


def _flags(argv):
    p = argparse.ArgumentParser(
        prog="python -m experiments.corner_maps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--models",
        default="allconv,nin,compact_fast",
        help="comma list of names (train/assets/cifar10_NAME) or name=workdir",
    )
    p.add_argument("--images", type=int, default=500, help="first N correct images per net")
    p.add_argument("--batch", type=int, default=4, help="images per batch file")
    p.add_argument("--workdir", default="runs/corner-maps")
    p.add_argument("--data-file", default=DATA, help="one .npz with `image` and `label`")
    p.add_argument("--classifiers", default=ASSETS, help="folder of cifar10_NAME workdirs")
    p.add_argument("--evaluation", default="auto", choices=incremental.EVALUATIONS)
    p.add_argument("--report", action="store_true", help="only (re)write the report")
    p.add_argument("--de", help="comma list of experiments.cifar workdirs of 1-pixel DE")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap and the random controls")
    certify.add_flags(p)
    args = p.parse_args(argv)
    certify.knobs(args)
    for flag, least in (("images", 1), ("batch", 1), ("resamples", 100), ("seed", 0)):
        if getattr(args, flag) < least:
            raise ValueError(f"--{flag} must be >= {least}, got {getattr(args, flag)}")
    if args.seed >= 2**32:
        raise ValueError(f"--seed must be < 2**32, got {args.seed}")
    if not args.workdir:
        raise ValueError("--workdir must not be empty")
    models = cli.models_flag(args.models, args.classifiers, "cifar10", reserved=("figures",))
    if not args.report and not os.path.isfile(args.data_file):
        raise ValueError(f"--data-file {args.data_file} does not exist or is not a file")
    return args, models


def _report(args) -> None:
    de = args.de and [w for w in args.de.split(",") if w]
    summary = analysis.analyse(args.workdir, args.resamples, args.seed, de or None)
    written = report.write(args.workdir, summary)
    done = ", ".join(f"{n} {r['images']} images" for n, r in summary["nets"].items())
    print(f"report of {done or 'no finished batch'}: {', '.join(written)}")


def _main(argv) -> int:
    args, models = _flags(argv)
    if args.report:
        _report(args)
        return 0
    data = cifar10_test(args.data_file)
    identity = segment.data_identity(data.images, data.labels)
    loaded = classifiers.load(models, "cifar10", "--data-dir=DATA", data.images.shape[1:])
    classifiers.check_labels(data.labels, loaded, data.name)
    with store.locked(args.workdir):
        settings = study.settings(identity, args.evaluation)
        store.check_settings(args.workdir, settings, classifiers.digests(loaded))
        masks.workdir_masks(study.mask_path(args.workdir), data.images, identity)
        run = certify.certify_models if args.certify else study.scan_models
        extra = dict(knob_values=certify.knobs(args), stop_after=args.stop_after)
        scanned = run(
            args.workdir, loaded, data.images, data.labels, args.images, args.batch,
            evaluation=args.evaluation, **(extra if args.certify else {}),
        )  # fmt: skip
        if scanned or not os.path.exists(os.path.join(args.workdir, "report.md")):
            _report(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 with a message for bad input)."""
    return cli.main_guard(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
