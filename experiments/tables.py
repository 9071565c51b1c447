"""The paper's tables from results.jsonl: WORKDIR/table.md (Table II or III, Table IV,
the restriction ablation), each value ours with the paper's beside it.

Everything here is recomputed from the records alone (`experiments.metrics`), so a
resumed run writes the same table as an uninterrupted one.
"""

from __future__ import annotations

import math
import os

from experiments import metrics, paper
from experiments.atomic import write_atomic
from experiments.grid import methods

REGION_ORDER = ("original", "foreground", "background")


def pct(x) -> str:
    """A fraction as a percentage, '-' when undefined."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _num(x, digits=2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ordered(values, order):
    return sorted(set(values), key=lambda v: (order.index(v) if v in order else len(order), v))


def _by_model_and_method(records) -> list[tuple[tuple, list[dict]]]:
    """((model, method), records) per model in first-seen order, the paper's method first."""
    return [
        ((model, method), rs)
        for (model,), mrecs in metrics.group(records, "model").items()
        for method, rs in methods.split(mrecs)
    ]


def _named(model: str, method) -> str:
    """A table row's name: the model, with the method unless it is the paper's."""
    word = methods.label(method)
    return f"{model} ({word})" if word else model


def table2_markdown(records: list[dict], num_targets: int | None = None) -> str:
    """Table II: per model, metric rows x (region, pixels) columns, 'ours (paper)'."""
    lines = []
    for (restriction,), recs in metrics.group(records, "restriction").items():
        for (model, method), mrecs in _by_model_and_method(recs):
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
            how = ", ".join(w for w in (f"restriction={restriction}", methods.label(method)) if w)
            lines += [
                f"### {model} ({how}, {images} images; ours ({source}))",
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
    for (model, method), recs in _by_model_and_method(one):
        if method != methods.DEFAULT and not any(r["attack"] == "untargeted" for r in recs):
            continue  # e.g. the scan's targeted rows: no untargeted generations
        gens = metrics.by_cell(recs, ("region",), metrics.mean_generations)
        row = []
        for region in regions:
            theirs = paper.by_region(paper.TABLE4, model, None, region)
            ref = "" if theirs is None else f" ({theirs:.2f})"
            row.append(_num(gens.get((region,), math.nan)) + ref)
        lines.append(f"| {_named(model, method)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def table3_markdown(records: list[dict]) -> str:
    """Table III: per model, metrics.TABLE3_ROWS x regions, 'ours (paper)'."""
    one = [r for r in records if r["pixels"] == 1 and r["restriction"] == "table"]
    lines = []
    for (model, method), recs in _by_model_and_method(one):
        if method != methods.DEFAULT and not any(r["attack"] == "untargeted" for r in recs):
            continue
        cells = metrics.by_cell(recs, ("region",), metrics.table3)
        regions = _ordered([k[0] for k in cells], REGION_ORDER)
        images = len({r["image"] for r in recs})
        how = ", ".join(w for w in (methods.label(method), f"{images} images") if w)
        lines += [
            f"### {model} ({how}; ours (paper))",
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
    groups: dict[tuple, list[dict]] = {}
    for r in unt:
        groups.setdefault((r["model"], methods.of(r), r["pixels"], r["region"]), []).append(r)
    order = lambda k: (k[0], methods.order(k[1]), k[2], REGION_ORDER.index(k[3]))  # noqa: E731
    for model, method, p, region in sorted(groups, key=order):
        by = metrics.group(groups[(model, method, p, region)], "restriction")
        if len(by) < len(restrictions):
            continue  # not run under every restriction
        common = set.intersection(*({r["image"] for r in rs} for rs in by.values()))
        row = []
        for x in restrictions:
            c = metrics.success_and_generations([r for r in by[(x,)] if r["image"] in common])
            row += [pct(c["success"]), _num(c["generations"])]
        name = _named(model, method)
        lines.append(f"| {name} | {p} | {region} | {len(common)} | " + " | ".join(row) + " |")
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
    return write_atomic(path, "\n".join(text))
