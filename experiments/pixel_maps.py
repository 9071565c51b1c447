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
import time

import jax
import numpy as np

import rpx
from experiments import cifar, cli, common, masks, store
from rpx.plots import heatmap_figure, vulnerable_share

COMPACT = os.path.join(cifar.ASSETS, "cifar10_compact")
DATA = os.path.join(cifar.ASSETS, "cifar10_test_sample100.npz")


def _main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.pixel_maps", description=__doc__)
    p.add_argument("--model", default=COMPACT, help="classifier workdir (default: compact)")
    p.add_argument("--data-file", default=DATA, help="one .npz with `image` and `label`")
    p.add_argument("--masks", help="a mask cache of the same images (python -m experiments.masks)")
    for flag, default in dict(samples=20, population=400, generations=100, seed=0).items():
        p.add_argument(f"--{flag}", type=int, default=default)
    p.add_argument("--workdir", default="runs/pixel-maps")
    args = p.parse_args(argv)
    fixed = dict(region="all", pixels="1", attack="untargeted", restriction="table")
    vars(args).update(fixed, data_dir=None, models=f"m={args.model}", batch_size=16)
    grid = cli.grid_from(args, "cifar10")
    cli.check_files(data_file=args.data_file, masks=args.masks)
    images, labels, source = cifar.load_images(args)
    loaded = cli.load_classifiers(grid, "cifar10", "--data-dir=DATA", images.shape[1:])
    cli.check_labels(labels, loaded, source)
    predict, info = loaded["m"]
    data = common.data_identity(images, labels)
    given = masks.given_masks(args.masks, data) if args.masks else None
    with store.locked(args.workdir):
        os.makedirs(os.path.join(args.workdir, "figures"), exist_ok=True)
        cache = given or masks.workdir_masks(os.path.join(args.workdir, "masks.npz"), images, data)
        get = lambda i: (images[i], labels[i])  # noqa: E731
        idx, clean = common.pick_samples(predict, get, len(images), args.samples, args.seed)
        x, y, fg = images[idx], clean.argmax(1).astype(np.int32), np.asarray(cache[idx])
        print(budget := cli.budget_line(grid, 500))

        start = time.perf_counter()
        scan = jax.block_until_ready(rpx.pixel_map(predict, x, y))
        scan_s = time.perf_counter() - start
        share_fg = np.asarray(vulnerable_share(scan, fg))
        share_bg = np.asarray(vulnerable_share(scan, ~fg))
        config = rpx.AttackConfig(
            pixels=1, population=args.population, generations=args.generations
        )
        fooled = np.asarray(scan.fooled)
        per_region, de_s = {}, 0.0
        for name in rpx.regions.REGION_NAMES:
            mask = np.asarray(rpx.regions.mask(name, fg))
            vulnerable = (fooled & mask).any((1, 2))
            key = common.cell_key(args.seed, "m", name, 1, "table", "untargeted")
            start = time.perf_counter()
            de = rpx.run(predict, x, y, region=mask, config=config, key=key, progress=False)
            success = np.asarray(de.success)
            de_s += time.perf_counter() - start
            per_region[name] = dict(
                images=len(idx), scan_vulnerable=int(vulnerable.sum()),
                de_success=int(success.sum()), missed_by_de=int((vulnerable & ~success).sum()),
                de_only=int((success & ~vulnerable).sum()),
            )  # fmt: skip
        shown = slice(0, min(16, len(idx)))
        figure = heatmap_figure(
            x[shown], jax.tree.map(lambda a: a[shown], scan), fg[shown],
            os.path.join(args.workdir, "figures", "heatmaps.png"),
        )  # fmt: skip
        settings = dict(
            model=args.model, classifier=info, data=f"{source} ({data})", masks=cache.settings,
            seed=args.seed, samples=len(idx), dataset_indices=idx.tolist(),
            population=args.population, generations=args.generations, budget=budget,
            scan="every pixel x 8 cube corners",
            scan_evaluations_per_image=int(fg[0].size * 8),
        )  # fmt: skip
        out = dict(
            settings=settings,
            seconds=dict(scan=round(scan_s, 1), de=round(de_s, 1)),
            regions=per_region,
            mean_vulnerable_share=dict(
                foreground=float(np.nanmean(share_fg)), background=float(np.nanmean(share_bg))
            ),
            per_image_share=dict(foreground=share_fg.tolist(), background=share_bg.tolist()),
        )
        with open(os.path.join(args.workdir, "pixel_maps.json"), "w") as f:
            json.dump(out, f, indent=1, default=str)
        print("| region | images | scan-vulnerable | DE successes | missed by DE | DE only |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, r in per_region.items():
            print(f"| {name} | {' | '.join(str(v) for v in r.values())} |")
        share = out["mean_vulnerable_share"]
        print(f"mean vulnerable share: foreground {share['foreground']:.2%}, "
              f"background {share['background']:.2%}")  # fmt: skip
        print(
            f"scan {scan_s:.1f} s, DE {de_s:.1f} s; wrote {args.workdir}/pixel_maps.json, {figure}"
        )
        return 0


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 with a message for bad input)."""
    return cli.main_guard(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
