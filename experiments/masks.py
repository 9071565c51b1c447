"""The experiments' foreground masks: the mask-cache command and the caches a run uses.

    python -m experiments.masks --dataset=cifar10 --split=test --out=cache/masks/cifar10-test.npz \
        [--data-dir DIR] [--workers N] [--limit N] [--force] [--upscale 4] [--margin 0.1] ...

The command reads the split with `train.datasets` (DIR/{dataset}-{split}.npz with
--data-dir, else tensorflow-datasets), segments every image with GrabCut in parallel,
writes an `rpx.segment` mask cache and prints images/s and how many images took each
path. The cache records the images' count and content digest (`rpx.segment.data_identity`): an
existing cache of the same images with the same settings is kept; one of other images
(or another image count) or other settings is refused unless --force rebuilds it.

Every cache below is an `rpx.segment.MaskCache` file, tied to the images it holds masks of:
- CIFAR-10 (GrabCut): one cache for the whole data set: `given_masks` (--masks, any
  settings) or `workdir_masks` (WORKDIR/masks.npz, default settings, built on first use).
- ImageNet (U^2-Net): `u2net_masks`, masks of the picked images only, cached by dataset
  index in WORKDIR/masks-u2net.npz with a SHA-256 of each image (recorded in the cache's
  meta), so an index whose image changed is refused instead of given another's mask.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import time

import numpy as np

from rpx import segment


def given_masks(path: str, data: str, shape) -> segment.MaskCache:
    """The --masks cache (any settings) if it holds masks of these images (`data`,
    `rpx.segment.data_identity`) of (N, H, W) `shape`, else ValueError."""
    try:
        return _of_shape(segment.MaskCache(path, data=data), shape)
    except ValueError as err:
        raise ValueError(f"--masks {path}: {err}") from None


def _of_shape(cache: segment.MaskCache, shape) -> segment.MaskCache:
    """`cache` if it holds one mask per image of (N, H, W) `shape`: its `data` record is
    only what the file says of itself."""
    if cache.shape != tuple(shape):
        raise ValueError(f"holds masks [N, H, W] = {cache.shape}, the images are {tuple(shape)}")
    return cache


def workdir_masks(path: str, images: np.ndarray, data: str) -> segment.MaskCache:
    """WORKDIR's GrabCut cache of `images` (default settings), built on first use."""
    if not os.path.exists(path):
        print(f"segmenting {len(images)} images with GrabCut into {path} ...")
        return segment.build_cache(images, path, dataset="cifar10", data=data)
    try:
        return _of_shape(segment.MaskCache(path, segment.GrabCutSettings(), data), images.shape[:3])
    except ValueError as err:
        raise ValueError(f"{err}; remove {path} or use another --workdir") from None


def file_identity(path: str) -> str:
    """A file named by content: its base name and a SHA-256 of its bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{os.path.basename(path)}, sha256 {digest.hexdigest()[:16]}"


def u2net_masks(path: str, cache: str, size: int):
    """foreground(indices int [M], images uint8 [M, S, S, 3]) -> bool [M, S, S] with the
    U^2-Net checkpoint at `path` run at `size`, caching masks by dataset index in the
    mask cache `cache` with a SHA-256 of each image: an index whose image changed is
    refused (ValueError), as is a cache made with another checkpoint or size."""
    model, variables = segment.load_u2net(path)
    settings = dict(u2net=file_identity(path), size=size)

    def foreground(indices, images):
        digests = [hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest() for x in images]
        known = _read_u2net_cache(cache, settings)
        changed = [int(i) for i, d in zip(indices, digests, strict=True)
                   if int(i) in known and known[int(i)][1] != d]  # fmt: skip
        if changed:
            raise ValueError(
                f"{cache} holds masks of other images at indices {changed[:10]}: the images "
                "changed since; remove it or use another --workdir"
            )
        todo = [i for i, idx in enumerate(indices) if int(idx) not in known]
        if todo:
            new = segment.u2net.masks(model, variables, images[todo], size=size)
            known.update({int(indices[i]): (m, digests[i]) for i, m in zip(todo, new, strict=True)})
            keys = sorted(known)
            segment.save_masks(
                cache, np.stack([known[k][0] for k in keys]), None, settings, method="u2net",
                index=keys, image_sha256=[known[k][1] for k in keys],
            )  # fmt: skip
        return np.stack([known[int(i)][0] for i in indices])

    return foreground


def _read_u2net_cache(path: str, settings: dict) -> dict:
    """{index: (mask bool [S, S], image sha256)} from the cache at `path` ({} if absent)."""
    if not os.path.exists(path):
        return {}
    try:
        cache = segment.MaskCache(path, settings)
    except ValueError as err:
        raise ValueError(
            f"{path} is not a U^2-Net mask cache of this run ({err}); remove it"
        ) from None
    if not {"index", "image_sha256"} <= cache.meta.keys():
        raise ValueError(f"{path} records no image indices and digests; remove it")
    index, digests = cache.meta["index"], cache.meta["image_sha256"]
    # One dataset index and one image digest per mask: a mask under a wrong or repeated
    # index would be taken for another image's.
    if not (
        isinstance(index, list) and isinstance(digests, list)
        and len(index) == len(digests) == len(cache) == len(set(map(str, index)))
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in index)
        and all(isinstance(d, str) and len(d) == 64 for d in digests)
    ):  # fmt: skip
        raise ValueError(
            f"{path} does not record one distinct image index and SHA-256 per mask "
            f"({len(cache)} masks); remove it"
        )
    masks = cache[np.arange(len(cache))]
    pairs = zip(cache.meta["index"], masks, cache.meta["image_sha256"], strict=True)
    return {int(i): (m, str(h)) for i, m, h in pairs}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.masks",
        description="Build a GrabCut foreground-mask cache for a dataset split.",
    )
    parser.add_argument("--dataset", required=True, help="e.g. cifar10")
    parser.add_argument("--split", required=True, help="e.g. test")
    parser.add_argument("--out", required=True, help="output .npz mask cache")
    parser.add_argument("--data-dir", default=None, help="folder with {dataset}-{split}.npz")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--force", action="store_true", help="rebuild even if --out differs")
    defaults = segment.GrabCutSettings()
    for field in dataclasses.fields(segment.GrabCutSettings):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(getattr(defaults, field.name)),
            default=getattr(defaults, field.name),
            help=f"GrabCutSettings.{field.name} (default {getattr(defaults, field.name)})",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """The mask-cache command; returns the exit status (2 with a message for bad input)."""
    args = _parser().parse_args(argv)
    try:
        from train import datasets

        fields = dataclasses.fields(segment.GrabCutSettings)
        settings = segment.GrabCutSettings(**{f.name: getattr(args, f.name) for f in fields})
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
        data = segment.data_identity(images, labels)
        if os.path.exists(args.out) and not args.force:
            try:
                cache = segment.MaskCache(args.out, settings, data)
            except ValueError as err:
                raise ValueError(f"--out exists and differs ({err}); use --force") from None
            print(f"{args.out}: up to date ({n} masks, {cache.path_counts()})")
            return 0
        start = time.perf_counter()
        info = dict(dataset=args.dataset, split=args.split, count=int(n))
        cache = segment.build_cache(
            images, args.out, settings, data=data, workers=args.workers, **info
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
