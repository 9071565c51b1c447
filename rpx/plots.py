"""Pictures of attack results a researcher reuses on their own runs, as PNG files.

- `adversarial_grid`: adversarial images with the changed pixels circled (and the
  region each attack could change outlined).
- `fitness_plot`: fitness curves (e.g. `AttackResult.fitness_curve`) per group, with
  their means.
- `heatmap_figure`: an `rpx.pixel_map` scan drawn over each image; `vulnerable_share`,
  the share of a region's pixels one pixel fools (a pure array function, jit-able).
- `certificate_figure`: an `rpx.certify` certificate beside each image: proved-safe,
  fooled and undecided pixels.
- `save_figure`: write a matplotlib Figure as a PNG, creating its folder.

matplotlib is imported when a figure is drawn, never by `import rpx` or `import
rpx.plots`. Figures are bare `matplotlib.figure.Figure`s rendered with Agg: no display
is needed and pyplot's global state is left alone. The paper's own figures (Figs. 3-6
from results.jsonl) are the experiments' (`experiments/figures.py`).
"""

from __future__ import annotations

import math
import os

import jax.numpy as jnp
import numpy as np

from rpx import checks


def _figure(**kwargs):
    """A bare matplotlib Figure (imported here: matplotlib loads only when drawing)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _displayed(images, value_range, titles, columns) -> np.ndarray:
    """Images [N, H, W, C] (C = 1 or 3) in value_range as RGB in [0, 1] for imshow,
    after checking them, the titles (one per image) and columns (ValueError)."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, C] with C in (1, 3), got {images.shape}")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles must have one entry per image ({len(images)}), got {len(titles)}")
    checks.positive_int("columns", columns, 1)
    lo, hi = value_range
    shown = np.clip((images - lo) / (hi - lo), 0.0, 1.0)
    return np.repeat(shown, 3, axis=-1) if shown.shape[-1] == 1 else shown


def save_figure(fig, path: str, dpi: int = 110) -> str:
    """Write `fig` (a matplotlib Figure) to the PNG `path`, creating its folder, with a
    tight bounding box; returns path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def adversarial_grid(
    images,
    positions,
    titles=None,
    path: str = "examples.png",
    cols: int = 6,
    title: str = "",
    regions=None,
) -> str:
    """A grid of adversarial images with their changed pixels circled in red. Returns path.

    Args:
      images: uint8 [M, H, W, 3] adversarial images.
      positions: int [M, k, 2] (row, col) of the changed pixels; (-1, -1) = unchanged.
      titles: M strings (e.g. "cat -> dog 0.71"), or None.
      path: where the PNG goes (its folder is created).
      regions: bool [M, H, W], the region each attack was allowed to change, outlined in
        cyan (nothing is drawn for a region that is the whole image or empty), or None.
    """
    images = np.asarray(images)
    positions = np.asarray(positions)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be [M, H, W, C] with M >= 1, got {images.shape}")
    if positions.ndim != 3 or positions.shape[0] != len(images) or positions.shape[2] != 2:
        raise ValueError(f"positions must be [M, k, 2], got {positions.shape}")
    if regions is not None:
        regions = np.asarray(regions)
        if regions.dtype != bool or regions.shape != images.shape[:3]:
            raise ValueError(
                f"regions must be bool [M, H, W] = {list(images.shape[:3])}, "
                f"got {regions.dtype} {list(regions.shape)}"
            )
    cols = min(cols, len(images))
    rows = -(-len(images) // cols)
    from matplotlib.patches import Circle

    fig = _figure(figsize=(2.0 * cols, 2.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    h = images.shape[1]
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[: len(images)]):
        ax.imshow(images[i], interpolation="nearest")
        if regions is not None and 0 < regions[i].sum() < regions[i].size:
            ax.contour(regions[i].astype(float), levels=[0.5], colors="cyan", linewidths=1.0)
        for r, c in positions[i]:
            if r >= 0:
                ax.add_patch(Circle((c, r), max(1.5, h / 14), fill=False, color="red", lw=1.5))
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def fitness_plot(curves: dict, path: str, title: str = "", max_lines: int = 15) -> str:
    """Fitness curves: per panel the curves (grey) and their mean (red dots); a last
    panel puts the means together (the paper's Fig. 6). Returns path.

    Args:
      curves: {name: float [M, G+1]}, e.g. `AttackResult.fitness_curve` rows per region.
      path: where the PNG goes (its folder is created).
      max_lines: grey curves drawn per panel (the first ones); the mean uses all.
    """
    if not curves:
        raise ValueError("curves must not be empty")
    n = len(curves) + 1
    fig = _figure(figsize=(3.8 * n, 3.2))
    axes = fig.subplots(1, n, squeeze=False)
    means = {}
    for ax, (name, c) in zip(axes[0], curves.items(), strict=False):
        c = np.asarray(c, float)
        if c.size:
            for line in c[:max_lines]:
                ax.plot(line, color="0.6", lw=0.8)
            means[name] = np.nanmean(c, axis=0)
            ax.plot(means[name], "r:", lw=2, label="mean")
            ax.legend(fontsize=8)
        ax.set_title(f"{name} ({len(c)} images)", fontsize=9)
        ax.set_xlabel("generation")
        ax.set_ylabel("fitness (p[label])")
    ax = axes[0, -1]
    for name, m in means.items():
        ax.plot(m, lw=2, label=name)
    ax.set_title("means", fontsize=9)
    ax.set_xlabel("generation")
    if means:
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


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
    shown = _displayed(images, value_range, titles, columns)
    fitness = np.asarray(pixel_map.fitness, np.float32)
    fooled = np.asarray(pixel_map.fooled, bool)
    n, h, w, _ = shown.shape
    if fitness.shape != (n, h, w) or fooled.shape != (n, h, w):
        raise ValueError(f"pixel_map must be of images {(n, h, w)}, got {fitness.shape}")
    if foreground is not None:
        foreground = np.broadcast_to(np.asarray(foreground), (n, h, w))
        if foreground.dtype != bool:
            raise ValueError(f"foreground must be a bool mask, got dtype {foreground.dtype}")
    share = np.asarray(vulnerable_share(pixel_map, np.ones((h, w), bool)))
    finite = fitness[np.isfinite(fitness)]
    vmin, vmax = (0.0, 1.0) if finite.size == 0 else (float(finite.min()), float(finite.max()))

    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = _figure(figsize=(2.2 * cols, 2.4 * rows))
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


# Certificate colours: proved safe, fooled (a confirmed witness), undecided.
CERTIFICATE_COLORS = {
    "safe": (0.1, 0.7, 0.2),
    "fooled": (0.9, 0.1, 0.1),
    "undecided": (1.0, 0.8, 0.0),
}


def certificate_figure(
    images,
    certificate,
    path: str,
    *,
    value_range: tuple[float, float] = (0.0, 255.0),
    titles=None,
    columns: int = 6,
) -> str:
    """Write a PNG: each image beside its `rpx.Certificate`, every certified pixel
    coloured proved safe (green), fooled (red) or undecided (yellow), pixels outside the
    region left as the image shows them.

    Args:
      images: [N, H, W, C] (C = 1 or 3), values in value_range.
      certificate: an `rpx.Certificate` of those images.
      path: where the PNG goes (its folder is created).
      value_range: (lo, hi) of the image values, for display.
      titles: N strings; None: the counts of safe / fooled / undecided pixels.
      columns: images per row (each takes two panels).

    Returns:
      path.
    """
    shown = _displayed(images, value_range, titles, columns)
    states = {k: np.asarray(getattr(certificate, k), bool) for k in CERTIFICATE_COLORS}
    n, h, w, _ = shown.shape
    if any(s.shape != (n, h, w) for s in states.values()):
        raise ValueError(f"certificate must be of images {(n, h, w)}, got {states['safe'].shape}")
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = _figure(figsize=(3.6 * cols, 2.0 * rows))
    axes = fig.subplots(rows, 2 * cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(n):
        left, right = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        left.imshow(shown[i], interpolation="nearest")
        painted = 0.35 * shown[i]
        for name, color in CERTIFICATE_COLORS.items():
            painted = np.where(states[name][i][..., None], color, painted)
        right.imshow(painted, interpolation="nearest")
        counts = " / ".join(str(int(states[k][i].sum())) for k in CERTIFICATE_COLORS)
        right.set_title(titles[i] if titles is not None else counts, fontsize=8)
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=k) for k, c in CERTIFICATE_COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    return save_figure(fig, path)
