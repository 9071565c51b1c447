"""report.md, report.json and figures/ of a corner-map workdir (`corner_analysis.analyse`).

- report.md: per classifier, the share of images with a fooling pixel per region beside
  the paper's 1-pixel Untargeted1 (Table II), fooling-pixel densities, paired region
  differences, the share per number of reached target classes (Fig. 3), and the
  original-to-reached class counts (Figs. 4/5) of the paper's three regions; every
  share with its 95% bootstrap interval over images and its count.
- figures/shares.png, densities.png, fig3_targets.png (intervals as error bars),
  fig4_dominant_pairs.png, fig5_reached_pairs.png (count matrices).

Every file is written beside its target and renamed, so a report read while a run
writes a new one is whole.
"""

from __future__ import annotations

import json
import os

import numpy as np
from matplotlib.figure import Figure

from experiments import paper
from experiments.atomic import write_atomic
from experiments.corner_regions import PAPER_REGIONS, REGIONS
from experiments.figures import count_matrix
from rpx import plots


def _pct(s: dict, digits: int = 1) -> str:
    e, lo, hi = (100 * s[k] for k in ("estimate", "low", "high"))
    return f"{e:.{digits}f}% [{lo:.{digits}f}, {hi:.{digits}f}]"


def _paper(net: str, region: str, metric: str = "untargeted1") -> str:
    value = paper.table2(net, metric, region, 1)
    return "-" if value is None else f"{value:.2f}%"


def markdown(analysis: dict) -> str:
    """report.md's text."""
    s = analysis["settings"]
    lines = [
        "# One-pixel corner maps per region (all classes, 8 corners)",
        "",
        f"- Data: {s['data']}; {s['pick']}.",
        f"- Scan: {s['scan']} (evaluation={s['evaluation']}): the predicted class of every "
        "(pixel, corner), so every region and every target class is read from one map.",
        "- Regions: automatic GrabCut masks (rpx.segment defaults, no human correction); "
        "+k / -k: the foreground dilated by k pixels (3x3) / the background without that "
        "ring; centre prior: rpx.segment.centre_prior; size-matched background: as many "
        "random background pixels as the foreground has (per image, seeded).",
        f"- Intervals: 95% percentile bootstrap over images, {analysis['resamples']} "
        f"resamples, seed {analysis['seed']}.",
        "- The paper's columns are its 1-pixel Untargeted1 and Targeted of Table II: DE with "
        "any colour (400 x 100), 500 random images, human-corrected GrabCut masks. Ours say "
        "whether a corner colour at some region pixel fools the net (towards any class, or "
        "towards each of the 9 other classes): exhaustive for corner colours, blind to other "
        "colours.",
    ]
    for net, r in analysis["nets"].items():
        lines += _net_section(net, r)
    if analysis.get("de"):
        lines += _de_section(analysis["de"])
    return "\n".join(lines) + "\n"


def _de_section(de: dict) -> list[str]:
    """DE at the paper's budget beside the maps on the same images (`corner_de`)."""
    lines = [
        "",
        "## DE at the paper's budget on the same images",
        "",
        f"One-pixel untargeted DE (population {de['population']}, {de['generations']} "
        "generations, LHS, F ~ U[0.5, 1), CR 1; the paper's budget is 400 x 100; "
        "`experiments.cifar --sample-order=first`, same masks) on each net's first images "
        "of the maps. Scan: one corner-coloured region pixel fools the net. Missed by DE: "
        "scan-vulnerable, DE failed; DE only: DE succeeded, no corner pixel of the region "
        "fools; at a fooling pixel: DE successes whose pixel is one where some corner "
        "fools. Generations: mean over DE's successes (Table IV, the initial population "
        "counts as 1). Intervals: 95% bootstrap over images.",
        "",
        "| net | region | images | DE success (paper) | corner scan | DE - scan (paired) "
        "| both | missed by DE | DE only | DE at a fooling pixel | generations (paper) |",
        "|---|---|---:|---|---|---|---:|---:|---:|---:|---|",
    ]
    for net, regions in de["nets"].items():
        for region, c in regions.items():
            paper_u = c["paper_untargeted1"]
            paper_g = c["paper_generations"]
            g = c["generations"]
            gens = "-" if not c["de"]["count"] else (
                f"{g['estimate']:.2f} [{g['low']:.2f}, {g['high']:.2f}]")  # fmt: skip
            lines.append(
                f"| {net} | {region} | {c['images']} | {c['de']['count']}: {_pct(c['de'])} "
                f"({'-' if paper_u is None else f'{paper_u:.1f}%'}) | {c['scan']['count']}: "
                f"{_pct(c['scan'])} | {_signed(c['de_minus_scan'])} | {c['both']} | "
                f"{c['missed_by_de']} | {c['de_only']} | {c['de_at_fooling_pixel']} | {gens} "
                f"({'-' if paper_g is None else f'{paper_g:.2f}'}) |"
            )
    return lines


def _net_section(net: str, r: dict) -> list[str]:
    t, m = r["timing"], r["masks"]
    fg = m["foreground_fraction"]
    lines = [
        "",
        f"## {net}: {r['images']} images",
        "",
        f"{t['evaluations']:,} evaluations in {t['batches']} batches, "
        f"{t['wall_seconds'] / 60:.1f} min wall / {t['cpu_seconds'] / 60:.1f} min CPU of scan "
        f"({t['evaluations'] / max(t['wall_seconds'], 1e-9):.0f} evaluations/s; batches "
        f"finished {t['first_finished']} to {t['last_finished']}). Foreground: "
        f"{100 * fg['mean']:.1f}% of the pixels on average (median {100 * fg['median']:.1f}%, "
        f"{100 * fg['min']:.1f}-{100 * fg['max']:.1f}%); GrabCut paths {m['paths']}.",
        "",
        "| region | pixels (mean) | images with a fooling pixel | share [95% CI] "
        "| paper 1-px Untargeted1 | density, pooled [95% CI] | density, per-image mean [95% CI] "
        "| (image, target) pairs reachable [95% CI] | paper 1-px Targeted |",
        "|---|---:|---:|---|---:|---|---|---|---:|",
    ]
    for name in REGIONS:
        g = r["regions"][name]
        paper_u, paper_t = (_paper(net, name, m) if name in PAPER_REGIONS else ""
                            for m in ("untargeted1", "targeted"))  # fmt: skip
        d, t = g["density_pooled"], g["targeted"]
        lines.append(
            f"| {name} | {g['region_pixels']['mean']:.1f} | {g['fooled']['count']}/{g['images']} "
            f"| {_pct(g['fooled'])} | {paper_u} | {_pct(d, 3)} ({d['fooling']}/{d['pixels']}) "
            f"| {_pct(g['density_mean'], 3)} | {_pct(t, 2)} ({t['pairs']}) | {paper_t} |"
        )
    lines += [
        "",
        "Paired differences (a - b, same images):",
        "",
        "| a - b | share of images | pooled density |",
        "|---|---|---|",
    ]
    for pair, d in r["differences"].items():
        lines.append(f"| {pair} | {_signed(d['share'])} | {_signed(d['density_pooled'], 3)} |")
    k = _most_targets(r) + 1
    lines += [
        "",
        "Share of images per number of reached target classes (Fig. 3), % [95% CI] (images); "
        f"no image reaches more than {k - 1} in any region:",
        "",
        "| region | " + " | ".join(map(str, range(k))) + " |",
        "|---|" + "---|" * k,
    ]
    for name in REGIONS:
        g = r["regions"][name]["targets"]
        cells = [
            f"{100 * e:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] ({c})"
            for e, lo, hi, c in zip(
                *(g[f][:k] for f in ("estimate", "low", "high", "counts")), strict=True
            )
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for key, what in (
        (
            "reached_pairs",
            "Fig. 5: images of each original class (rows) from "
            "which each class (columns) is reachable",
        ),
        (
            "dominant_pairs",
            "Fig. 4: fooled images by original class (rows) and dominant reached class (columns)",
        ),
    ):
        for name in PAPER_REGIONS:
            lines += ["", f"{what}, {name}:", ""] + _matrix(r["regions"][name][key])
    return lines


def _most_targets(r: dict) -> int:
    """The largest number of reached target classes of any image in any region."""
    counts = np.array([g["targets"]["counts"] for g in r["regions"].values()])
    return int(np.flatnonzero(counts.sum(0))[-1])


def _signed(s: dict, digits: int = 1) -> str:
    return (
        f"{100 * s['estimate']:+.{digits}f} pts [{100 * s['low']:+.{digits}f}, "
        f"{100 * s['high']:+.{digits}f}]"
    )


def _matrix(m) -> list[str]:
    k = len(m)
    head = "| orig \\ reached | " + " | ".join(map(str, range(k))) + " |"
    return [head, "|---|" + "---:|" * k] + [
        f"| {i} | " + " | ".join(map(str, row)) + " |" for i, row in enumerate(m)
    ]


def _errorbars(ax, x, stats, **kw):
    est = np.array([s["estimate"] for s in stats])
    err = np.abs(np.array([[s["low"] for s in stats], [s["high"] for s in stats]]) - est)
    ax.errorbar(x, 100 * est, yerr=100 * err, fmt="o", capsize=3, **kw)


def _per_region_figure(analysis: dict, path: str, series: dict, ylabel: str, paper_marks: bool):
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
        ax.set_title(f"{net} ({images} images), 95% bootstrap CI", fontsize=9)
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
        ax.set_title(f"{net}, 95% bootstrap CI", fontsize=9)
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
            last = max(1, _most_targets(analysis["nets"][net]))
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
    """Save `fig` to the PNG `path` (rpx.plots.save_figure, as experiments.figures does)."""
    return write_atomic(path, lambda tmp: plots.save_figure(fig, tmp))


def write(folder: str, analysis: dict) -> list[str]:
    """FOLDER/report.md, report.json and figures/*.png; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    written = [os.path.join(folder, "report.md"), os.path.join(folder, "report.json")]
    write_atomic(written[0], markdown(analysis))
    write_atomic(written[1], json.dumps(analysis, indent=1))
    return written + (
        figures(os.path.join(folder, "figures"), analysis) if analysis["nets"] else []
    )


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
        )
    )
    written.append(
        _per_region_figure(
            analysis,
            os.path.join(fig, "densities.png"),
            {"pooled": "density_pooled", "per-image mean": "density_mean"},
            "fooling pixels / region pixels (%)",
            paper_marks=False,
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
