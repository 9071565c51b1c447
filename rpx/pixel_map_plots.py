"""Summaries and pictures of `rpx.pixel_map` scans: vulnerable shares and heat maps.

`vulnerable_share` is a pure array function (works on numpy or JAX arrays, under jit);
`heatmap_figure` draws on a bare matplotlib Figure (Agg), imported lazily, so the
library needs no display, leaves pyplot's state alone, and pays matplotlib's import
only when a figure is drawn.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def vulnerable_share(pixel_map, region) -> jnp.ndarray:
    """Per image, the share of the scanned pixels inside `region` that one pixel fools.

    Args:
      pixel_map: an `rpx.PixelMap` with fitness [N, H, W] and fooled [N, H, W].
      region: bool [N, H, W] or [H, W], the pixels to count (e.g. the foreground).

    Returns:
      float32 [N]: sum(fooled & region & scanned) / sum(region & scanned), where
      scanned are the pixels the scan evaluated (finite fitness); NaN for an image
      with no scanned pixel in `region`, so it cannot pass for a share of 0.
    """
    fooled = jnp.asarray(pixel_map.fooled)
    region = jnp.asarray(region)
    if region.dtype != bool:
        raise ValueError(f"region must be a bool mask, got dtype {region.dtype}")
    if region.shape not in (fooled.shape, fooled.shape[1:]):
        raise ValueError(
            f"region must be [N, H, W] = {fooled.shape} or [H, W] = {fooled.shape[1:]}, "
            f"got {region.shape}"
        )
    counted = jnp.isfinite(pixel_map.fitness) & region
    total = counted.sum((1, 2))
    hits = (fooled & counted).sum((1, 2))
    return jnp.where(total > 0, hits / jnp.maximum(total, 1), jnp.nan).astype(jnp.float32)


def heatmap_figure(
    images,
    pixel_map,
    foreground,
    path: str,
    *,
    value_range: tuple[float, float] = (0.0, 255.0),
    titles=None,
    columns: int = 8,
) -> str:
    """Write a PNG grid: each image overlaid with its scan's fitness heat map.

    Each panel shows the image, the best fitness at every scanned pixel as a
    semi-transparent heat map (unscanned pixels left clear), a red dot on every pixel
    where some tried colour fools the classifier, and the foreground outline in white.

    Args:
      images: [N, H, W, C] (C = 1 or 3), values in value_range.
      pixel_map: an `rpx.PixelMap` of those images (fitness, fooled [N, H, W]).
      foreground: bool [N, H, W] or [H, W], outlined; None draws no outline.
      path: where the PNG goes (its folder must exist).
      value_range: (lo, hi) of the image values, for display.
      titles: N strings above the panels; None: index and vulnerable share.
      columns: panels per row.

    Returns:
      path.
    """
    # A bare Figure renders PNGs with Agg and leaves pyplot's global backend alone.
    from matplotlib.figure import Figure

    images = np.asarray(images, np.float32)
    fitness = np.asarray(pixel_map.fitness, np.float32)
    fooled = np.asarray(pixel_map.fooled, bool)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, C] with C in (1, 3), got {images.shape}")
    n, h, w, _ = images.shape
    if fitness.shape != (n, h, w) or fooled.shape != (n, h, w):
        raise ValueError(f"pixel_map must be of images {(n, h, w)}, got {fitness.shape}")
    if foreground is not None:
        foreground = np.broadcast_to(np.asarray(foreground), (n, h, w))
        if foreground.dtype != bool:
            raise ValueError(f"foreground must be a bool mask, got dtype {foreground.dtype}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per image ({n}), got {len(titles)}")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be an integer >= 1, got {columns!r}")
    lo, hi = value_range
    shown = np.clip((images - lo) / (hi - lo), 0.0, 1.0)
    if shown.shape[-1] == 1:
        shown = np.repeat(shown, 3, axis=-1)
    share = np.asarray(vulnerable_share(pixel_map, np.ones((h, w), bool)))
    finite = fitness[np.isfinite(fitness)]
    vmin, vmax = (0.0, 1.0) if finite.size == 0 else (float(finite.min()), float(finite.max()))

    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.2 * cols, 2.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    heat = None
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(shown[i], interpolation="nearest")
        # Masked (unscanned, NaN) pixels stay clear, so the image shows through.
        heat = ax.imshow(
            np.ma.masked_invalid(fitness[i]),
            cmap="magma",
            alpha=0.55,
            vmin=vmin,
            vmax=vmax,
            interpolation="nearest",
        )
        rr, cc = np.nonzero(fooled[i])
        ax.scatter(cc, rr, s=max(1.0, 600.0 / max(h, w)), c="red", marker="o", linewidths=0)
        if foreground is not None and foreground[i].any() and not foreground[i].all():
            ax.contour(foreground[i].astype(float), levels=[0.5], colors="white", linewidths=1)
        ax.set_title(titles[i] if titles is not None else f"{i}: {share[i]:.0%} fooled", fontsize=8)
    if heat is not None:
        fig.colorbar(heat, ax=axes, shrink=0.6, label="fitness (p[label] or p[target])")
    fig.savefig(path, dpi=100)
    return path
