"""Reproduce the paper's CIFAR-10 results (Tables II and IV, Figs. 3-6).

    python -m experiments.cifar --preset=demo            # a few minutes on a laptop CPU
    python -m experiments.cifar --region=background --data-dir=DATA --workdir=runs/cifar

Results go to WORKDIR/results.jsonl as they are found (a re-run continues where the last
one stopped), summaries to WORKDIR/table.md and WORKDIR/figures/. GrabCut masks come
from --masks (a cache of the same images made by `python -m rpx.segment`) or are built
once into WORKDIR/masks.npz.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from experiments import cli, common, summary

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
    from rpx import datasets

    if args.data_file:
        if not os.path.isfile(args.data_file):
            raise ValueError(f"--data-file {args.data_file} does not exist")
        with np.load(args.data_file) as d:
            src = datasets.ArraySource(d["image"], d["label"], name=args.data_file)
        return src.images, src.labels, os.path.abspath(args.data_file)
    images, labels = datasets.load_arrays("cifar10", "test", args.data_dir)
    return images, labels, f"cifar10/test from {args.data_dir or 'tfds'}"


def mask_cache(path: str, images: np.ndarray, data: str, given: bool):
    """The GrabCut mask cache of `images`: `path` as given (--masks, any settings, same
    number of images), else WORKDIR's, built on first use with the default settings.
    `data` (common.data_identity) names the images in the cache, whatever their path."""
    from rpx import segment

    if given:
        cache = segment.MaskCache(path)  # ValueError "path: ..." when missing
        if len(cache) != len(images):
            raise ValueError(f"--masks {path} holds {len(cache)} masks for {len(images)} images")
        return cache
    if not os.path.exists(path):
        print(f"segmenting {len(images)} images with GrabCut into {path} ...")
        return segment.build_cache(images, path, dataset="cifar10", data=data)
    cache = segment.MaskCache(path, segment.GrabCutSettings())
    if len(cache) != len(images) or cache.meta.get("data") != data:
        raise ValueError(f"{path} holds masks of other images; remove it or use another --workdir")
    return cache


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 with a message for bad input)."""
    return cli.main_guard(_main, argv)


def _main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.cifar", description=__doc__)
    cli.add_grid_flags(p, DEFAULTS["models"], DEFAULTS["pixels"], DEFAULTS["attack"])
    p.add_argument("--masks", help="a mask cache of the same images (python -m rpx.segment)")
    args = cli.resolve(p.parse_args(argv), PRESETS, DEFAULTS)
    grid = cli.grid_from(args, "cifar10")
    images, labels, source = load_images(args)
    loaded = cli.load_classifiers(grid, "cifar10", "--data-dir=DATA")
    print(f"preset {args.preset}: " * bool(args.preset) + cli.budget_line(grid, 500))
    path = args.masks or os.path.join(args.workdir, "masks.npz")
    data = common.data_identity(images, labels)
    cache = mask_cache(path, images, data, given=bool(args.masks))
    settings = dict(
        dataset="cifar10", data=data, seed=grid.seed, population=grid.population,
        generations=grid.generations, masks=cache.settings,
    )  # fmt: skip
    header = f"# CIFAR-10 results\n\n{cli.budget_line(grid, 500)}; data {source} ({data})."

    def summarise(records):
        names = summary.plots.CIFAR10_CLASSES
        yield summary.write_table(args.workdir, records, header, num_targets=9)
        yield from summary.write_figures(
            args.workdir, records, get, names, num_targets=9, foreground=fg
        )

    def get(indices):
        return images[indices], labels[indices]

    fg = lambda idx, _: cache[idx]  # noqa: E731
    return cli.run(grid, settings, args.workdir, len(images), get, loaded, fg, summarise)


if __name__ == "__main__":
    sys.exit(main())
