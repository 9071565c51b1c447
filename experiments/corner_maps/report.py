"""report.md, report.json and figures/ of a corner-map workdir (`analysis.analyse`).

- report.md: per classifier, the share of images with a fooling pixel per region beside
  the paper's 1-pixel Untargeted1 (Table II), fooling-pixel densities, paired region
  differences, the share per number of reached target classes (Fig. 3), and the
  original-to-reached class counts (Figs. 4/5) of the paper's three regions; every
  share with its count and its 95% interval (`stats` says which kind), every
  paired difference of shares with its exact McNemar p (Holm-adjusted for the
  secondary family, `analysis.SECONDARY`); where certificates exist, one pixel
  of any colour beside the corners (and DE) on the certified images
  (`cert_analysis`).
- figures/: `figures`.

Every file is written beside its target and renamed, so a report read while a run
writes a new one is whole.
"""

from __future__ import annotations

import json
import os

from experiments import paper
from experiments.atomic import write_atomic
from experiments.corner_maps.figures import figures, most_targets
from experiments.corner_maps.regions import PAPER_REGIONS, REGIONS


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
        "random background pixels as the foreground has, scattered (per image, one seeded "
        "draw); background blob: as many, as one random 4-connected blob of the background "
        "(seeded); ring: foreground+2 without the foreground; ring-sized blob: a random "
        "4-connected blob of background-2 as large as the ring (seeded).",
        "- Intervals (95%): shares of images (fooled, Fig. 3, DE) are exact Clopper-Pearson "
        "intervals. Paired differences of shares are exact and conservative: "
        "Clopper-Pearson intervals for the share of discordant images and, among them, the "
        "share where a alone is fooled (McNemar's conditional binomial), each at 97.5%, and "
        "the range of the difference over both; p: the exact McNemar test. Densities, "
        "(image, target) pairs and means of per-image values (generations, the size-matched "
        f"expectation): percentile bootstrap over images, {analysis['resamples']} "
        f"resamples, seed {analysis['seed']}.",
        "- Comparisons: the primary one is foreground - background (the paper's claim), "
        "the share of images, per net, unadjusted. The other paired share differences are "
        "one family per net, their p values Holm-adjusted; density differences, Figs. 3-5 "
        "and the DE section are descriptive. By construction original - background >= 0, "
        "and foreground+2 - background-2 >= foreground - background (moving any pixels "
        "from the background to the foreground can only widen the gap). What the dilation "
        "can show is whether the ring it moves fools more often than as many pixels "
        "elsewhere in the background (background-2): against a compact blob (ring - "
        "ring-sized blob) and a scattered sample (below). Fooling pixels cluster, so a "
        "spread region reaches more vulnerable images than a compact one of its size; a "
        "thin ring lies between the two controls' shapes.",
        "- The paper's columns are its 1-pixel Untargeted1 and Targeted of Table II: DE with "
        "any colour (400 x 100), 500 random images, human-corrected GrabCut masks. Ours say "
        "whether a corner colour at some region pixel fools the net (towards any class, or "
        "towards each of the 9 other classes): exhaustive for corner colours, blind to other "
        "colours.",
    ]
    for net, r in analysis["nets"].items():
        lines += _net_section(net, r)
    if any("certify" in r for r in analysis["nets"].values()):
        lines += _cert_section(analysis["nets"])
    if analysis.get("de"):
        lines += _de_section(analysis["de"])
    return "\n".join(lines) + "\n"


def _de_section(de: dict) -> list[str]:
    """DE at the paper's budget beside the maps on the same images (`de`)."""
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
        "counts as 1). Intervals: Clopper-Pearson for the shares, exact conservative for DE - "
        "scan (as above), bootstrap over images for the generations.",
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


_NOT_KNOBS = ("certify", "parameters", "engine")  # settings other than rpx.certify's knobs


def _cert_section(nets: dict) -> list[str]:
    """One pixel of any colour (`rpx.certify`) beside the corners and DE."""
    lines = [
        "",
        "## One pixel of any colour: certificates (rpx.certify)",
        "",
        "Each net's first certified images of the maps, whole image, untargeted, every "
        "integer colour of [0, 255]^3. A region is fooled when one of its pixels is (a "
        "witness colour confirmed by the full forward pass), proved robust when every "
        "pixel is proved safe, else undecided (the budget ran out). Any colour >= corners "
        "on the same images (the certificate tries the corners first). Intervals: "
        "Clopper-Pearson for shares, exact conservative for any colour - corners. "
        "Densities: fooled pixels / region pixels, pooled. Missed by corners: vulnerable "
        "images (pixels) where no corner of the region (pixel) fools. DE: on the images "
        "both DE and the certificate saw.",
        "",
    ]
    for net, r in nets.items():
        c = r.get("certify")
        if not c:
            continue
        t = c["timing"]
        knobs = "; ".join(
            ", ".join(f"{k}={v}" for k, v in s.items() if k not in _NOT_KNOBS)
            for s in c["settings"]
        )
        lines += [
            f"### {net}: {c['images']} images certified",
            "",
            f"{t['batches']} batches, {t['wall_seconds'] / 60:.1f} min wall / "
            f"{t['cpu_seconds'] / 60:.1f} min CPU ({t['wall_seconds'] / c['images']:.0f} s "
            f"per image), {t['bound_passes']:,} bound passes; finished {t['first_finished']}"
            f" to {t['last_finished']}. Settings: {knobs}.",
            "",
            "| region | any colour: fooled [95% CI] | corners, same images | any - corners "
            "| proved robust | undecided images | density any / corners | missed by corners: "
            "images / pixels | pixels safe / undecided | DE (same images) | missed by DE |",
            "|---|---|---|---|---|---:|---|---|---|---|---:|",
        ]
        for name, g in c["regions"].items():
            px, d = g["pixels"], g.get("de")
            de = "-" if d is None else f"{d['de']['count']}/{d['images']} ({_pct(d['de'])})"
            lines.append(
                f"| {name} | {g['any_colour']['count']}: {_pct(g['any_colour'])} | "
                f"{g['corners']['count']}: {_pct(g['corners'])} | "
                f"{_signed(g['any_minus_corners'])} | {g['robust']['count']} | "
                f"{g['undecided_images']} | {100 * g['density_any']:.3f}% / "
                f"{100 * g['density_corners']:.3f}% | {g['missed_by_corners']['images']} / "
                f"{g['missed_by_corners']['pixels']} | {px['safe']} / {px['undecided']} of "
                f"{px['region']} | {de} | {'-' if d is None else d['missed_by_de']} |"
            )
        checks = [
            f"{name}: {g['corner_pixels_safe']} corner-fooled pixels proved safe, "
            f"{g['corner_pixels_not_fooled']} not confirmed"
            for name, g in c["regions"].items()
            if g["corner_pixels_safe"] or g["corner_pixels_not_fooled"]
        ]
        checks += [
            f"{name}: DE succeeded at {g['de']['de_at_safe_pixel']} proved-safe pixels, on "
            f"{g['de']['de_not_vulnerable']} images the certificate found no witness for"
            for name, g in c["regions"].items()
            if g.get("de") and (g["de"]["de_at_safe_pixel"] or g["de"]["de_not_vulnerable"])
        ]
        lines += [
            "",
            "Consistency: "
            + (
                "; ".join(checks)
                or "every corner-fooling pixel "
                "is fooled in the certificate, and no DE success is at a safe pixel"
            )
            + ".",
        ]
        for pair, q in c.get("question", {}).items():
            d = q["any_colour"]
            lines += [
                "",
                f"{pair.replace('-', ' - ')}, any colour (paired): {_signed(d)}, discordant "
                f"{d['a_only']} / {d['b_only']}, McNemar p {_p(d['p'])}; "
                + (
                    "exact (every image decided)."
                    if q["exact"]
                    else "a lower-bound comparison, not exact: images are undecided in "
                    "these regions (neither fooled nor proved robust)."
                ),
            ]
        w, beyond = c["witnesses"]["all"], c["witnesses"]["no_corner_fools"]
        lines += [
            "",
            f"Witnesses: {w['pixels']} fooled pixels, {w['corner']} of them at a corner of "
            f"the cube; at the {beyond['pixels']} fooled pixels where no corner fools: "
            + _where(beyond),
            "",
        ]
    return lines


def _where(w: dict) -> str:
    """Where witness colours lie in the cube (`cert_analysis.witnesses`)."""
    if not w["pixels"]:
        return "none."
    sat = ", ".join(f"{k}: {n}" for k, n in enumerate(w["saturated_channels"]))
    text = f"{w['corner']} at a corner; channels at 0 or 255 ({sat})"
    for key, name in (("linf_to_corner", "L-inf"), ("l2_to_corner", "L2")):
        d = w[key]
        if d:
            text += (
                f"; {name} distance to the nearest corner (of those not at one): mean "
                f"{d['mean']:.1f}, median {d['median']:.1f}, max {d['max']:.1f}"
            )
    return text + "."


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
        "Paired differences (a - b, same images; the first is the primary comparison):",
        "",
        "| a - b | share of images [exact 95% CI] | a only / b only (images) | McNemar p "
        "| Holm p | pooled density [95% bootstrap CI] |",
        "|---|---|---:|---:|---:|---|",
    ]
    for pair, d in r["differences"].items():
        sh = d["share"]
        holm = "-" if sh["holm_p"] is None else _p(sh["holm_p"])
        lines.append(
            f"| {pair}{' (primary)' if sh['primary'] else ''} | {_signed(sh)} | "
            f"{sh['a_only']} / {sh['b_only']} | {_p(sh['p'])} | {holm} | "
            f"{_signed(d['density_pooled'], 3)} |"
        )
    short = r["short_blobs"]
    lines += [
        "",
        "Scattered samples over all their draws (exact: per image, the hypergeometric "
        "chance that as many random pixels of the pool as the region has include a fooling "
        "pixel, averaged over images; bootstrap CI; the sample's expected density is the "
        "pool's, image by image, by construction):",
        "",
    ]
    for key, e in r["scattered"].items():
        region, pool = key.split(" in ")
        lines.append(
            f"- as many {pool} pixels as the {region} has: {_pct(e['share'])} of images; "
            f"{region} minus it {_signed(e['region_minus'])}."
        )
    lines += [
        "",
        "The first is the size-matched background averaged over its draws. Blobs smaller "
        "than asked (no component large enough, the whole largest one instead): background "
        f"blob {short['background blob']} images, ring-sized blob {short['ring-sized blob']}.",
    ]
    k = most_targets(r) + 1
    lines += [
        "",
        "Share of images per number of reached target classes (Fig. 3), % [95% Clopper-Pearson "
        "CI] (images); "
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


def _signed(s: dict, digits: int = 1) -> str:
    return (
        f"{100 * s['estimate']:+.{digits}f} pts [{100 * s['low']:+.{digits}f}, "
        f"{100 * s['high']:+.{digits}f}]"
    )


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def _matrix(m) -> list[str]:
    k = len(m)
    head = "| orig \\ reached | " + " | ".join(map(str, range(k))) + " |"
    return [head, "|---|" + "---:|" * k] + [
        f"| {i} | " + " | ".join(map(str, row)) + " |" for i, row in enumerate(m)
    ]


def write(folder: str, analysis: dict) -> list[str]:
    """FOLDER/report.md, report.json and figures/*.png; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    written = [os.path.join(folder, "report.md"), os.path.join(folder, "report.json")]
    write_atomic(written[0], markdown(analysis))
    write_atomic(written[1], json.dumps(analysis, indent=1))
    return written + (
        figures(os.path.join(folder, "figures"), analysis) if analysis["nets"] else []
    )
