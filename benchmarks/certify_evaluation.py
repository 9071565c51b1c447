"""rpx.certify's seconds per image with incremental against full candidate evaluation.

    python benchmarks/certify_evaluation.py --model allconv [--images 4] [--weights auto]
        [--max-boxes 64 --search-starts 2 --search-steps 8 --chunk-size 256] [--square N]

One process per net, as `incremental_throughput.py` (whose `classifier` loads the shipped
checkpoint or random weights). The first image of the committed CIFAR-10 test sample is
certified once to compile; then `--images` images (labels = the clean predictions,
the whole image or its central `--square` x `--square` pixels, untargeted) with
evaluation="incremental" and "full", alternating image by image so a shared machine
slows both alike. Printed: seconds per image of each, and the
pixels proved safe / fooled / undecided (the same for both up to float ties).
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import rpx  # noqa: E402
from benchmarks.incremental_throughput import MODELS, SAMPLE, classifier  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, required=True)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--weights", choices=("auto", "random"), default="auto")
    p.add_argument(
        "--square", type=int, default=0, help="certify the central N x N pixels (0: all)"
    )
    for knob, default in (
        ("max-boxes", 64),
        ("chunk-size", 256),
        ("enumerate-below", 8),
        ("search-starts", 2),
        ("search-steps", 8),
    ):
        p.add_argument(f"--{knob}", type=int, default=default)
    args = p.parse_args(argv)
    knobs = {
        k: getattr(args, k)
        for k in ("max_boxes", "chunk_size", "enumerate_below", "search_starts", "search_steps")
    }
    predict, described = classifier(args.model, args.weights)
    images = np.load(SAMPLE)["image"][: args.images + 1]
    labels = np.asarray(jax.jit(predict)(jnp.asarray(images, jnp.float32))).argmax(1)
    labels = labels.astype(np.int32)
    h, w = images.shape[1:3]
    if not 0 <= args.square <= min(h, w):
        p.error(f"--square must lie in 0..{min(h, w)}, got {args.square}")
    region = np.ones((h, w), bool)
    if args.square:
        region[:] = False
        top, left = (h - args.square) // 2, (w - args.square) // 2
        region[top : top + args.square, left : left + args.square] = True
    where = f"central {args.square}x{args.square} pixels" if args.square else "whole image"
    seconds = {"incremental": [], "full": []}
    counts = {e: np.zeros(3, int) for e in seconds}
    for evaluation in seconds:  # compile both on the first image
        rpx.certify(
            predict, images[:1], labels[:1], region, evaluation=evaluation, progress=False, **knobs
        )
    for i in range(1, len(images)):
        for evaluation in seconds:
            t = time.perf_counter()
            c = rpx.certify(
                predict,
                images[i : i + 1],
                labels[i : i + 1],
                region,
                evaluation=evaluation,
                progress=False,
                **knobs,
            )
            seconds[evaluation].append(time.perf_counter() - t)
            counts[evaluation] += [
                int(np.asarray(getattr(c, k)).sum()) for k in ("safe", "fooled", "undecided")
            ]
    print(f"{described}; {platform.node()}, {jax.default_backend()}, {os.cpu_count()} CPUs")
    print(f"{len(images) - 1} images, {where}, untargeted; knobs {knobs}")
    for evaluation, s in seconds.items():
        safe, fooled, undecided = counts[evaluation]
        print(
            f"  {evaluation:<11} {np.mean(s):8.2f} s/image (min {min(s):.2f}); pixels "
            f"safe {safe}, fooled {fooled}, undecided {undecided}"
        )
    ratio = np.mean(seconds["full"]) / np.mean(seconds["incremental"])
    print(f"  full / incremental time {ratio:.2f}")


if __name__ == "__main__":
    main()
