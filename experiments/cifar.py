"""Reproduce the paper's CIFAR-10 results (Tables II and IV, Figs. 3-6).

    python -m experiments.cifar --preset=demo            # a few minutes on a laptop CPU
    python -m experiments.cifar --region=background --data-dir=DATA --workdir=runs/cifar

Results go to WORKDIR/results.jsonl as they are found (a re-run continues where the last
one stopped), summaries to WORKDIR/table.md and WORKDIR/figures/. GrabCut masks come
from --masks (a cache of the same images made by `python -m experiments.masks`) or are
built once into WORKDIR/masks.npz.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments import classifiers, cli, figures, masks, tables
from experiments.grid import ATTACKS
from experiments.grid.runner import run_grid
from experiments.grid.samples import pick_all
from experiments.images import ASSETS, cifar10_test

# Grid overrides (and other flags) for CIFAR-10; the rest is `Grid`'s defaults.
DEFAULTS = dict(
    models=dict.fromkeys(("allconv", "nin", "vgg16_cifar")), pixels=(1, 3, 5),
    attacks=ATTACKS, workdir="runs/cifar", classifiers=ASSETS,
)  # fmt: skip
# A preset: Grid overrides (and other flags), over DEFAULTS, under the flags given.
PRESETS = {
    "demo": dict(
        models={"compact_fast": os.path.join(ASSETS, "cifar10_compact_fast")},  # 29 min, 2-core CPU
        data_file=os.path.join(ASSETS, "cifar10_test_sample100.npz"),
        samples=20,
        pixels=(1,),
        attacks=("untargeted",),
        population=200,
        generations=30,
        workdir="runs/demo",
    ),  # fmt: skip
}


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 with a message for bad input)."""
    return cli.main_guard(_main, argv)


def _main(argv) -> int:
    from rpx import segment

    p = argparse.ArgumentParser(prog="python -m experiments.cifar", description=__doc__)
    cli.add_grid_flags(p, DEFAULTS)
    p.add_argument("--masks", help="a mask cache of the same images (python -m experiments.masks)")
    args = cli.resolve(p.parse_args(argv), PRESETS, DEFAULTS)
    grid = cli.grid_from(args, "cifar10")
    cli.check_files(data_file=args.data_file, masks=args.masks)
    images = cifar10_test(args.data_file, args.data_dir)
    loaded = classifiers.load(grid.models, "cifar10", "--data-dir=DATA", images.images.shape[1:])
    classifiers.check_labels(images.labels, loaded, images.name)
    data = segment.data_identity(images.images, images.labels)
    shape = images.images.shape[:3]
    given = masks.given_masks(args.masks, data, shape) if args.masks else None
    budget = grid.budget_line(paper_samples=500)
    print(f"preset {args.preset}: " * bool(args.preset) + budget)
    settings = dict(
        dataset="cifar10", data=data,
        masks=given.settings if given else segment.GrabCutSettings().to_dict(),
    )  # fmt: skip
    picks = pick_all(grid, images, loaded)  # bad data refused before the workdir is touched
    shape = images.images.shape[1:3]
    with grid.open_workdir(args.workdir, settings, loaded, images, shape) as results:
        path = os.path.join(args.workdir, "masks.npz")
        cache = given or masks.workdir_masks(path, images.images, data)
        foreground = lambda idx, _: cache[idx]  # noqa: E731
        run_grid(grid, results, images, loaded, foreground, picks)
        header = f"# CIFAR-10 results\n\n{budget}; data {images.name} ({data})."
        written = [tables.write_table(args.workdir, results.records, header, num_targets=9)]
        written += figures.write_figures(args.workdir, results.records, images,
                                         figures.CIFAR10_CLASSES, 9, foreground)  # fmt: skip
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
