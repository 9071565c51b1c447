"""Useful model evaluations per second of rpx.attack against its limit and the public peers.

    python benchmarks/attack_throughput.py [--images 16] [--generations 100]
        [--classifier train/assets/cifar10_compact] [--peers art,scipy]

Measures, on the same jitted classifier and the same real CIFAR-10 test images:
  limit  bare predict throughput at its best batch size (a sweep);
  rpx    rpx.attack over all images in one fused call (sum of queries / wall time,
         compile excluded: the call is run once to compile, then timed);
  art    ART's PixelAttack (DE, one image at a time), model rows evaluated / wall time;
  scipy  per-image scipy.optimize.differential_evolution with an early-stop callback,
         as in the Keras one-pixel attack.
Untargeted attacks with labels = the classifier's clean predictions, as in the paper.
"""

from __future__ import annotations

import argparse
import json
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


def bare_limit(predict, image_shape, batch_sizes, seconds=1.5, loop=4):
    """{batch: images/s} of predict alone on fresh random inputs: the better of a bare
    jitted call and `loop` batches inside one `lax.map` (XLA's CPU backend compiles
    some models faster inside a loop, as the fused attack runs them)."""
    looped = jax.jit(lambda x: jax.lax.map(predict, x))
    rates = {}
    for batch in batch_sizes:
        x = jax.random.uniform(jax.random.key(batch), (loop, batch, *image_shape), maxval=255.0)
        rates[batch] = max(
            _rate(predict, x[0], batch, seconds), _rate(looped, x, loop * batch, seconds)
        )
    return rates


def _rate(fn, x, images, seconds):
    jax.block_until_ready(fn(x))
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        jax.block_until_ready(fn(x))
        runs += 1
    return images * runs / (time.perf_counter() - start)


def run_rpx(predict, images, labels, config):
    args = (predict, images, labels)
    jax.block_until_ready(rpx.attack(*args, config=config, key=jax.random.key(1)))  # compile
    start = time.perf_counter()
    result = jax.block_until_ready(rpx.attack(*args, config=config, key=jax.random.key(0)))
    wall = time.perf_counter() - start
    return dict(
        wall=wall, evaluations=int(np.sum(result.queries)), success=int(np.sum(result.success))
    )


def run_art(predict_np, images, labels, num_classes, pixels, generations):
    from art.attacks.evasion import PixelAttack
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    counter = common.Counter(predict_np)
    classifier = BlackBoxClassifierNeuralNetwork(
        counter,
        input_shape=images.shape[1:],
        nb_classes=num_classes,
        channels_first=False,
        clip_values=(0.0, 255.0),
    )
    attack = PixelAttack(classifier, th=pixels, es=1, max_iter=generations)
    success = 0
    start = time.perf_counter()
    for image, label in zip(images, labels, strict=True):
        adversarial = attack.generate(image[None].astype(np.float32), y=np.array([label]))
        success += int(np.argmax(predict_np(adversarial)) != label)
    return dict(wall=time.perf_counter() - start, evaluations=counter.rows, success=success)


def run_scipy(predict_np, images, labels, pixels, population, generations):
    from scipy.optimize import differential_evolution

    counter = common.Counter(predict_np)
    h, w, c = images.shape[1:]
    bounds = [(0, h), (0, w)] + [(0, 256)] * c
    success = 0
    start = time.perf_counter()
    for image, label in zip(images, labels, strict=True):

        def perturb(genes, image=image):  # genes [D, S] -> images [S, H, W, C]
            genes = genes.T.reshape(genes.shape[1], pixels, 2 + c).astype(int)
            out = np.repeat(image[None], len(genes), axis=0).astype(np.float32)
            for s, g in enumerate(genes):
                for r, col, *rgb in g:
                    out[s, min(r, h - 1), min(col, w - 1)] = np.minimum(rgb, 255)
            return out

        def fitness(genes, label=label):
            return counter(perturb(genes))[:, label]

        def stop(xk, convergence=None, label=label):
            return bool(np.argmax(counter(perturb(xk[:, None]))[0]) != label)

        result = differential_evolution(
            fitness,
            bounds * pixels,
            maxiter=generations,
            popsize=population // (5 * pixels),
            recombination=1,
            mutation=(0.5, 1),
            polish=False,
            atol=-1,
            tol=0,
            vectorized=True,
            updating="deferred",
            callback=stop,
            seed=0,
        )
        success += int(np.argmax(predict_np(perturb(result.x[:, None]))[0]) != label)
    return dict(wall=time.perf_counter() - start, evaluations=counter.rows, success=success)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_attack_flags(parser, images=16)
    parser.add_argument(
        "--chunk-sizes",
        default="",
        help="comma list of rpx chunk sizes to sweep (default: backend default)",
    )
    parser.add_argument("--peers", default="art,scipy")
    parser.add_argument("--batches", default="32,64,128,256,512,1024,1600")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args(argv)

    predict, name = common.classifier(args.classifier)
    images, _ = common.cifar_images(args.data, args.images)
    labels = np.asarray(jnp.argmax(predict(jnp.asarray(images, jnp.float32)), -1), np.int32)
    predict_np = common.numpy_predict(predict)
    flops = common.flops_per_image(predict, images.shape[1:])
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}"
    )
    print(
        f"classifier: {name}, {flops / 1e6:.1f} MFLOP/image; {len(images)} real CIFAR-10 "
        f"test images; {args.pixels} pixel(s), population {args.population}, "
        f"{args.generations} generations"
    )

    rates = bare_limit(predict, images.shape[1:], [int(b) for b in args.batches.split(",")])
    best_batch = max(rates, key=rates.get)
    limit = rates[best_batch]
    print(
        "bare predict images/s by batch: " + ", ".join(f"{b}: {r:,.0f}" for b, r in rates.items())
    )
    print(f"limit: {limit:,.0f} evaluations/s at batch {best_batch}")

    rows = {}
    chunks = [int(c) for c in args.chunk_sizes.split(",") if c] or [None]
    for chunk in chunks:
        config = rpx.AttackConfig(
            pixels=args.pixels,
            population=args.population,
            generations=args.generations,
            chunk_size=chunk,
        )
        label = "rpx" if chunk is None else f"rpx chunk={chunk}"
        rows[label] = run_rpx(predict, images, labels, config)
        print(label, _line(rows[label], limit), flush=True)
    peers = [p for p in args.peers.split(",") if p]
    if "art" in peers:
        rows["art"] = run_art(
            predict_np,
            images,
            labels,
            int(predict_np(images[:1]).shape[-1]),
            args.pixels,
            args.generations,
        )
        print("art", _line(rows["art"], limit), flush=True)
    if "scipy" in peers:
        rows["scipy"] = run_scipy(
            predict_np, images, labels, args.pixels, args.population, args.generations
        )
        print("scipy", _line(rows["scipy"], limit), flush=True)

    print("\n| method | evaluations | wall s | evaluations/s | of limit | vs ART | successes |")
    print("|---|---|---|---|---|---|---|")
    art_rate = rows["art"]["evaluations"] / rows["art"]["wall"] if "art" in rows else None
    for label, row in rows.items():
        rate = row["evaluations"] / row["wall"]
        vs_art = f"{rate / art_rate:.2f}x" if art_rate else "-"
        print(
            f"| {label} | {row['evaluations']:,} | {row['wall']:.1f} | {rate:,.0f} | "
            f"{rate / limit:.2f} | {vs_art} | {row['success']}/{len(images)} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                dict(
                    limit=limit,
                    batch=best_batch,
                    rates=rates,
                    rows=rows,
                    classifier=name,
                    flops=flops,
                    device=jax.devices()[0].device_kind,
                    args=vars(args),
                ),
                f,
                indent=1,
            )


def _line(row, limit):
    rate = row["evaluations"] / row["wall"]
    return (
        f"{row['evaluations']:,} evaluations in {row['wall']:.1f} s = {rate:,.0f}/s "
        f"({rate / limit:.2f} of limit), {row['success']} successes"
    )


if __name__ == "__main__":
    main()
