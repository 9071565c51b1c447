"""Training throughput of the CIFAR-10 nets: images/s of the train step, per batch size.

    python benchmarks/train_throughput.py [--models compact,allconv,nin,vgg16_cifar]
        [--batch-sizes 32,256] [--steps 5] [--bf16]

Times the jitted train step that `python -m train` runs (train.state.train_step: device
crop + flip, forward and backward in training mode, SGD-Nesterov update), after one
untimed step that compiles it, and the inference forward pass for comparison. Images
are random uint8 (throughput does not depend on pixel values). Host-side batch
gathering, evaluation and checkpoints are not included: the figure is the step's limit.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from train import models  # noqa: E402
from train.state import Hyper, create_state, optimizer, train_step  # noqa: E402


def images_per_second(fn, batch: int, steps: int) -> float:
    """batch / mean seconds per call of fn() over `steps` calls after one warm-up call."""
    jax.block_until_ready(fn())
    t0 = time.perf_counter()
    for _ in range(steps):
        out = fn()
    jax.block_until_ready(out)
    return batch * steps / (time.perf_counter() - t0)


def measure(name: str, batch: int, steps: int, bf16: bool) -> dict:
    """Train-step and forward images/s of model `name` at `batch`."""
    dtype = jnp.bfloat16 if bf16 else jnp.float32
    train_model = models.module(name, dtype=dtype)
    eval_model = models.module(name)
    variables = models.init_variables(eval_model, jax.random.key(0), 32)
    hyper = Hyper(warmup_steps=10, total_steps=1000)
    tx = optimizer(hyper)
    step = jax.jit(
        functools.partial(train_step, train_model, tx, hyper, jax.random.key(1)), donate_argnums=0
    )
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
    forward = jax.jit(lambda v, x: eval_model.apply(v, x, train=False))
    pixels = images.astype(jnp.float32)
    forward_rate = images_per_second(lambda: forward(variables, pixels), batch, steps)
    # The train step donates its state, whose arrays start as `variables`' own: copy them.
    state = [create_state(jax.tree.map(jnp.copy, variables), tx)]

    def train_once():
        state[0], metrics = step(state[0], images, labels)
        return metrics

    return {
        "model": name,
        "batch_size": batch,
        "train_images_per_second": round(images_per_second(train_once, batch, steps), 1),
        "forward_images_per_second": round(forward_rate, 1),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="compact,allconv,nin,vgg16_cifar")
    p.add_argument("--batch-sizes", default="32,256")
    p.add_argument("--steps", type=int, default=5, help="timed steps per figure")
    p.add_argument("--bf16", action="store_true", help="compute the train step in bfloat16")
    a = p.parse_args(argv)
    names = [n for n in a.models.split(",") if n]
    for n in names:
        models.spec(n)  # unknown names fail before any compile
    sizes = [int(b) for b in a.batch_sizes.split(",") if b]
    if a.steps < 1 or any(b < 1 for b in sizes):
        p.error("--steps and every --batch-sizes entry must be >= 1")
    print(f"devices: {jax.devices()}  cpu count: {os.cpu_count()}  bf16: {a.bf16}")
    header = ("model", "batch", "train img/s", "forward img/s", "epoch (50k) s")
    print(f"{header[0]:<12} " + " ".join(f"{h:>14}" for h in header[1:]))
    rows = []
    for n in names:
        for b in sizes:
            r = measure(n, b, a.steps, a.bf16)
            rows.append(r)
            epoch = 50_000 / r["train_images_per_second"]
            print(
                f"{n:<12} {b:>14} {r['train_images_per_second']:>14.1f} "
                f"{r['forward_images_per_second']:>14.1f} {epoch:>14.0f}",
                flush=True,
            )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
