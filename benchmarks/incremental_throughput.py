"""One-pixel evaluations per second: incremental (cached clean activations) vs full pass.

    python benchmarks/incremental_throughput.py --model allconv [--images 8]
        [--candidates 256] [--repeats 3] [--weights auto|random] [--chunk-size 256]
        [--engine]

One process per net (XLA's CPU thread pools and caches make back-to-back
measurements of different nets in one process unreliable). For `--model` (compact_fast,
compact, allconv, nin, vgg16_cifar) it loads the shipped checkpoint in
train/assets/cifar10_<model> when there is one (--weights auto), else random weights,
and times rpx.incremental.one_pixel_probs with evaluation="incremental" and "full" on
the committed CIFAR-10 test sample: `--candidates` random (pixel, colour-cube corner)
pairs per image, every pixel position equally likely. Each is compiled by a first call, then
the two alternate for `--repeats` rounds and each one's best time counts. Printed:
evaluations/s of each, the measured ratio beside the FLOP ratio the analysis predicts,
the bare classifier's images/s on one chunk (the limit of any full pass), the cache size
per image and the largest probability difference between the two.

With --engine it also times the engine itself under both settings of
`evaluation`: a one-pixel untargeted `rpx.attack` and `rpx.run` (population
--population, --generations generations, every pixel allowed; model evaluations/s =
the queries the result reports / wall time, after a compiling call on the same
shapes) and `rpx.pixel_map` over the top-left 8x8 pixels x 8 corners of each image.
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
import train  # noqa: E402
from rpx import incremental  # noqa: E402

MODELS = ("compact_fast", "compact", "allconv", "nin", "vgg16_cifar")
SAMPLE = os.path.join(ROOT, "train", "assets", "cifar10_test_sample100.npz")


def classifier(model: str, weights: str):
    """(predict float32 [B,32,32,3] -> probs [B,10], description)."""
    workdir = os.path.join(ROOT, "train", "assets", f"cifar10_{model}")
    if weights == "auto" and os.path.isdir(workdir):
        predict, info = train.load_classifier(workdir)
        return predict, f"{model}, shipped checkpoint (test accuracy {info['accuracy']})"
    apply, variables = train.models.init(model, jax.random.key(0))
    return (lambda x: jax.nn.softmax(apply(variables, x))), f"{model}, random init"


def best_times(calls: dict, repeats: int) -> dict:
    """Best wall time of each call over `repeats` rounds, after one compiling call each.

    The calls alternate within each round, so a machine shared with other jobs slows
    both alike rather than whichever happened to run during a busy spell.
    """
    for fn in calls.values():
        jax.block_until_ready(fn())
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=256, help="per image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights", choices=("auto", "random"), default="auto")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--engine", action="store_true", help="also time attack/run/pixel_map")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=3)
    args = parser.parse_args(argv)

    predict, described = classifier(args.model, args.weights)
    images = np.load(SAMPLE)["image"][: args.images]
    n, h, w, c = images.shape
    rng = np.random.default_rng(0)
    positions = np.stack(
        [rng.integers(0, h, (n, args.candidates)), rng.integers(0, w, (n, args.candidates))], -1
    ).astype(np.int32)
    colors = (rng.integers(0, 2, (n, args.candidates, c)) * 255).astype(np.float32)

    plan = incremental.analyse(predict, (h, w, c))

    def call(evaluation):
        return lambda: incremental.one_pixel_probs(
            predict, images, positions, colors, evaluation=evaluation, chunk_size=args.chunk_size
        )

    calls = {evaluation: call(evaluation) for evaluation in ("incremental", "full")}
    # The bare classifier on one chunk of images: what a full pass cannot beat.
    chunk = args.chunk_size or 256
    batch = jnp.asarray(np.resize(images, (chunk, h, w, c)), jnp.float32)
    bare = jax.jit(predict)
    calls["bare"] = lambda: bare(batch)
    walls = best_times(calls, args.repeats)
    inc, full = (n * args.candidates / walls[e] for e in ("incremental", "full"))
    limit = chunk / walls["bare"]
    del calls["bare"]
    diff = float(jnp.max(jnp.abs(calls["incremental"]() - calls["full"]())))
    print(f"{described}; {platform.node()}, {jax.default_backend()}, {os.cpu_count()} CPUs")
    print(
        f"{n} images x {args.candidates} candidates, chunk {args.chunk_size or 'default'}, "
        f"best of {args.repeats}"
    )
    print(f"  incremental {inc:10.1f} evaluations/s")
    print(f"  full        {full:10.1f} evaluations/s")
    print(f"  bare predict {limit:9.1f} images/s at batch {chunk}")
    print(
        f"  measured ratio {inc / full:.2f} (incremental / bare predict {inc / limit:.2f}), "
        f"predicted FLOP ratio {plan.flop_ratio:.2f}"
    )
    print(f"  cache {plan.cache_bytes / 2**20:.2f} MiB per image; max |diff| {diff:.2e}")
    if args.engine:
        rates = engine_rates(predict, images, args)
        for what in ("attack", "run", "pixel_map"):
            a, b = rates[what, "incremental"], rates[what, "full"]
            print(
                f"  rpx.{what:<9} incremental {a:9.1f}/s, full {b:9.1f}/s: ratio {a / b:.2f} "
                f"(incremental / bare predict {a / limit:.2f})"
            )


def engine_rates(predict, images, args) -> dict:
    """{(what, evaluation): model evaluations/s} of rpx.attack, rpx.run and rpx.pixel_map."""
    labels = np.asarray(predict(jnp.asarray(images, jnp.float32))).argmax(-1).astype(np.int32)
    region = np.zeros(images.shape[1:3], bool)
    region[:8, :8] = True
    rates = {}
    for evaluation in ("incremental", "full"):
        config = rpx.AttackConfig(
            population=args.population, generations=args.generations, evaluation=evaluation,
            chunk_size=args.chunk_size,
        )  # fmt: skip
        calls = {
            "attack": lambda c=config: rpx.attack(
                predict, images, labels, config=c, key=jax.random.key(0)
            ),
            "run": lambda c=config: rpx.run(
                predict, images, labels, config=c, key=jax.random.key(0), progress=False,
                batch_size=len(images),
            ),
            "pixel_map": lambda e=evaluation: rpx.pixel_map(
                predict, images, labels, region, batch_size=args.chunk_size, evaluation=e
            ),
        }  # fmt: skip
        for what, fn in calls.items():
            out = jax.block_until_ready(fn())  # compiles
            start = time.perf_counter()
            out = jax.block_until_ready(fn())
            wall = time.perf_counter() - start
            count = region.sum() * 8 * len(images) if what == "pixel_map" else out.queries.sum()
            rates[what, evaluation] = float(count) / wall
    return rates


if __name__ == "__main__":
    main()
