"""Reproduce the paper's CIFAR-10 results (Tables II and IV, Figs. 3-6).

    python -m experiments.cifar --preset=demo            # a few minutes on a laptop CPU
    python -m experiments.cifar --region=background --data-dir=DATA --workdir=runs/cifar

Results go to WORKDIR/results.jsonl as they are found (a re-run continues where the last
one stopped), summaries to WORKDIR/table.md and WORKDIR/figures/. GrabCut masks come
from --masks (a cache of the same images made by `python -m experiments.masks`) or are built
once into WORKDIR/masks.npz.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from experiments import cli, common, figures, masks, tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "train", "assets")
DEFAULTS = dict(
    region="all", models="allconv,nin,vgg16_cifar", pixels="1,3,5", attack="both",
    samples=500, population=400, generations=100, restriction="table", seed=0,
    batch_size=16, workdir="runs/cifar", classifiers=ASSETS,
)  # fmt: skip
PRESETS = {
    "demo": dict(
        models=f"compact_fast={os.path.join(ASSETS, 'cifar10_compact_fast')}",  # 29 min, 2-core CPU
        data_file=os.path.join(ASSETS, "cifar10_test_sample100.npz"),
        samples=20,
        pixels="1",
        attack="untargeted",
        population=200,
        generations=30,
        workdir="runs/demo",
    ),  # fmt: skip
}


def load_images(args) -> tuple[np.ndarray, np.ndarray, str]:
    """uint8 [N, 32, 32, 3] test images, int labels, and a name for the source."""
    from train import datasets

    if args.data_file:
        flag = f"--data-file {args.data_file}"
        try:
            with np.load(args.data_file, allow_pickle=False) as d:
                missing = {"image", "label"} - set(d.files)
                images, labels = (None, None) if missing else (d["image"], d["label"])
        except Exception as err:  # zip, npy (no .files) and pickle errors: not an npz
            raise ValueError(f"{flag} is not a readable .npz file ({err})") from None
        if missing:
            raise ValueError(f"{flag} has no {sorted(missing)} array(s); it needs `image`, `label`")
        src = datasets.ArraySource(images, labels, name=flag)
        return src.images, src.labels, os.path.abspath(args.data_file)
    images, labels = datasets.load_arrays("cifar10", "test", args.data_dir)
    return images, labels, f"cifar10/test from {args.data_dir or 'tfds'}"


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 with a message for bad input)."""
    return cli.main_guard(_main, argv)


def _main(argv) -> int:
    from rpx import segment

    p = argparse.ArgumentParser(prog="python -m experiments.cifar", description=__doc__)
    cli.add_grid_flags(p, DEFAULTS["models"], DEFAULTS["pixels"], DEFAULTS["attack"])
    p.add_argument("--masks", help="a mask cache of the same images (python -m experiments.masks)")
    args = cli.resolve(p.parse_args(argv), PRESETS, DEFAULTS)
    grid = cli.grid_from(args, "cifar10")
    cli.check_files(data_file=args.data_file, masks=args.masks)
    images, labels, source = load_images(args)
    loaded = cli.load_classifiers(grid, "cifar10", "--data-dir=DATA", images.shape[1:])
    cli.check_labels(labels, loaded, source)
    data = common.data_identity(images, labels)
    given = masks.given_masks(args.masks, data) if args.masks else None
    print(f"preset {args.preset}: " * bool(args.preset) + cli.budget_line(grid, 500))
    settings = dict(
        dataset="cifar10", data=data, seed=grid.seed, population=grid.population,
        generations=grid.generations,
        masks=given.settings if given else segment.GrabCutSettings().to_dict(),
    )  # fmt: skip
    header = f"# CIFAR-10 results\n\n{cli.budget_line(grid, 500)}; data {source} ({data})."

    def summarise(records):
        names = figures.CIFAR10_CLASSES
        yield tables.write_table(args.workdir, records, header, num_targets=9)
        yield from figures.write_figures(
            args.workdir, records, get, names, num_targets=9, foreground=fg
        )

    def get(indices):
        return images[indices], labels[indices]

    fg = lambda idx, _: cache[idx]  # noqa: E731
    with cli.open_workdir(args.workdir, settings, loaded) as results:
        cache = given or masks.workdir_masks(os.path.join(args.workdir, "masks.npz"), images, data)
        return cli.run(grid, results, len(images), get, loaded, fg, summarise)


if __name__ == "__main__":
    sys.exit(main())
