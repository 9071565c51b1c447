"""Summaries of results.jsonl: table.md (Tables II and IV, the ablation) and figures/.

Everything here is recomputed from the records alone (plus the clean images and
foreground masks for the example grid), so a resumed run writes the same summaries as
an uninterrupted one.
"""

from __future__ import annotations

import math
import os

import numpy as np

from experiments import paper
from rpx import metrics, plots
from rpx.regions import mask as region_mask

REGION_ORDER = ("original", "foreground", "background")


def pct(x) -> str:
    """A fraction as a percentage, '-' when undefined."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _num(x, digits=2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ordered(values, order):
    return sorted(set(values), key=lambda v: (order.index(v) if v in order else len(order), v))


def table2_markdown(records: list[dict], num_targets: int | None = None) -> str:
    """Table II: per model, metric rows x (region, pixels) columns, 'ours (paper)'."""
    lines = []
    for (restriction,), recs in metrics.group(records, "restriction").items():
        for (model,), mrecs in metrics.group(recs, "model").items():
            cells = metrics.by_cell(
                mrecs, ("region", "pixels"), lambda rs: metrics.table2(rs, num_targets)
            )
            cols = [
                (r, p)
                for r in _ordered([k[0] for k in cells], REGION_ORDER)
                for p in sorted({k[1] for k in cells})
                if (r, p) in cells
            ]
            in_paper = paper.table2(model, "untargeted1", "original", 1) is not None
            source = "paper" if in_paper else "paper: mean of AllConv, NiN, VGG-16(C)"
            images = len({r["image"] for r in mrecs})
            lines += [
                f"### {model} (restriction={restriction}, {images} images; ours ({source}))",
                "",
                "| Metric | " + " | ".join(f"{r} {p}-px" for r, p in cols) + " |",
                "|---|" + "---|" * len(cols),
            ]
            for metric in metrics.TABLE2_METRICS:
                row = []
                for r, p in cols:
                    theirs = (
                        paper.table2(model, metric, r, p)
                        if in_paper
                        else paper.table2_mean(metric, r, p)
                    )
                    ref = "" if theirs is None else f" ({theirs:.2f}%)"
                    row.append(pct(cells[(r, p)][metric]) + ref)
                lines.append(f"| {metric} | " + " | ".join(row) + " |")
            counts = [
                "/".join(
                    str(len({r["image"] for r in cell_recs if r["attack"] == a}))
                    for a in ("untargeted", "targeted")
                )
                for cell_recs in (
                    [r for r in mrecs if (r["region"], r["pixels"]) == c] for c in cols
                )
            ]
            lines.append("| images (untargeted/targeted) | " + " | ".join(counts) + " |")
            lines.append("")
    return "\n".join(lines)


def table4_markdown(records: list[dict]) -> str:
    """Table IV: mean generations of successful untargeted 1-pixel attacks, 'ours (paper)'."""
    one = [r for r in records if r["pixels"] == 1 and r["restriction"] == "table"]
    if not one:
        return "(no 1-pixel results with restriction=table)\n"
    regions = _ordered([r["region"] for r in one], REGION_ORDER)
    lines = ["| Model | " + " | ".join(regions) + " |", "|---|" + "---|" * len(regions)]
    for (model,), recs in metrics.group(one, "model").items():
        gens = metrics.by_cell(recs, ("region",), metrics.mean_generations)
        row = []
        for region in regions:
            theirs = paper.by_region(paper.TABLE4, model, None, region)
            ref = "" if theirs is None else f" ({theirs:.2f})"
            row.append(_num(gens.get((region,), math.nan)) + ref)
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def table3_markdown(records: list[dict]) -> str:
    """Table III: per model, rpx.metrics.TABLE3_ROWS x regions, 'ours (paper)'."""
    one = [r for r in records if r["pixels"] == 1 and r["restriction"] == "table"]
    lines = []
    for (model,), recs in metrics.group(one, "model").items():
        cells = metrics.by_cell(recs, ("region",), metrics.table3)
        regions = _ordered([k[0] for k in cells], REGION_ORDER)
        images = len({r["image"] for r in recs})
        lines += [
            f"### {model} ({images} images; ours (paper))",
            "",
            "| Metric | " + " | ".join(regions) + " |",
            "|---|" + "---|" * len(regions),
        ]
        for key, label in metrics.TABLE3_ROWS:
            row = []
            for region in regions:
                theirs = paper.by_region(paper.TABLE3, model, key, region)
                ref = "" if theirs is None else f" ({theirs:.2f}%)"
                row.append(pct(cells[(region,)].get(key)) + ref)
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines) if lines else "(no untargeted 1-pixel results)\n"


def ablation_markdown(records: list[dict]) -> str:
    """Untargeted success and mean generations per (model, pixels, region) by restriction,
    each cell over the images attacked under every restriction (equal footing)."""
    restrictions = sorted({r["restriction"] for r in records})
    if len(restrictions) < 2:
        return ""
    unt = [r for r in records if r["attack"] == "untargeted"]
    head = " | ".join(f"{x} success | {x} mean gens" for x in restrictions)
    lines = [
        f"| Model | Pixels | Region | Images | {head} |",
        "|---|---|---|---|" + "---|---|" * len(restrictions),
    ]
    groups = metrics.group(unt, "model", "pixels", "region")
    for model, p, region in sorted(groups, key=lambda k: (k[0], k[1], REGION_ORDER.index(k[2]))):
        by = metrics.group(groups[(model, p, region)], "restriction")
        if len(by) < len(restrictions):
            continue  # not run under every restriction
        common = set.intersection(*({r["image"] for r in rs} for rs in by.values()))
        row = []
        for x in restrictions:
            c = metrics.success_and_generations([r for r in by[(x,)] if r["image"] in common])
            row += [pct(c["success"]), _num(c["generations"])]
        lines.append(f"| {model} | {p} | {region} | {len(common)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_table(workdir: str, records: list[dict], header: str, num_targets=None,
                table3: bool = False) -> str:  # fmt: skip
    """WORKDIR/table.md from the records (Table II, or Table III with `table3`), Table IV
    and the restriction ablation; returns its path."""
    if table3:
        main = [
            "## Table III",
            "",
            "Untargeted 1-pixel attacks: success rate, mean confidence of the successful ones, "
            "mean decrease of the original top-k class probabilities and the share of the "
            "original top-k classes still in the adversarial top-m. Ours first, the paper's in "
            "parentheses.",
            "",
            table3_markdown(records),
        ]
    else:
        main = [
            "## Table II",
            "",
            "Untargeted1/Targeted: success rates; Untargeted2: share of images with at least "
            "one successful targeted attack; Confidence: mean probability of the predicted "
            "class after successful attacks. Ours first, the paper's in parentheses.",
            "",
            table2_markdown(records, num_targets),
        ]
    text = [
        header,
        "",
        *main,
        "## Table IV",
        "",
        "Mean generations of successful untargeted 1-pixel attacks (the initial "
        "population counts as 1); the paper's in parentheses.",
        "",
        table4_markdown(records),
    ]
    ablation = ablation_markdown(records)
    if ablation:
        text += ["## Ablation: restriction", "", ablation]
    path = os.path.join(workdir, "table.md")
    with open(path, "w") as f:
        f.write("\n".join(text))
    return path


def apply_pixels(image: np.ndarray, record: dict) -> np.ndarray:
    """The adversarial image of `record`: `image` with its positions set to its colors."""
    out = np.array(image, copy=True)
    for (r, c), color in zip(record["positions"], record["colors"], strict=True):
        if r >= 0:
            out[r, c] = np.clip(np.rint(color), 0, 255).astype(out.dtype)
    return out


def write_figures(
    workdir, records, get, class_names=None, num_targets=None, foreground=None
) -> list[str]:
    """WORKDIR/figures/*.png: Figs. 3-6 and example grids; returns the paths.

    get: dataset indices int [M] -> (uint8 images [M, H, W, 3], labels), for the
    records' "image" keys.
    foreground: (dataset indices [M], images [M, H, W, 3]) -> bool foreground masks
    [M, H, W], as the attacks used them; the example grids then outline each region.
    """
    folder = os.path.join(workdir, "figures")
    out = []
    recs = [r for r in records if r["restriction"] == "table"]
    for (model,), mrecs in metrics.group(recs, "model").items():
        tar = [r for r in mrecs if r["attack"] == "targeted"]
        if tar and num_targets:
            shares = metrics.by_cell(
                tar, ("region", "pixels"), lambda rs: metrics.target_counts(rs, num_targets)
            )
            out.append(
                plots.target_count_bars(
                    shares, os.path.join(folder, f"fig3_targets_{model}.png"), f"{model}: Fig. 3"
                )
            )
        one = [r for r in mrecs if r["pixels"] == min(r["pixels"] for r in mrecs)]
        k = one[0]["num_classes"]
        for attack, fig in (("untargeted", "fig4"), ("targeted", "fig5")):
            maps = {
                (model, region): metrics.class_pairs(rs, k, attack)
                for (region,), rs in metrics.group(one, "region").items()
                if any(r["attack"] == attack for r in rs)
            }
            if maps and k <= 20:
                path = os.path.join(folder, f"{fig}_{attack}_pairs_{model}.png")
                px = one[0]["pixels"]
                out.append(
                    plots.heatmaps(maps, path, f"{model}: {attack} {px}-pixel, Fig. {fig[3]}")
                )
        unt = [r for r in one if r["attack"] == "untargeted"]
        if unt:
            both = metrics.common_successes(unt)
            curves = {
                region: metrics.fitness_curves([r for r in rs if r["image"] in both])
                for (region,), rs in metrics.group(unt, "region").items()
            }
            path = os.path.join(folder, f"fig6_fitness_{model}.png")
            title = (
                f"{model}: untargeted {unt[0]['pixels']}-pixel, images successful in all regions"
            )
            out.append(plots.fitness_plot(curves, path, title))
            out.append(_examples(folder, model, unt, get, class_names, foreground))
    return out


def _examples(folder, model, unt, get, class_names, foreground, per_region: int = 6) -> str:
    """A grid of successful untargeted examples, `per_region` per region, each region
    outlined when `foreground` is given."""
    chosen = []
    for (_,), rs in metrics.group(unt, "region").items():
        chosen += [r for r in rs if r["success"]][:per_region]
    if not chosen:
        chosen = unt[:per_region]
    name = (lambda c: class_names[c]) if class_names else str
    indices = np.array([r["image"] for r in chosen])
    clean = get(indices)[0]
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
    path = os.path.join(folder, f"examples_{model}.png")
    return plots.adversarial_grid(
        adv, positions, titles, path, title=f"{model}: examples", regions=regions
    )
