"""The table and figure of `search_quality.py`, from its per-image lines.

    python benchmarks/search_quality_report.py RESULTS.jsonl [--figure PNG]

A line is one untargeted attack: model, region, pixels (k), method, population,
generations, seed, image, success, queries (evaluations spent: until success, else the
whole budget) and max_queries (what that image could spend). Success at q queries is
the share of images whose attack succeeded within q queries of its run. Runs are not
restarted with a budget of q; for DE (its randomness is drawn per generation) that is
the success a run with budget q would have, and for Sparse-RS too while its schedule,
scaled to the budget, resamples one pixel throughout (max(floor(p_init * k / d), 1) = 1:
k <= 6 at p_init 0.3); else it is the full-budget run's success after q queries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

THRESHOLDS = (1_000, 4_000, 8_192, 40_400)
GROUP = ("model", "pixels", "region", "method", "population", "generations")
METHOD_ORDER = ("de", "scan", "scan_de", "sparse_rs")
REGION_ORDER = ("original", "foreground", "background")
LABELS = {"de": "DE", "scan": "scan", "scan_de": "scan + DE", "sparse_rs": "Sparse-RS"}
COLORS = {"de": "tab:blue", "scan": "tab:orange", "scan_de": "tab:green", "sparse_rs": "tab:red"}
STYLES = {"scan_de": "--"}  # scan + DE follows the scan until the scan ends: dashed over it
# What every line holds (the module docstring), each field of its type.
ROW_TYPES = {
    "model": str, "region": str, "pixels": int, "method": str, "population": int,
    "generations": int, "seed": int, "image": int, "success": bool, "queries": int,
    "max_queries": int,
}  # fmt: skip


def check_row(row) -> None:
    """ValueError naming the field unless `row` is a line of the benchmark: every field
    of ROW_TYPES of its type, counts non-negative, k >= 1, a known method."""
    if not isinstance(row, dict):
        raise ValueError(f"a row is a JSON object, got a {type(row).__name__}")
    for field, kind in ROW_TYPES.items():
        v = row.get(field)
        if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
            raise ValueError(f"field {field!r} holds {v!r}, not a {kind.__name__}")
    counts = ("pixels", "population", "generations", "image", "queries", "max_queries")
    if row["pixels"] < 1 or any(row[f] < 0 for f in counts):
        raise ValueError("a negative count, or pixels < 1")
    if row["method"] not in METHOD_ORDER:
        raise ValueError(f"field 'method' holds {row['method']!r}, not one of {METHOD_ORDER}")


def read_rows(path: str) -> list[dict]:
    """The lines of a results file, each checked (`check_row`). A last line cut short by
    a kill (no newline) is dropped; any other line that is not a row is a ValueError
    naming the file and line. A missing file has no rows."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().split("\n")
    rows = []
    for number, line in enumerate(lines[:-1], 1):  # lines[-1]: "" or a cut last line
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            check_row(row)
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: not a row ({err}): {line[:60]!r}") from None
        rows.append(row)
    return rows


def groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by GROUP, ordered by model, k, region, then method."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in GROUP), []).append(r)

    def order(key):
        model, pixels, region, method, *_ = key
        return (model, pixels, _index(REGION_ORDER, region), _index(METHOD_ORDER, method), key)

    return dict(sorted(out.items(), key=lambda item: order(item[0])))


def _index(order, value):
    return order.index(value) if value in order else len(order)


def success_at(rows: list[dict], queries) -> np.ndarray:
    """float [Q]: the share of `rows` that succeeded within each of `queries` [Q]."""
    spent = np.array([r["queries"] if r["success"] else np.inf for r in rows], float)
    return (spent[None, :] <= np.asarray(queries, float)[:, None]).mean(1)


def summary(rows: list[dict]) -> dict:
    """Images, success at each of THRESHOLDS, success at the full budget, the largest
    budget and the median queries of the successes. A threshold above the largest
    budget of a budgeted search gives None: that run stopped before it, and a larger
    budget would have searched on (the exhaustive scan has no such threshold)."""
    cap = max(r["max_queries"] for r in rows)
    limit = max(THRESHOLDS) if all(r["method"] == "scan" for r in rows) else cap
    at = success_at(rows, THRESHOLDS)
    wins = [r["queries"] for r in rows if r["success"]]
    return {
        "images": len(rows),
        "at": [float(v) if t <= limit else None for t, v in zip(THRESHOLDS, at, strict=True)],
        "final": float(np.mean([r["success"] for r in rows])),
        "max_queries": int(cap),
        "median_queries": float(np.median(wins)) if wins else None,
        "successes": len(wins),
    }


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def markdown(rows: list[dict]) -> str:
    """The table: one line per (model, k, region, method); '-' where a threshold lies
    above every budget of a budgeted search (see `summary`)."""
    head = " | ".join(f"<= {t:,}" for t in THRESHOLDS)
    lines = [
        f"| model | k | region | method | images | {head} | at its budget (max queries) "
        "| median queries per success |",
        "|---|---|---|---|---|" + "---|" * len(THRESHOLDS) + "---|---|",
    ]
    for (model, k, region, method, *_), rs in groups(rows).items():
        s = summary(rs)
        med = "-" if s["median_queries"] is None else f"{s['median_queries']:,.0f}"
        lines.append(
            f"| {model} | {k} | {region} | {LABELS.get(method, method)} | {s['images']} | "
            + " | ".join(_pct(v) for v in s["at"])
            + f" | {_pct(s['final'])} ({s['max_queries']:,}) | {med} |"
        )
    return "\n".join(lines)


def figure(rows: list[dict], path: str) -> str:
    """Success against queries (log scale), one panel per (model, k) and region, one
    step line per method ending with a dot at its largest budget; dashed lines at 8,192
    and 40,400 queries. Returns the PNG's path."""
    from matplotlib.figure import Figure

    from rpx import plots

    cells = groups(rows)
    panels = list(dict.fromkeys((m, k) for m, k, *_ in cells))
    regions = sorted({key[2] for key in cells}, key=lambda r: _index(REGION_ORDER, r))
    fig = Figure(figsize=(3.6 * len(regions), 2.9 * len(panels)))
    axes = fig.subplots(len(panels), len(regions), squeeze=False, sharex=True, sharey=True)
    grid = np.unique(np.geomspace(10, 50_000, 500).astype(int))
    for i, (model, k) in enumerate(panels):
        for j, region in enumerate(regions):
            ax = axes[i, j]
            images = set()
            for key, rs in cells.items():
                if key[:3] != (model, k, region):
                    continue
                images |= {r["image"] for r in rs}
                cap = max(r["max_queries"] for r in rs)
                q = np.append(grid[grid < cap], cap)
                color = COLORS.get(key[3])
                line = ax.step(q, 100 * success_at(rs, q), where="post", color=color,
                               linestyle=STYLES.get(key[3], "-"),
                               label=LABELS.get(key[3], key[3]))  # fmt: skip
                ax.plot(q[-1:], 100 * success_at(rs, q[-1:]), "o", color=line[0].get_color(),
                        markersize=3)  # fmt: skip
            for x in (8_192, 40_400):
                ax.axvline(x, color="grey", linestyle="--", linewidth=0.7)
            ax.set_xscale("log")
            ax.set_title(f"{model}, k={k}, {region} ({len(images)} images)", fontsize=9)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("success (%)")
            if i == len(panels) - 1:
                ax.set_xlabel("queries")
            ax.legend(fontsize=7, loc="upper left")
    return plots.save_figure(fig, path, dpi=90)


def main(argv=None) -> int:
    """The command line; returns the exit status (2 with one line for a bad file)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results")
    p.add_argument("--figure", default="")
    args = p.parse_args(argv)
    try:
        if not os.path.isfile(args.results):
            raise ValueError(f"{args.results} does not exist or is not a file")
        rows = read_rows(args.results)
        if not rows:
            raise ValueError(f"{args.results} holds no rows")
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(rows))
    path = args.figure or os.path.join(os.path.dirname(args.results), "success_vs_queries.png")
    print(f"wrote {figure(rows, path)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
