"""Measurements behind docs/segmentation/README.md: does upscaling before GrabCut help?

    python docs/segmentation/measure.py --images ../shared/data/cifar10-test-first932.npz \
        --out docs/segmentation

1. Planted discs (rpx.segment.synthetic) at several contrasts: IoU with the true disc per
   upscale factor k, for plain rectangle GrabCut (nothing counts as degenerate) and for
   the pipeline with its fallbacks but no escalation (retry_upscale = k), and for the
   default settings; the paths taken.
2. The 932 exact CIFAR-10 test images: paths taken, foreground fractions and images per
   CPU-second (one process; CPU time, so other jobs on the machine matter less) for the
   same settings, and an outline grid of the first 32 images per setting.
Writes measure.json and upscale-comparison.png into --out.
"""

import argparse
import json
import os
import time

import numpy as np

from experiments.mask_figures import outline_grid, save_png
from rpx.segment.grabcut import GrabCutSettings, grabcut, path_counts
from rpx.segment.synthetic import iou, planted_discs

UPSCALES = (1, 2, 3, 4, 8)
CONTRASTS = (1.0, 0.3, 0.2, 0.1)


def _settings():
    """(name, settings) pairs: each upscale without escalation, then the defaults."""
    rows = [(f"upscale {k}", GrabCutSettings(upscale=k, retry_upscale=k)) for k in UPSCALES]
    return [*rows, ("default (4, retries 8)", GrabCutSettings())]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--discs", type=int, default=60, help="planted images per contrast")
    args = parser.parse_args()
    results = {"planted": [], "cifar": []}
    for contrast in CONTRASTS:
        images, truth = planted_discs(np.random.default_rng(0), args.discs, 32, contrast)
        for name, settings in _settings():
            masks, paths = grabcut(images, settings, workers=1, return_paths=True)
            scores = iou(masks, truth)
            row = dict(
                contrast=contrast,
                settings=name,
                iou_mean=round(float(scores.mean()), 3),
                iou_ge_08=round(float((scores >= 0.8).mean()), 3),
                paths=path_counts(paths),
            )
            if settings.retry_upscale == settings.upscale:
                # Plain rectangle GrabCut: nothing counts as degenerate, so no fallback
                # (except when the whole rectangle comes back foreground).
                plain = GrabCutSettings(
                    upscale=settings.upscale,
                    retry_upscale=settings.upscale,
                    min_fraction=0.0,
                    max_fill=1.0,
                )
                plain_scores = iou(grabcut(images, plain, workers=1), truth)
                row["plain_iou_mean"] = round(float(plain_scores.mean()), 3)
                row["plain_iou_ge_08"] = round(float((plain_scores >= 0.8).mean()), 3)
            results["planted"].append(row)
            print(row, flush=True)
    with np.load(args.images) as data:
        cifar = data["image"]
    grids = []
    for name, settings in _settings():
        start = time.process_time()
        masks, paths = grabcut(cifar, settings, workers=1, return_paths=True)
        seconds = time.process_time() - start
        fractions = masks.mean(axis=(1, 2))
        row = dict(
            settings=name,
            images_per_cpu_s=round(len(cifar) / seconds, 1),
            paths=path_counts(paths),
            fraction_quartiles=np.percentile(fractions, [25, 50, 75]).round(3).tolist(),
        )
        results["cifar"].append(row)
        print(row, flush=True)
        if settings.upscale != 3:
            grids.append(outline_grid(cifar[:32], masks[:32], paths[:32], columns=16, scale=3))
    save_png(os.path.join(args.out, "upscale-comparison.png"), np.concatenate(grids, axis=0))
    with open(os.path.join(args.out, "measure.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
