"""The figures of a corner-map report (`report`), drawn from `analysis.analyse`.

figures/shares.png (share of images with a fooling pixel per region, Clopper-Pearson
intervals, the paper's Table II marked), densities.png (fooling pixels / region pixels,
bootstrap intervals), fig3_targets.png (images per number of reached classes,
Clopper-Pearson), de_vs_scan.png (with DE beside the maps), fig4_dominant_pairs.png and
fig5_reached_pairs.png (count matrices). Each is written beside its target and renamed.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from experiments import paper
from experiments.atomic import write_atomic
from experiments.corner_maps.regions import PAPER_REGIONS, REGIONS
from experiments.figures import count_matrix
from rpx import plots


def most_targets(r: dict) -> int:
    """The largest number of reached target classes of any image in any region."""
    counts = np.array([g["targets"]["counts"] for g in r["regions"].values()])
    return int(np.flatnonzero(counts.sum(0))[-1])


def _errorbars(ax, x, stats, **kw):
    est = np.array([s["estimate"] for s in stats])
    err = np.abs(np.array([[s["low"] for s in stats], [s["high"] for s in stats]]) - est)
    ax.errorbar(x, 100 * est, yerr=100 * err, fmt="o", capsize=3, **kw)


def _per_region_figure(
    analysis: dict, path: str, series: dict, ylabel: str, paper_marks: bool, ci: str
):
    nets = list(analysis["nets"])
    fig = Figure(figsize=(6.5, 2.6 * len(nets) + 0.6))
    axes = fig.subplots(len(nets), 1, squeeze=False)[:, 0]
    y = np.arange(len(REGIONS))
    for ax, net in zip(axes, nets, strict=True):
        regions = analysis["nets"][net]["regions"]
        for i, (label, key) in enumerate(series.items()):
            offset = (i - (len(series) - 1) / 2) * 0.25
            _errorbars(ax, y + offset, [regions[r][key] for r in REGIONS], label=label)
        if paper_marks:
            marks = [(i, paper.table2(net, "untargeted1", r, 1)) for i, r in enumerate(REGIONS)]
            marks = [(i, v) for i, v in marks if v is not None]
            if marks:
                ax.plot(*zip(*marks, strict=True), "rx", ms=9, label="paper, 1-px DE (Table II)")
        ax.set_ylim(bottom=0)
        ax.set_xticks(y, REGIONS, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        images = analysis["nets"][net]["images"]
        ax.set_title(f"{net} ({images} images), 95% {ci} CI", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _de_figure(de: dict, path: str) -> str:
    """DE's one-pixel success beside the corner scan on the same images, per region."""
    budget = f"DE, {de['population']} x {de['generations']}"
    de = de["nets"]
    nets = list(de)
    fig = Figure(figsize=(6.5, 2.4 * len(nets) + 0.6))
    axes = fig.subplots(len(nets), 1, squeeze=False)[:, 0]
    for ax, net in zip(axes, nets, strict=True):
        regions = list(de[net])
        y = np.arange(len(regions))
        for offset, key, label in ((-0.12, "scan", "corner scan (exhaustive)"),
                                   (0.12, "de", budget)):  # fmt: skip
            _errorbars(ax, y + offset, [de[net][r][key] for r in regions], label=label)
        marks = [(i, de[net][r]["paper_untargeted1"]) for i, r in enumerate(regions)]
        marks = [(i, v) for i, v in marks if v is not None]
        if marks:
            ax.plot(*zip(*marks, strict=True), "rx", ms=9, label="paper, 1-px DE (Table II)")
        ax.set_title(f"{net}, 95% Clopper-Pearson CI", fontsize=9)
        ax.set_xticks(y, [f"{r} ({de[net][r]['images']} images)" for r in regions], fontsize=8)
        ax.set_ylabel("images fooled (%)", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _targets_figure(analysis: dict, path: str):
    nets = list(analysis["nets"])
    fig = Figure(figsize=(7, 2.6 * len(nets) + 0.6))
    axes = fig.subplots(len(nets), 1, squeeze=False)[:, 0]
    for ax, net in zip(axes, nets, strict=True):
        regions = analysis["nets"][net]["regions"]
        for i, name in enumerate(PAPER_REGIONS + ("size-matched background",)):
            t = regions[name]["targets"]
            stats = [
                dict(estimate=e, low=lo, high=hi)
                for e, lo, hi in zip(t["estimate"], t["low"], t["high"], strict=True)
            ]
            last = max(1, most_targets(analysis["nets"][net]))
            x = np.arange(1, last + 1)  # 0 targets: the complement of the share fooled
            _errorbars(ax, x + (i - 1.5) * 0.18, stats[1 : last + 1], label=name)
        ax.set_xticks(x)
        ax.set_xlabel("number of target classes reachable with one corner pixel", fontsize=8)
        ax.set_ylabel("images (%)", fontsize=8)
        ax.set_title(f"{net}: Fig. 3 (0 targets = 100% - share fooled)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _pairs_figure(analysis: dict, key: str, path: str, title: str) -> str:
    """Figs. 4/5: annotated count matrices, a row per net (one colour scale), a column per
    paper region."""
    nets = list(analysis["nets"])
    fig = Figure(figsize=(3.4 * len(PAPER_REGIONS), 3.3 * len(nets) + 0.5))
    axes = fig.subplots(len(nets), len(PAPER_REGIONS), squeeze=False)
    for row, net in zip(axes, nets, strict=True):
        matrices = [np.asarray(analysis["nets"][net]["regions"][r][key]) for r in PAPER_REGIONS]
        top = max(1, max(int(m.max()) for m in matrices))
        for ax, region, m in zip(row, PAPER_REGIONS, matrices, strict=True):
            count_matrix(ax, m, top, fontsize=6)
            ax.set_title(f"{net} / {region}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str) -> str:
    """Write `fig` to the PNG `path` at once (`experiments.atomic.write_atomic`)."""
    return write_atomic(path, lambda tmp: plots.save_figure(fig, tmp))


def figures(fig: str, analysis: dict) -> list[str]:
    """The report's PNGs in the folder `fig`; returns their paths."""
    written = []
    written.append(
        _per_region_figure(
            analysis,
            os.path.join(fig, "shares.png"),
            {"share of images with a fooling pixel": "fooled"},
            "images (%)",
            paper_marks=True,
            ci="Clopper-Pearson",
        )
    )
    written.append(
        _per_region_figure(
            analysis,
            os.path.join(fig, "densities.png"),
            {"pooled": "density_pooled", "per-image mean": "density_mean"},
            "fooling pixels / region pixels (%)",
            paper_marks=False,
            ci="bootstrap",
        )
    )
    written.append(_targets_figure(analysis, os.path.join(fig, "fig3_targets.png")))
    if analysis.get("de"):
        written.append(_de_figure(analysis["de"], os.path.join(fig, "de_vs_scan.png")))
    for key, name, what in (
        ("dominant_pairs", "fig4_dominant_pairs.png", "dominant reached class"),
        ("reached_pairs", "fig5_reached_pairs.png", "reachable classes"),
    ):
        title = f"original class -> {what} (one corner pixel; one colour scale per net)"
        written.append(_pairs_figure(analysis, key, os.path.join(fig, name), title))
    return written
