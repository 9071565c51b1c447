"""rpx.certify against the corner scan (rpx.pixel_map) on the same real images.

    python benchmarks/certify_throughput.py [--nets compact_fast,allconv,nin] [--images 2]
        [--budgets 1,4,16] [--radius R] [--search-steps 8] [--figure docs/certificate.png]

For each shipped classifier (train/assets/cifar10_NET) and its first N correctly
classified exact CIFAR-10 test images (whole image, untargeted, labels = the true and
clean labels): the wall time of the exhaustive corner scan (8 colours per pixel), then
for each budget (bound passes per pixel, `max_boxes`) the wall time of `rpx.certify`,
the shares of pixels proved safe, fooled and undecided, the images proved robust and
found vulnerable, and the bound passes spent per pixel: the decided share against time.
Both are timed after a compiling call on one image. --radius certifies the colours within
+-R of each clean colour instead of the whole cube. --figure draws the last
certificate of the first net (`rpx.plots.certificate_figure`).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rpx  # noqa: E402
from benchmarks import common  # noqa: E402
from rpx import plots  # noqa: E402


def load(net: str):
    """(predict(params, x), params) of a shipped classifier."""
    from train.checkpoint import load_parts

    apply, variables, _ = load_parts(os.path.join(common.ROOT, "train", "assets", f"cifar10_{net}"))
    return apply, variables


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="compact_fast,allconv,nin")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--budgets", default="1,4,16", help="comma list of max_boxes")
    parser.add_argument("--radius", type=float, default=None)
    parser.add_argument("--search-steps", type=int, default=8)
    parser.add_argument("--data", default=common.DEFAULT_DATA)
    parser.add_argument("--figure", default=None, help="PNG of the first net's certificate")
    args = parser.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    machine = platform.processor() or platform.machine()
    load_now = os.getloadavg()[0]
    print(f"# {machine}, {os.cpu_count()} cores, jax {jax.__version__}, load {load_now:.1f}")
    print(
        "| net | images | scan s | max_boxes | certify s | x scan | safe | fooled | undecided "
        "| robust | vulnerable | passes/pixel |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n_net, net in enumerate(args.nets.split(",")):
        apply, params = load(net)
        clean = functools.partial(jax.jit(apply), params)
        images, labels, _ = common.correctly_classified(clean, args.data, args.images)
        scan_args = (apply, images[:1], labels[:1])
        jax.block_until_ready(rpx.pixel_map(*scan_args, params=params).fooled)
        scan, scan_time = timed(
            lambda: rpx.pixel_map(apply, images, labels, params=params).fooled  # noqa: B023
        )
        for budget in budgets:
            knobs = dict(
                params=params, radius=args.radius, max_boxes=budget,
                search_steps=args.search_steps, progress=False,
            )  # fmt: skip
            rpx.certify(apply, images[:1], labels[:1], **knobs)  # compiles
            cert, wall = timed(lambda: rpx.certify(apply, images, labels, **knobs))  # noqa: B023
            pixels = images.shape[0] * images.shape[1] * images.shape[2]
            share = {
                k: float(np.asarray(getattr(cert, k)).sum()) / pixels
                for k in ("safe", "fooled", "undecided")
            }
            passes = float(np.asarray(cert.bound_passes).sum()) / pixels
            print(
                f"| {net} | {len(images)} | {scan_time:.1f} | {budget} | {wall:.1f} | "
                f"{wall / scan_time:.1f} | {share['safe']:.1%} | {share['fooled']:.1%} | "
                f"{share['undecided']:.1%} | {int(np.asarray(cert.robust).sum())} | "
                f"{int(np.asarray(cert.vulnerable).sum())} | {passes:.2f} |",
                flush=True,
            )
            if args.radius is None:  # the corners are colours of the set: none is missed
                assert (np.asarray(scan) <= np.asarray(cert.fooled)).all(), "corner missed"
        if args.figure and n_net == 0:
            titles = [f"{net}: safe / fooled / undecided" for _ in range(len(images))]
            plots.certificate_figure(images, cert, args.figure, titles=titles)
            print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
