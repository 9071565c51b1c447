"""The paper's figures as PNG files (matplotlib, Agg backend: no display needed).

- `target_count_bars`: Fig. 3, the share of images perturbed to 0..T target classes.
- `heatmaps`: Figs. 4 and 5, original-to-reached class counts.
- `fitness_plot`: Fig. 6, fitness curves in grey with their mean in red.
- `adversarial_grid`: adversarial examples with the changed pixels circled.

Each function takes plain arrays (see `rpx.metrics` for computing them), writes one PNG
to `path` (creating its folder) and returns the path.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # before pyplot: figures are written to files, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def target_count_bars(shares: dict, path: str, title: str = "") -> str:
    """Fig. 3: bars of the share of images perturbed to j = 0..T target classes.

    Args:
      shares: {(region, pixels): float [T+1]} (rpx.metrics.target_counts), one panel
        per pixel count, one bar colour per region.
    """
    if not shares:
        raise ValueError("shares must not be empty")
    pixels = sorted({p for _, p in shares})
    region_names = list(dict.fromkeys(r for r, _ in shares))
    fig, axes = plt.subplots(1, len(pixels), figsize=(4.5 * len(pixels), 3.4), squeeze=False)
    width = 0.8 / len(region_names)
    for ax, p in zip(axes[0], pixels, strict=True):
        for i, region in enumerate(region_names):
            values = shares.get((region, p))
            if values is None:
                continue
            x = np.arange(len(values)) + (i - (len(region_names) - 1) / 2) * width
            ax.bar(x, 100 * np.asarray(values), width, label=region)
        ax.set_title(f"{p}-pixel")
        ax.set_xlabel("number of target classes reached")
        ax.set_ylabel("images (%)")
        ax.set_xticks(np.arange(len(next(iter(shares.values())))))
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def heatmaps(matrices: dict, path: str, title: str = "") -> str:
    """Figs. 4/5: a grid of annotated count matrices.

    Args:
      matrices: {(row_name, column_name): int [K, K]}, e.g. {(model, region): counts};
        rows of each matrix are original classes, columns reached classes.
    """
    if not matrices:
        raise ValueError("matrices must not be empty")
    rows = list(dict.fromkeys(r for r, _ in matrices))
    cols = list(dict.fromkeys(c for _, c in matrices))
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(3.6 * len(cols), 3.4 * len(rows)), squeeze=False
    )
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            m = matrices.get((r, c))
            if m is None:
                ax.axis("off")
                continue
            m = np.asarray(m)
            ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, m.max()))
            if m.shape[0] <= 12:  # counts are readable only on small matrices
                for (a, b), v in np.ndenumerate(m):
                    color = "white" if v > 0.6 * max(1, m.max()) else "black"
                    ax.text(b, a, str(v), ha="center", va="center", fontsize=7, color=color)
                ax.set_xticks(range(m.shape[1]))
                ax.set_yticks(range(m.shape[0]))
            ax.tick_params(labelsize=7)
            ax.set_title(f"{r} / {c}", fontsize=9)
            ax.set_xlabel("reached class", fontsize=8)
            ax.set_ylabel("original class", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def fitness_plot(curves: dict, path: str, title: str = "", max_lines: int = 15) -> str:
    """Fig. 6: per panel the fitness curves (grey) and their mean (red dots); a last
    panel puts the means together.

    Args:
      curves: {name: float [M, G+1]} (rpx.metrics.fitness_curves), e.g. per region.
      max_lines: grey curves drawn per panel (the first ones); the mean uses all.
    """
    if not curves:
        raise ValueError("curves must not be empty")
    n = len(curves) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.2), squeeze=False)
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
    return _save(fig, path)


def adversarial_grid(
    images,
    positions,
    titles=None,
    path: str = "examples.png",
    cols: int = 6,
    title: str = "",
    regions=None,
) -> str:
    """Adversarial images with their changed pixels circled in red.

    Args:
      images: uint8 [M, H, W, 3] adversarial images.
      positions: int [M, k, 2] (row, col) of the changed pixels; (-1, -1) = unchanged.
      titles: M strings (e.g. "cat -> dog 0.71"), or None.
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
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.2 * rows), squeeze=False)
    h = images.shape[1]
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[: len(images)]):
        ax.imshow(images[i], interpolation="nearest")
        if regions is not None and 0 < regions[i].sum() < regions[i].size:
            ax.contour(regions[i].astype(float), levels=[0.5], colors="cyan", linewidths=1.0)
        for r, c in positions[i]:
            if r >= 0:
                ax.add_patch(plt.Circle((c, r), max(1.5, h / 14), fill=False, color="red", lw=1.5))
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
