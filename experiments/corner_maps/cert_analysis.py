"""Certificates beside the corner maps (and DE) on the same images: what any colour adds.

A region is a set of pixels, so the whole-image certificate (`certify`) answers
every region: the region is fooled when one of its pixels is fooled, proved robust when
all its pixels are safe, and undecided otherwise. `compare` reads, per region, on the
certified images:

- any_colour: images one pixel of the region fools with some colour (a confirmed
  witness; exact share, Clopper-Pearson); corners: images some corner colour fools
  there (the maps); any_minus_corners: the paired difference (`exact.paired`);
- robust: images proved robust (every region pixel safe); undecided_images: neither;
- pixels: region, fooled, safe, undecided pixels and those where a corner fools;
  densities (fooled / region pixels, pooled) with any colour and with corners;
- missed_by_corners: vulnerable images with no fooling corner pixel in the region, and
  fooled pixels where no corner fools; corner_pixels_not_fooled (a corner fools, the
  certificate did not confirm it) and corner_pixels_safe (a corner fools, the
  certificate says safe: a contradiction, expected 0);
- de (with DE records of that region): on the images both DE and certify saw, DE's
  successes, the any-colour share there, vulnerable images DE missed, and DE successes
  at a pixel the certificate proves safe (a contradiction, expected 0).

- question: the paper's order on the certified images, any colour: original -
  foreground and foreground - background (paired, exact McNemar p), and whether each
  is decided: a share is exact only when no image is undecided in that region.

`witnesses` says where in the colour cube the witnesses lie: how many channels sit at
a face of the cube (0 or 255), and the distance to the nearest corner (L-inf and L2,
in colour units), for all fooled pixels and for those where no corner fools.
"""

from __future__ import annotations

import numpy as np

from experiments.corner_maps import exact, stats
from experiments.corner_maps.batches import span

VALUE_RANGE = (0.0, 255.0)  # the corner study's colours


def compare(certs, classes, labels, regions: dict, de_rows: dict | None = None) -> dict:
    """JSON-ready comparison on the certified images.

    Args:
      certs: `certify.Certs` of one classifier (N images).
      classes: int [N, H, W, 8], the maps of the same images (same order); labels: int [N].
      regions: {name: bool [N, H, W]} (`regions.regions` of these images).
      de_rows: {region: {dataset index: DE record}} of this classifier, or None.

    Returns:
      {"images", "timing", "settings" (the distinct settings of the batches), "regions":
       {name: the module docstring's numbers}, "witnesses": `witnesses`}.
    """
    whole = np.ones_like(certs.fooled)
    corner_any = stats.fooling_pixels(classes, labels, whole)
    out = {}
    for name, mask in regions.items():
        out[name] = _region(certs, stats.fooling_pixels(classes, labels, mask), mask)
        records = (de_rows or {}).get(name)
        if records:
            out[name]["de"] = _de(certs, mask, records)
    question = {}
    for a, b in (("original", "foreground"), ("foreground", "background")):
        if a in regions and b in regions:
            fooled_a = (certs.fooled & regions[a]).any((1, 2))
            fooled_b = (certs.fooled & regions[b]).any((1, 2))
            question[f"{a}-{b}"] = dict(
                any_colour=exact.paired(fooled_a, fooled_b),
                exact=not (out[a]["undecided_images"] or out[b]["undecided_images"]),
            )
    batches = certs.batches
    distinct = []
    for b in batches:
        if b["settings"] not in distinct:
            distinct.append(b["settings"])
    return dict(
        images=len(certs),
        dataset_indices=certs.index.tolist(),
        timing=dict(
            batches=len(batches),
            **span(batches),
            bound_passes=int(certs.bound_passes.sum()),
        ),
        settings=distinct,
        regions=out,
        question=question,
        witnesses=dict(
            all=witnesses(certs.witness[certs.fooled]),
            no_corner_fools=witnesses(certs.witness[certs.fooled & ~corner_any]),
        ),
    )


def _region(certs, corner, mask) -> dict:
    fooled, safe, undecided = (getattr(certs, k) & mask for k in ("fooled", "safe", "undecided"))
    vulnerable, by_corner = fooled.any((1, 2)), corner.any((1, 2))
    robust = (safe | ~mask).all((1, 2))
    pixels = int(mask.sum())
    return dict(
        images=len(mask),
        any_colour=exact.share(vulnerable),
        corners=exact.share(by_corner),
        any_minus_corners=exact.paired(vulnerable, by_corner),
        robust=exact.share(robust),
        undecided_images=int((~vulnerable & ~robust).sum()),
        pixels=dict(
            region=pixels,
            fooled=int(fooled.sum()),
            safe=int(safe.sum()),
            undecided=int(undecided.sum()),
            corner=int(corner.sum()),
        ),
        density_any=float(fooled.sum() / max(pixels, 1)),
        density_corners=float(corner.sum() / max(pixels, 1)),
        missed_by_corners=dict(
            images=int((vulnerable & ~by_corner).sum()), pixels=int((fooled & ~corner).sum())
        ),
        corner_pixels_not_fooled=int((corner & ~fooled).sum()),
        corner_pixels_safe=int((corner & safe).sum()),
    )


def _de(certs, mask, records: dict) -> dict:
    """DE's records of one region beside the certificate, on the images both saw."""
    seen = np.array([int(i) in records for i in certs.index], bool)
    rows = [records[int(i)] for i in certs.index[seen]]
    success = np.array([bool(r["success"]) for r in rows], bool)
    vulnerable = (certs.fooled & mask)[seen].any((1, 2))
    safe = certs.safe[seen]
    at_safe = sum(
        bool(safe[n][tuple(r["positions"][0])]) for n, r in enumerate(rows) if r["success"]
    )
    return dict(
        images=int(seen.sum()),
        de=exact.share(success),
        any_colour=exact.share(vulnerable),
        missed_by_de=int((vulnerable & ~success).sum()),
        de_not_vulnerable=int((success & ~vulnerable).sum()),
        de_at_safe_pixel=int(at_safe),
    )


def witnesses(colours) -> dict:
    """Where witness colours [M, C] lie in the cube VALUE_RANGE^C: {"pixels": M,
    "saturated_channels": [pixels with 0, 1, ..., C channels at 0 or 255] ("corner":
    all C), "linf_to_corner" / "l2_to_corner": {mean, median, max} of the distance to
    the nearest corner over the pixels not at a corner (None when there are none)}."""
    colours = np.asarray(colours, np.float64)  # [M, C], M may be 0
    lo, hi = VALUE_RANGE
    gap = np.minimum(colours - lo, hi - colours)  # per channel, to the nearer face
    saturated = (gap == 0).sum(1)
    c = colours.shape[1]
    off = gap[saturated < c]
    out = dict(
        pixels=len(colours),
        corner=int((saturated == c).sum()),
        saturated_channels=np.bincount(saturated, minlength=c + 1).tolist(),
    )
    for key, dist in (
        ("linf_to_corner", off.max(1, initial=0)),
        ("l2_to_corner", np.sqrt((off**2).sum(1))),
    ):
        out[key] = (
            None
            if not len(off)
            else dict(mean=float(dist.mean()), median=float(np.median(dist)), max=float(dist.max()))
        )
    return out
