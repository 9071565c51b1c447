"""The pixel-map study (issue 7): an exhaustive one-pixel scan against DE in each region.

`compare` scans every pixel of each image with the 8 colour-cube corners
(`rpx.pixel_map`), runs one-pixel untargeted DE (`rpx.run`) in each region with
`experiments.cells.cell_key` for a model named "m" (so not the keys an experiments.cifar
run of the same classifier uses), and counts per region the images the scan finds
vulnerable, the DE successes, the vulnerable images DE missed and DE's successes the
scan did not predict; `report` words the result as a markdown table and two lines.
"""

from __future__ import annotations

import time

import jax
import numpy as np

import rpx
from experiments.cells import cell_key
from experiments.grid import Grid
from rpx.plots import vulnerable_share


def compare(predict, images, labels, foreground, grid: Grid) -> tuple[rpx.PixelMap, dict]:
    """Scan, then DE in each of `grid.regions`, on images [N, H, W, 3] with labels int
    [N] (the clean predictions) and bool foreground masks [N, H, W].

    Returns:
      (the scan, a JSON-able dict): "seconds" ({"scan", "de"}), "regions" ({region:
      {"images", "scan_vulnerable", "de_success", "missed_by_de", "de_only"}}),
      "mean_vulnerable_share" and "per_image_share" ({"foreground", "background"}: the
      share of each image's region pixels that one corner colour fools, `vulnerable_share`).
    """
    start = time.perf_counter()
    scan = jax.block_until_ready(rpx.pixel_map(predict, images, labels))
    scan_s, de_s = time.perf_counter() - start, 0.0
    config = rpx.AttackConfig(pixels=1, population=grid.population, generations=grid.generations)
    fooled, per_region = np.asarray(scan.fooled), {}
    for name in grid.regions:
        mask = np.asarray(rpx.regions.mask(name, foreground))
        vulnerable = (fooled & mask).any((1, 2))
        key = cell_key(grid.seed, "m", name, 1, "table", "untargeted")
        start = time.perf_counter()
        de = rpx.run(predict, images, labels, region=mask, config=config, key=key, progress=False)
        success = np.asarray(de.success)
        de_s += time.perf_counter() - start
        per_region[name] = dict(
            images=len(images), scan_vulnerable=int(vulnerable.sum()),
            de_success=int(success.sum()), missed_by_de=int((vulnerable & ~success).sum()),
            de_only=int((success & ~vulnerable).sum()),
        )  # fmt: skip
    parts = dict(foreground=foreground, background=~foreground)
    share = {part: np.asarray(vulnerable_share(scan, mask)) for part, mask in parts.items()}
    return scan, dict(
        seconds=dict(scan=round(scan_s, 1), de=round(de_s, 1)),
        regions=per_region,
        mean_vulnerable_share={part: float(np.nanmean(s)) for part, s in share.items()},
        per_image_share={part: s.tolist() for part, s in share.items()},
    )


def report(out: dict) -> list[str]:
    """`compare`'s counts as a markdown table, the mean shares and the seconds."""
    lines = [
        "| region | images | scan-vulnerable | DE successes | missed by DE | DE only |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in out["regions"].items():
        lines.append(f"| {name} | {' | '.join(str(v) for v in r.values())} |")
    share, seconds = out["mean_vulnerable_share"], out["seconds"]
    return lines + [
        f"mean vulnerable share: foreground {share['foreground']:.2%}, "
        f"background {share['background']:.2%}",
        f"scan {seconds['scan']:.1f} s, DE {seconds['de']:.1f} s",
    ]
