"""Pixel-space maps (issue 7): an exhaustive one-pixel scan against DE, per region.

    python -m experiments.pixel_maps --samples 20 --population 400 --generations 10

Scans every pixel x the 8 colour-cube corners of each sample (correctly classified
images, labels = clean predictions), then runs one-pixel untargeted DE in each region
and compares. Writes WORKDIR/pixel_maps.json and WORKDIR/figures/heatmaps.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import numpy as np

import rpx
from experiments import classifiers, cli, masks, scan_vs_de, store
from experiments.atomic import write_atomic
from experiments.grid import FIELD_DEFAULTS, Grid
from experiments.images import ASSETS, cifar10_test
from experiments.samples import pick_samples
from rpx.plots import heatmap_figure


def _main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.pixel_maps", description=__doc__)
    p.add_argument("--model", default=os.path.join(ASSETS, "cifar10_compact"))
    p.add_argument("--data-file", default=os.path.join(ASSETS, "cifar10_test_sample100.npz"))
    p.add_argument("--masks", help="a mask cache of the same images (python -m experiments.masks)")
    defaults = {**FIELD_DEFAULTS, "samples": 20}  # Grid's, but 20 images
    for flag in ("samples", "population", "generations", "seed"):
        p.add_argument(f"--{flag}", type=int, default=defaults[flag])
    p.add_argument("--workdir", default="runs/pixel-maps")
    args = p.parse_args(argv)
    grid = Grid(models={"m": args.model}, pixels=(1,), attacks=("untargeted",),
                samples=args.samples, seed=args.seed,
                population=args.population, generations=args.generations)  # fmt: skip
    cli.check_files(data_file=args.data_file, masks=args.masks)
    images = cifar10_test(args.data_file)
    loaded = classifiers.load(grid.models, "cifar10", "--data-dir=DATA", images.images.shape[1:])
    classifiers.check_labels(images.labels, loaded, images.name)
    predict, info = loaded["m"]
    data = rpx.segment.data_identity(images.images, images.labels)
    shape = images.images.shape[:3]
    given = masks.given_masks(args.masks, data, shape) if args.masks else None
    # Data the classifier gets entirely wrong is refused before the workdir is touched.
    idx, clean = pick_samples(predict, images, grid.samples, grid.seed)
    with store.locked(args.workdir):
        path = os.path.join(args.workdir, "masks.npz")
        cache = given or masks.workdir_masks(path, images.images, data)
        x, y, fg = images.images[idx], clean.argmax(1).astype(np.int32), np.asarray(cache[idx])
        print(budget := grid.budget_line(paper_samples=500))
        scan, out = scan_vs_de.compare(predict, x, y, fg, grid)
        shown = slice(0, min(16, len(idx)))
        figure = write_atomic(
            os.path.join(args.workdir, "figures", "heatmaps.png"),
            lambda tmp: heatmap_figure(
                x[shown], jax.tree.map(lambda a: a[shown], scan), fg[shown], tmp
            ),
        )
        settings = dict(
            model=args.model, classifier=info, data=f"{images.name} ({data})",
            masks=cache.settings, seed=grid.seed, samples=len(idx), dataset_indices=idx.tolist(),
            population=grid.population, generations=grid.generations, budget=budget,
            scan="every pixel x 8 cube corners", scan_evaluations_per_image=int(fg[0].size * 8),
        )  # fmt: skip
        text = json.dumps(dict(settings=settings, **out), indent=1, default=str)
        write_atomic(os.path.join(args.workdir, "pixel_maps.json"), text)
    print("\n".join(scan_vs_de.report(out)) + f"; wrote {args.workdir}/pixel_maps.json, {figure}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 with a message for bad input)."""
    return cli.main_guard(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
