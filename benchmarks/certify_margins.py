"""How far `rpx.certify`'s bounds are from a proof, per colour box size: forward vs CROWN.

    python benchmarks/certify_margins.py [--nets compact_fast,allconv,nin] [--pixels 256]
        [--radii 0,1,4,16,64,127.5]

For each shipped classifier (train/assets/cifar10_NET), `count` random pixels (numpy seed
0) of the first image of train/assets/cifar10_test_sample100.npz, untargeted (goal: the
predicted class), one box per pixel: the clean colour +- r per channel (clipped to
0..255; r = 127.5: the whole colour cube). Per radius: the share of boxes proved by the
forward forms alone (`bounds.margins(use_crown=False)`) and with back-substitution
(`use_crown=True`, the better bound per class), the median over boxes of the weakest
margin's lower bound (logit units) for each, and the wall time per box of each jitted
program (after a compiling call). The first line gives the clean image's largest
|margin| and the reach beyond which `rpx.certify` skips back-substitution
(`branch.CROWN_REACH` times 1 + that margin): boxes whose forward bound lies below
-reach are not given CROWN.
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

from benchmarks import common  # noqa: E402
from rpx.certification import bounds, branch  # noqa: E402

SAMPLE = os.path.join(common.ROOT, "train", "assets", "cifar10_test_sample100.npz")


def margins_table(net: str, count: int, radii: list[float]) -> list[dict]:
    """One row per radius (module docstring) for the shipped classifier `net`."""
    import train

    workdir = os.path.join(common.ROOT, "train", "assets", f"cifar10_{net}")
    predict, _ = train.load_classifier(workdir)
    image = np.load(SAMPLE)["image"][0]
    goal = int(np.asarray(predict(jnp.asarray(image[None], jnp.float32))).argmax())
    bplan = bounds.analyse(predict, image.shape)
    cache = bounds.clean_cache(bplan, jnp.asarray(image[None], jnp.float32))
    rng = np.random.default_rng(0)
    pos = rng.integers(0, image.shape[0], (count, 2)).astype(np.int32)
    clean = image[tuple(pos.T)].astype(np.float32)
    goals = np.full(count, goal, np.int32)
    rows = []
    for r in radii:
        lo, hi = np.maximum(0.0, clean - r), np.minimum(255.0, clean + r)
        mid, rad = (lo + hi) / 2, (hi - lo) / 2
        row = dict(net=net, radius=r)
        for name, use_crown in (("forward", False), ("crown", True)):
            run = bounds.program(bplan, False, False, use_crown)
            jax.block_until_ready(run(cache, pos, mid, rad, goals, None))
            start = time.perf_counter()
            lower, _, proved = jax.block_until_ready(run(cache, pos, mid, rad, goals, None))
            row[f"ms_{name}"] = 1000 * (time.perf_counter() - start) / count
            lower = np.array(lower)
            lower[:, goal] = np.inf
            row[f"proved_{name}"] = float(np.asarray(proved).mean())
            row[f"median_{name}"] = float(np.median(lower.min(1)))
        if r == 0:
            row["clean_margin"] = float(np.abs(lower[np.isfinite(lower)]).max())
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="compact_fast,allconv,nin")
    parser.add_argument("--pixels", type=int, default=256)
    parser.add_argument("--radii", default="0,1,4,16,64,127.5")
    args = parser.parse_args(argv)
    radii = [float(r) for r in args.radii.split(",")]
    if 0.0 not in radii:
        radii = [0.0, *radii]
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} CPUs, jax {jax.__version__}")
    print("| net | r | proved forward | proved CROWN | median lb forward | median lb CROWN "
          "| ms/box forward | ms/box CROWN |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for net in args.nets.split(","):
        rows = margins_table(net, args.pixels, radii)
        reach = branch.CROWN_REACH * (1 + rows[0]["clean_margin"])
        for row in rows:
            print(
                f"| {net} | {row['radius']:g} | {100 * row['proved_forward']:.1f}% | "
                f"{100 * row['proved_crown']:.1f}% | {row['median_forward']:,.1f} | "
                f"{row['median_crown']:,.1f} | {row['ms_forward']:.0f} | {row['ms_crown']:.0f} |"
            )
        print(f"{net}: clean image's largest |margin| {rows[0]['clean_margin']:.2f}; "
              f"CROWN skipped below a forward bound of {-reach:,.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
