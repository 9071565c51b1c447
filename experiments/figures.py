"""The paper's figures from results.jsonl: WORKDIR/figures/*.png (Figs. 3-6, examples).

- `write_figures`: every figure of a run, recomputed from its records (and the clean
  images and foreground masks for the example grid).
- `target_count_bars` (Fig. 3, the share of images perturbed to 0..T target classes)
  and `class_pairs_heatmaps` (Figs. 4 and 5, original-to-reached class counts) draw the
  paper's own figures; the fitness curves (Fig. 6) and the example grids are the
  library's `rpx.plots.fitness_plot` and `rpx.plots.adversarial_grid`.
- `apply_pixels`: a record's adversarial image rebuilt from the clean one.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from experiments import metrics
from experiments.atomic import write_atomic
from experiments.grid import methods
from rpx import plots
from rpx.regions import mask as region_mask

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


def target_count_bars(shares: dict, path: str, title: str = "") -> str:
    """Fig. 3: bars of the share of images perturbed to j = 0..T target classes.

    Args:
      shares: {(region, pixels): float [T+1]} (metrics.target_counts), one panel
        per pixel count, one bar colour per region.
    """
    if not shares:
        raise ValueError("shares must not be empty")
    pixels = sorted({p for _, p in shares})
    region_names = list(dict.fromkeys(r for r, _ in shares))
    fig = Figure(figsize=(4.5 * len(pixels), 3.4))
    axes = fig.subplots(1, len(pixels), squeeze=False)
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
    return write_atomic(path, lambda tmp: plots.save_figure(fig, tmp))


def class_pairs_heatmaps(matrices: dict, path: str, title: str = "") -> str:
    """Figs. 4/5: a grid of annotated count matrices.

    Args:
      matrices: {(row_name, column_name): int [K, K]}, e.g. {(model, region): counts};
        rows of each matrix are original classes, columns reached classes.
    """
    if not matrices:
        raise ValueError("matrices must not be empty")
    rows = list(dict.fromkeys(r for r, _ in matrices))
    cols = list(dict.fromkeys(c for _, c in matrices))
    fig = Figure(figsize=(3.6 * len(cols), 3.4 * len(rows)))
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            m = matrices.get((r, c))
            if m is None:
                ax.axis("off")
                continue
            m = np.asarray(m)
            # counts are readable only on small matrices
            count_matrix(ax, m, max(1, m.max()), fontsize=7, annotate=m.shape[0] <= 12)
            ax.set_title(f"{r} / {c}", fontsize=9)
    fig.suptitle(title)
    return write_atomic(path, lambda tmp: plots.save_figure(fig, tmp))


def count_matrix(ax, m, vmax, fontsize: int, annotate: bool = True) -> None:
    """Draw the original -> reached class count matrix `m` int [K, K] on `ax` (colour scale
    0..vmax); with `annotate`, each count written in its cell and every class ticked."""
    ax.imshow(m, cmap="Blues", vmin=0, vmax=vmax)
    if annotate:
        for (a, b), v in np.ndenumerate(m):
            color = "white" if v > 0.6 * vmax else "black"
            ax.text(b, a, str(v), ha="center", va="center", fontsize=fontsize, color=color)
        ax.set_xticks(range(m.shape[1]))
        ax.set_yticks(range(m.shape[0]))
    ax.tick_params(labelsize=fontsize)
    ax.set_xlabel("reached class", fontsize=fontsize + 1)
    ax.set_ylabel("original class", fontsize=fontsize + 1)


def apply_pixels(image: np.ndarray, record: dict) -> np.ndarray:
    """The adversarial image of `record`: `image` with its positions set to its colors."""
    out = np.array(image, copy=True)
    for (r, c), color in zip(record["positions"], record["colors"], strict=True):
        if r >= 0:
            out[r, c] = np.clip(np.rint(color), 0, 255).astype(out.dtype)
    return out


def write_figures(
    workdir, records, images, class_names=None, num_targets=None, foreground=None
) -> list[str]:
    """WORKDIR/figures/*.png: Figs. 3-6 and example grids; returns the paths.

    images: dataset indices int [M] -> (uint8 images [M, H, W, 3], labels), for the
    records' "image" keys (e.g. `experiments.images`).
    foreground: (dataset indices [M], images [M, H, W, 3]) -> bool foreground masks
    [M, H, W], as the attacks used them; the example grids then outline each region.
    """
    folder = os.path.join(workdir, "figures")
    out = []
    recs = [r for r in records if r["restriction"] == "table"]
    for (model,), model_recs in metrics.group(recs, "model").items():
        for method, mrecs in methods.split(model_recs):
            # Another method's figures get its name in their files and titles.
            name = model + methods.suffix(method)
            title = model + "".join(f" ({w})" for w in [methods.short(method)] if w)
            out += _model_figures(folder, name, title, model, mrecs, images, class_names,
                                  num_targets, foreground)  # fmt: skip
    return out


def _model_figures(folder, name, title, model, mrecs, images, class_names, num_targets,
                   foreground) -> list[str]:  # fmt: skip
    """The figures of one model and method: files named `name`, titles `title`."""
    out = []
    tar = [r for r in mrecs if r["attack"] == "targeted"]
    if tar and num_targets:
        shares = metrics.by_cell(
            tar, ("region", "pixels"), lambda rs: metrics.target_counts(rs, num_targets)
        )
        path = os.path.join(folder, f"fig3_targets_{name}.png")
        out.append(target_count_bars(shares, path, f"{title}: Fig. 3"))
    one = [r for r in mrecs if r["pixels"] == min(r["pixels"] for r in mrecs)]
    k = one[0]["num_classes"]
    for attack, fig in (("untargeted", "fig4"), ("targeted", "fig5")):
        maps = {
            (model, region): metrics.class_pairs(rs, k, attack)
            for (region,), rs in metrics.group(one, "region").items()
            if any(r["attack"] == attack for r in rs)
        }
        if maps and k <= 20:
            path = os.path.join(folder, f"{fig}_{attack}_pairs_{name}.png")
            px = one[0]["pixels"]
            out.append(
                class_pairs_heatmaps(maps, path, f"{title}: {attack} {px}-pixel, Fig. {fig[3]}")
            )
    unt = [r for r in one if r["attack"] == "untargeted"]
    if unt:
        both = metrics.common_successes(unt)
        curves = {
            region: metrics.fitness_curves([r for r in rs if r["image"] in both])
            for (region,), rs in metrics.group(unt, "region").items()
        }
        path = os.path.join(folder, f"fig6_fitness_{name}.png")
        px = unt[0]["pixels"]
        heading = f"{title}: untargeted {px}-pixel, images successful in all regions"
        out.append(write_atomic(path, lambda tmp: plots.fitness_plot(curves, tmp, heading)))
        out.append(_examples(folder, name, title, unt, images, class_names, foreground))
    return out


def _examples(folder, stem, title, unt, images, class_names, foreground, per_region=6) -> str:
    """A grid of successful untargeted examples, `per_region` per region, each region
    outlined when `foreground` is given."""
    chosen = []
    for (_,), rs in metrics.group(unt, "region").items():
        chosen += [r for r in rs if r["success"]][:per_region]
    if not chosen:
        chosen = unt[:per_region]
    name = (lambda c: class_names[c]) if class_names else str
    indices = np.array([r["image"] for r in chosen])
    clean = images(indices)[0]
    adv = np.stack([apply_pixels(image, r) for image, r in zip(clean, chosen, strict=True)])
    titles = [
        f"{r['region']}\n{name(r['label'])}->{name(r['predicted'])} {r['confidence']:.2f}"
        for r in chosen
    ]
    regions = None
    if foreground is not None:
        fg = np.asarray(foreground(indices, clean), bool)
        regions = np.stack([region_mask(r["region"], m) for r, m in zip(chosen, fg, strict=True)])
    positions = np.array([r["positions"] for r in chosen])
    path = os.path.join(folder, f"examples_{stem}.png")
    return write_atomic(
        path,
        lambda tmp: plots.adversarial_grid(
            adv, positions, titles, tmp, title=f"{title}: examples", regions=regions
        ),
    )
