"""Candidates in fixed-size chunks: the classifier's batch size and the loop over chunks.

A fused program evaluates a dynamic number of candidates (only live images, only region
pixels) with static shapes: full chunks of `chunk` candidates, then chunks of `tail`
for the remainder, so padding wastes fewer than `tail` evaluations.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def chunk_size(requested: int | None, image_shape, total: int) -> int:
    """Candidates per classifier call: `requested`, else a backend default, at most `total`.

    On CPU a small CNN runs fastest at batches of 128-256 (benchmarks/README.md);
    accelerators want large batches, capped so the candidate images stay near 1 GiB.
    """
    if requested is not None:
        size = requested
    elif jax.default_backend() == "cpu":
        size = 256
    else:
        size = max(64, min(8192, (1 << 30) // (4 * math.prod(image_shape[1:]))))
    return max(1, min(size, total))


def tail(chunk: int) -> int:
    """The size of the small chunks that cover the remainder after the full ones."""
    return max(1, chunk // 8)


def padded_rows(total: int, chunk: int) -> int:
    """Rows an output needs for `total` (static) candidates: the last tail may overrun."""
    return -(-total // chunk) * chunk + tail(chunk)


def run(total, chunk: int, body, out):
    """Apply `body(size)(at, out) -> out` to [at, at + size) for every chunk of the
    `total` (traced) candidates: full chunks of `chunk`, then chunks of `tail(chunk)`."""
    small = tail(chunk)
    full = total // chunk
    out = jax.lax.fori_loop(0, full, lambda i, o: body(chunk)(i * chunk, o), out)
    rest = -(-(total - full * chunk) // small)
    return jax.lax.fori_loop(0, rest, lambda i, o: body(small)(full * chunk + i * small, o), out)


def classify(classify_fn, pixels, chunk: int):
    """classify_fn(x) [S, K] float32 of pixels [S, H, W, C] in chunks of at most `chunk`."""
    s = pixels.shape[0]
    chunk = min(chunk, s)
    padded = -(-s // chunk) * chunk
    batches = jnp.pad(pixels, ((0, padded - s), (0, 0), (0, 0), (0, 0)))
    batches = batches.reshape(padded // chunk, chunk, *pixels.shape[1:])
    probs = jax.lax.map(lambda x: classify_fn(x).astype(jnp.float32), batches)
    return probs.reshape(padded, -1)[:s]
