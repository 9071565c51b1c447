"""rpx.run on many real images: useful evaluations per second against the model's limit.

    python benchmarks/run_throughput.py [--images 64] [--classifier ...] [--peers art]
    python benchmarks/run_throughput.py --memory 100,1000,10000

Untargeted attacks on correctly classified CIFAR-10 test images with a trained
classifier, so most images stop early and slots are refilled. The rpx.run call is
made twice (same shapes) and the second is timed, so compilation is excluded.
--memory instead reports the peak resident memory of rpx.run for growing N (a cheap
linear classifier and a 2-generation budget: the engine's memory, not the model's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rpx  # noqa: E402
from benchmarks import common  # noqa: E402
from benchmarks.attack_throughput import bare_limit, run_art  # noqa: E402

MEMORY_CHILD = """
import resource, sys, jax, jax.numpy as jnp, numpy as np, rpx
n = int(sys.argv[1])
w = jnp.asarray(np.random.default_rng(0).normal(size=(32 * 32 * 3, 10)), jnp.float32)
predict = lambda x: jax.nn.softmax((x.reshape(x.shape[0], -1) / 255.0) @ w / 40.0)
images = np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)
labels = np.asarray(jnp.argmax(predict(jnp.asarray(images[:1], jnp.float32)), -1))
labels = np.full(n, labels[0], np.int32)
rpx.run(predict, images, labels, config=rpx.AttackConfig(population=40, generations=2),
        key=jax.random.key(0), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def memory(sizes):
    print("| images N | peak resident memory MiB |\n|---|---|")
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(n)],
            capture_output=True,
            text=True,
            check=True,
            cwd=common.ROOT,
        )
        print(f"| {n:,} | {float(out.stdout.split()[-1]):,.0f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_attack_flags(parser, images=64)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--peers", default="", help="'art' to also run ART on --peer-images")
    parser.add_argument("--peer-images", type=int, default=8)
    parser.add_argument("--batches", default="64,128,256,512,1024")
    parser.add_argument("--memory", default="", help="comma list of N for the memory table")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    if args.memory:
        return memory([int(n) for n in args.memory.split(",")])

    predict, name = common.classifier(args.classifier)
    images, labels, _ = common.correctly_classified(predict, args.data, args.images)
    print(
        f"{name}; {len(images)} correctly classified CIFAR-10 test images; {args.pixels} "
        f"pixel(s), population {args.population}, {args.generations} generations; "
        f"{jax.device_count()} x {jax.devices()[0].device_kind}",
        flush=True,
    )
    rates = bare_limit(predict, images.shape[1:], [int(b) for b in args.batches.split(",")])
    limit = max(rates.values())
    print(
        "bare predict images/s by batch: " + ", ".join(f"{b}: {r:,.0f}" for b, r in rates.items()),
        flush=True,
    )

    config = rpx.AttackConfig(
        pixels=args.pixels, population=args.population, generations=args.generations
    )
    timings = []
    for key in (1, 0):  # the first call compiles
        start = time.perf_counter()
        result = rpx.run(
            predict,
            images,
            labels,
            config=config,
            key=jax.random.key(key),
            batch_size=args.batch_size,
            progress=False,
        )
        timings.append(time.perf_counter() - start)
    evaluations = int(np.sum(result.queries))
    rate = evaluations / timings[-1]
    figures = dict(
        classifier=name,
        device=jax.devices()[0].device_kind,
        limit=limit,
        rates=rates,
        images=len(images),
        evaluations=evaluations,
        wall=timings[-1],
        first_call_wall=timings[0],
        rate=rate,
        of_limit=rate / limit,
        successes=int(np.sum(result.success)),
        mean_generations=float(np.mean(result.generations)),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print(
        f"rpx.run: {evaluations:,} evaluations in {timings[-1]:.1f} s = {rate:,.0f}/s = "
        f"{rate / limit:.2f} of the limit {limit:,.0f}/s; {figures['successes']}/"
        f"{len(images)} successes, mean {figures['mean_generations']:.1f} populations "
        f"per image (first call with compilation: {timings[0]:.1f} s)",
        flush=True,
    )
    if "art" in args.peers:
        art = run_art(
            common.numpy_predict(predict),
            images[: args.peer_images],
            labels[: args.peer_images],
            10,
            args.pixels,
            args.generations,
        )
        art_rate = art["evaluations"] / art["wall"]
        figures.update(art=art, vs_art=rate / art_rate)
        print(
            f"ART PixelAttack on {args.peer_images} of the images: {art_rate:,.0f}/s; "
            f"rpx.run is {rate / art_rate:.1f}x ART",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
