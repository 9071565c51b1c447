"""Build a GrabCut mask cache for a dataset split.

    python -m rpx.segment --dataset=cifar10 --split=test --out=cache/masks/cifar10-test.npz \
        [--data-dir DIR] [--workers N] [--upscale 4] [--margin 0.1] [--iterations 3]

Reads the split with rpx.datasets (DIR/{dataset}-{split}.npz with --data-dir, else
tensorflow-datasets), segments every image in parallel, writes the cache and prints
images/s and how many images took each path. The cache records the images' count and
content digest (`data_identity`). An existing cache of the same images with the same
settings is kept; one of other images or settings is refused unless --force.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from rpx.segment.cache import MaskCache, build_cache, data_identity
from rpx.segment.grabcut import GrabCutSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rpx.segment",
        description="Build a GrabCut foreground-mask cache for a dataset split.",
    )
    parser.add_argument("--dataset", required=True, help="e.g. cifar10")
    parser.add_argument("--split", required=True, help="e.g. test")
    parser.add_argument("--out", required=True, help="output .npz mask cache")
    parser.add_argument("--data-dir", default=None, help="folder with {dataset}-{split}.npz")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--force", action="store_true", help="rebuild even if --out matches")
    defaults = GrabCutSettings()
    for field in dataclasses.fields(GrabCutSettings):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(getattr(defaults, field.name)),
            default=getattr(defaults, field.name),
            help=f"GrabCutSettings.{field.name} (default {getattr(defaults, field.name)})",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from train import datasets

        settings = GrabCutSettings(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(GrabCutSettings)}
        )
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        if not args.out.endswith(".npz"):
            raise ValueError(f"--out must be a .npz file, got {args.out!r}")
        n_total = len(datasets.source(args.dataset, args.split, args.data_dir))
        n = n_total if args.limit is None else min(args.limit, n_total)
        indices = None if args.limit is None else range(n)
        images, labels = datasets.load_arrays(args.dataset, args.split, args.data_dir, indices)
        data = data_identity(images, labels)
        if os.path.exists(args.out) and not args.force:
            try:
                cache = MaskCache(args.out, settings, data)
            except ValueError as err:
                raise ValueError(f"--out exists and differs ({err}); use --force") from None
            print(f"{args.out}: up to date ({n} masks, {cache.path_counts()})")
            return 0
        start = time.perf_counter()
        cache = build_cache(
            images,
            args.out,
            settings,
            data=data,
            workers=args.workers,
            dataset=args.dataset,
            split=args.split,
            count=int(n),
        )
        seconds = time.perf_counter() - start
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{args.out}: {len(cache)} masks in {seconds:.1f} s ({len(cache) / seconds:.1f} images/s, "
        f"workers={args.workers or os.cpu_count()}); paths {cache.path_counts()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
