"""Pictures for a human check of masks: outline grids and the foreground-fraction histogram
(docs/segmentation/ shows them for the CIFAR-10 GrabCut masks).

    python -m experiments.mask_figures --masks MASKS.npz --images IMAGES.npz --out docs/segmentation

`MASKS.npz` is a mask cache (rpx.segment.MaskCache); `IMAGES.npz` holds `image` uint8
[N, H, W, 3] (e.g. ../shared/data/cifar10-test-first932.npz) in the cache's index order.
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np

from experiments.atomic import write_atomic
from rpx.segment.grabcut import PATHS

# Outline colour per path (RGB): yellow = rectangle GrabCut, cyan = the same at the larger
# retry upscale, magenta = mask-start retry, red = centre-prior fallback.
PATH_COLOURS = ((255, 235, 0), (0, 230, 255), (255, 0, 255), (255, 30, 30))


def outline_grid(
    images: np.ndarray,
    masks: np.ndarray,
    paths: np.ndarray | None = None,
    *,
    columns: int = 16,
    scale: int = 4,
    gap: int = 2,
) -> np.ndarray:
    """Tile images with their mask outlines drawn on top.

    Args:
      images: uint8 [N, H, W, 3] RGB.
      masks: bool [N, H, W], True = foreground.
      paths: optional int [N] path codes (rpx.segment.PATHS); colours the outline per path.
      columns: images per grid row.
      scale: nearest-neighbour magnification of each image, so 1-pixel details stay visible.
      gap: white pixels between tiles.

    Returns:
      uint8 [rows * (scale H + gap), columns * (scale W + gap), 3] RGB grid.
    """
    images = np.asarray(images)
    masks = np.asarray(masks, bool)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks must have shape {images.shape[:3]}, got {masks.shape}")
    if columns < 1 or scale < 1 or gap < 0:
        raise ValueError(f"columns, scale must be >= 1 and gap >= 0, got {columns}, {scale}, {gap}")
    n, h, w, _ = images.shape
    paths = np.zeros(n, np.int64) if paths is None else np.asarray(paths, np.int64)
    rows = -(-n // columns)
    th, tw = h * scale + gap, w * scale + gap
    grid = np.full((rows * th, columns * tw, 3), 255, np.uint8)
    for i in range(n):
        tile = np.ascontiguousarray(np.repeat(np.repeat(images[i], scale, 0), scale, 1))
        big = np.repeat(np.repeat(masks[i], scale, 0), scale, 1).astype(np.uint8)
        contours, _ = cv2.findContours(big, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(tile, contours, -1, PATH_COLOURS[paths[i]], 1)
        r, c = divmod(i, columns)
        grid[r * th : r * th + h * scale, c * tw : c * tw + w * scale] = tile
    return grid


def save_png(path: str, rgb: np.ndarray, palette: bool = True) -> None:
    """Write an RGB uint8 image [H, W, 3] as PNG; palette=True quantises to 256 colours
    (about 6x smaller for photo grids, small enough to keep in git)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if palette:
        image = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    write_atomic(path, lambda tmp: image.save(tmp, optimize=True))


def fraction_histogram(masks: np.ndarray, paths: np.ndarray, path: str, title: str) -> None:
    """Histogram of foreground fractions (bool [N, H, W] masks), stacked by path, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = np.asarray(masks, bool).mean(axis=(1, 2))
    paths = np.asarray(paths)
    bins = np.linspace(0.0, 1.0, 41)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(
        [fractions[paths == k] for k in range(len(PATHS))],
        bins=bins,
        stacked=True,
        color=[np.array(c) / 255 for c in PATH_COLOURS],
        label=[f"{name} ({int((paths == k).sum())})" for k, name in enumerate(PATHS)],
    )
    ax.axvline(np.median(fractions), color="k", ls="--", lw=1, label="median")
    ax.set_xlabel("foreground fraction of the image")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 with one line for bad input)."""
    from experiments import cli

    return cli.main_guard(_main, argv)


def _main(argv) -> int:
    from rpx.segment.cache import MaskCache
    from train import datasets

    parser = argparse.ArgumentParser(prog="python -m experiments.mask_figures", description=__doc__)
    parser.add_argument("--masks", required=True, help="mask cache .npz")
    parser.add_argument("--images", required=True, help=".npz with `image` uint8 [N,H,W,3]")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--name", default="cifar10-test-first932")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--columns", type=int, default=31)
    args = parser.parse_args(argv)
    try:
        cache = MaskCache(args.masks)
    except ValueError as err:
        raise ValueError(f"--masks {args.masks}: {err}") from None
    flag = f"--images {args.images}"
    images = datasets.read_npz(args.images, ("image",), name=flag)["image"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{flag}: `image` must be uint8 [N, H, W, 3], got {images.dtype} "
                         f"{images.shape}")  # fmt: skip
    if len(cache) < len(images) or cache.shape[1:] != images.shape[1:3]:
        raise ValueError(
            f"--masks holds {len(cache)} masks of {cache.shape[1:]}, --images "
            f"{len(images)} images of {images.shape[1:3]}"
        )
    index = np.arange(len(images))
    masks, paths = cache[index], cache.paths[index]
    os.makedirs(args.out, exist_ok=True)
    grid = outline_grid(images, masks, paths, columns=args.columns, scale=args.scale)
    save_png(os.path.join(args.out, f"{args.name}-grid.png"), grid)
    close = outline_grid(images[:96], masks[:96], paths[:96], columns=12, scale=4)
    save_png(os.path.join(args.out, f"{args.name}-first96.png"), close)
    fraction_histogram(
        masks,
        paths,
        os.path.join(args.out, f"{args.name}-fractions.png"),
        f"GrabCut foreground fractions, {len(images)} images",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
