"""Measurements behind docs/segmentation/README.md: does upscaling before GrabCut help?

    python docs/segmentation/measure.py --images ../shared/data/cifar10-test-first932.npz \
        --out docs/segmentation

1. Planted discs (rpx.segment.synthetic) at several contrasts: IoU with the true disc per
   upscale factor, with the fallbacks and for plain rectangle GrabCut, and the paths taken.
2. The 932 exact CIFAR-10 test images: paths taken, foreground fractions and images/s per
   upscale factor (one process, so images/s is per core), and a side-by-side outline grid.
Writes measure.json and upscale-comparison.png into --out.
"""

import argparse
import json
import os
import time

import numpy as np

from rpx.segment.figures import outline_grid, save_png
from rpx.segment.grabcut import GrabCutSettings, grabcut, path_counts
from rpx.segment.synthetic import iou, planted_discs

UPSCALES = (1, 2, 3, 4)
CONTRASTS = (1.0, 0.5, 0.3, 0.2, 0.1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--discs", type=int, default=100, help="planted images per contrast")
    args = parser.parse_args()
    results = {"planted": [], "cifar": []}
    for contrast in CONTRASTS:
        images, truth = planted_discs(np.random.default_rng(0), args.discs, 32, contrast)
        for k in UPSCALES:
            masks, paths = grabcut(images, GrabCutSettings(upscale=k), workers=1, return_paths=True)
            scores = iou(masks, truth)
            # Plain rectangle GrabCut: nothing counts as degenerate, so no retry/fallback
            # (except when the whole rectangle comes back foreground).
            plain = GrabCutSettings(upscale=k, min_fraction=0.0, max_fill=1.0)
            plain_scores = iou(grabcut(images, plain, workers=1), truth)
            row = dict(
                contrast=contrast,
                upscale=k,
                iou_mean=round(float(scores.mean()), 3),
                iou_ge_08=round(float((scores >= 0.8).mean()), 3),
                paths=path_counts(paths),
                plain_iou_mean=round(float(plain_scores.mean()), 3),
                plain_iou_ge_08=round(float((plain_scores >= 0.8).mean()), 3),
            )
            results["planted"].append(row)
            print(row, flush=True)
    with np.load(args.images) as data:
        cifar = data["image"]
    rows = []
    for k in UPSCALES:
        start = time.perf_counter()
        masks, paths = grabcut(cifar, GrabCutSettings(upscale=k), workers=1, return_paths=True)
        seconds = time.perf_counter() - start
        fractions = masks.mean(axis=(1, 2))
        row = dict(
            upscale=k,
            images_per_s_one_core=round(len(cifar) / seconds, 1),
            paths=path_counts(paths),
            fraction_quartiles=np.percentile(fractions, [25, 50, 75]).round(3).tolist(),
        )
        results["cifar"].append(row)
        print(row, flush=True)
        rows.append(outline_grid(cifar[:32], masks[:32], paths[:32], columns=16, scale=3))
    save_png(os.path.join(args.out, "upscale-comparison.png"), np.concatenate(rows, axis=0))
    with open(os.path.join(args.out, "measure.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
