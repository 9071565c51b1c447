"""Model evaluations per second of rpx.pixel_map's exhaustive scan against bare predict.

    python benchmarks/pixel_map_throughput.py [--images 16] [--chunk-sizes 128,256,512]
        [--classifier cnn20] [--batches 64,128,256,512,1024]

Measures, on the same jitted classifier and the same real CIFAR-10 test images:
  limit  bare predict throughput at its best batch size (attack_throughput's sweep),
         and again at that batch size right after each scan (the load may drift);
  scan   rpx.pixel_map over all images, the 8 colour-cube corners at every pixel
         (whole image), and over the left half of each image (to show that only
         region pixels cost evaluations). Evaluations = region pixels x 8; the
         program is compiled first by a call with an empty region of the same shape
         (which evaluates nothing), then the scan is timed.
Untargeted, labels = the classifier's clean predictions.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rpx  # noqa: E402
from benchmarks import common  # noqa: E402
from benchmarks.attack_throughput import bare_limit  # noqa: E402


def run_scan(predict, images, labels, region, batch_size):
    """Wall time, evaluations and vulnerable counts of one timed scan (compile excluded)."""
    empty = np.zeros_like(region)
    jax.block_until_ready(rpx.pixel_map(predict, images, labels, empty, chunk_size=batch_size))
    start = time.perf_counter()
    scan = jax.block_until_ready(
        rpx.pixel_map(predict, images, labels, region, chunk_size=batch_size)
    )
    wall = time.perf_counter() - start
    fooled = np.asarray(scan.fooled)
    return dict(
        wall=wall,
        evaluations=int(region.sum()) * 8,
        images_vulnerable=int(fooled.any((1, 2)).sum()),
        pixels_fooled=int(fooled.sum()),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument(
        "--classifier", default="cnn20", help="'cnn20' (the ~20 MFLOP CNN) or a train/ workdir"
    )
    parser.add_argument("--data", default=common.DEFAULT_DATA)
    parser.add_argument(
        "--chunk-sizes", default="", help="comma list of batch sizes (default: the backend's)"
    )
    parser.add_argument(
        "--batches", default="64,128,256,512,1024", help="bare predict batch sizes to sweep"
    )
    args = parser.parse_args(argv)

    predict, name = common.classifier(args.classifier)
    images, _ = common.cifar_images(args.data, args.images)
    labels = np.asarray(jnp.argmax(predict(jnp.asarray(images, jnp.float32)), -1), np.int32)
    flops = common.flops_per_image(predict, images.shape[1:])
    n, h, w, _ = images.shape
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}"
    )
    print(
        f"classifier: {name}, {flops / 1e6:.1f} MFLOP/image; {n} real CIFAR-10 test images, "
        f"8 colour-cube corners per pixel"
    )

    rates = bare_limit(predict, images.shape[1:], [int(b) for b in args.batches.split(",")])
    best_batch = max(rates, key=rates.get)
    limit = rates[best_batch]
    sweep = ", ".join(f"{b}: {r:,.0f}" for b, r in rates.items())
    print(f"bare predict images/s by batch: {sweep}")
    print(f"limit: {limit:,.0f} evaluations/s at batch {best_batch}")

    whole = np.ones((n, h, w), bool)
    half = np.zeros((n, h, w), bool)
    half[:, :, : w // 2] = True
    chunks = [int(c) for c in args.chunk_sizes.split(",") if c] or [None]
    print(
        "\n| region | batch size | evaluations | wall s | evaluations/s | of limit "
        "| bare next to it | of that |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for chunk in chunks:
        for label, region in (("whole image", whole), ("left half", half)):
            row = run_scan(predict, images, labels, region, chunk)
            # On a shared machine the load drifts: bare predict re-measured right after
            # the scan gives a fairer ratio than the sweep at the start.
            near = bare_limit(predict, images.shape[1:], [best_batch], seconds=3.0)[best_batch]
            rate = row["evaluations"] / row["wall"]
            size = "default" if chunk is None else chunk
            print(
                f"| {label} | {size} | {row['evaluations']:,} | {row['wall']:.2f} | "
                f"{rate:,.0f} | {rate / limit:.2f} | {near:,.0f} | {rate / near:.2f} |",
                flush=True,
            )
            if region is whole:
                vulnerable = row["images_vulnerable"]
                share = row["pixels_fooled"] / region.sum()
    print(f"\none-pixel vulnerable (whole image): {vulnerable}/{n} images, {share:.2%} of pixels")


if __name__ == "__main__":
    main()
