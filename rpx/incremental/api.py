"""`one_pixel_probs`: probabilities of many one-pixel changes of many images."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rpx import checks


def one_pixel_probs(
    predict: Callable,
    images,
    positions,
    colors,
    *,
    evaluation: str = "auto",
    params=None,
    chunk_size: int | None = None,
) -> jax.Array:
    """Class probabilities of images with one pixel changed, for many (pixel, colour) each.

    Args:
      predict: float32 [B, H, W, C] -> probabilities [B, K], traceable (with `params`:
        `predict(params, x)`, params traced).
      images: [N, H, W, C], uint8 or float.
      positions: int [N, M, 2], (row, col) of the pixel changed in each candidate.
      colors: [N, M, C], its new colour, cast to the images' dtype first (as
        `rpx.encoding.apply` does), so uint8 images behave as a full pass on the changed
        uint8 image; finite and within the dtype's range (ValueError otherwise).
      evaluation: "full" runs predict on every changed image; "incremental" recomputes
        only the region the pixel reaches from the clean activations of its image (exact
        within float tolerance; ops it cannot follow run in full); "auto" is
        "incremental" where `rpx.incremental.analyse` predicts a saving and its program
        builds, else "full" (`rpx.evaluate.choose`).
      params: weights for `predict(params, x)`, or None.
      chunk_size: candidates per classifier call; None: 256 on CPU, more on
        accelerators.

    Returns:
      float32 [N, M, K]: probabilities of image n with pixel positions[n, m] set to
      colors[n, m].

    Images go through in groups whose clean activations fit
    `rpx.evaluate.CACHE_BUDGET_BYTES`
    (`analyse(...).cache_bytes` per image), each group's candidates in chunks; one
    compiled program serves all groups, and repeated calls with the same `predict`
    object and shapes reuse it (weights closed over by `predict` are read once, as under
    `jax.jit`: pass weights that change as `params`).
    """
    # Imported here: rpx.evaluate builds on rpx.incremental (a cycle at import time).
    from rpx import evaluate

    checks.one_of("evaluation", evaluation, evaluate.EVALUATIONS)
    images, positions, colors = _validate(predict, images, positions, colors)
    if chunk_size is not None:
        checks.positive_int("chunk_size", chunk_size, 1)
    n, m = positions.shape[:2]
    num_classes = checks.num_classes_of(predict, images.shape, params)
    plan = evaluate.choose(predict, images.shape[1:], evaluation, params)
    if n * m == 0:
        return jnp.zeros((n, m, num_classes), jnp.float32)
    chunk = evaluate.chunk_size(chunk_size, images.shape, n * m)
    program = _program(evaluate.Evaluator(predict, chunk, params is not None, plan))
    return evaluate.by_groups(
        n,
        evaluate.cache_group(n, plan),
        lambda take, _: program(images[take], positions[take], colors[take], params),
    )


@functools.lru_cache(maxsize=8)
def _program(ev):
    """The jitted evaluation of one group of images by the `rpx.evaluate.Evaluator` ev
    (cached: one compile per shape)."""

    def run(images, positions, colors, params):
        g, m, c = colors.shape
        total = g * m
        steps = -(-total // ev.chunk)
        pad = steps * ev.chunk - total
        index = jnp.repeat(jnp.arange(g, dtype=jnp.int32), m)
        w = images.shape[2]
        flat = positions[..., 0] * w + positions[..., 1]
        flat = flat.reshape(total, 1).astype(jnp.int32)
        # The colour the changed image would hold, as predict sees it.
        color = colors.reshape(total, 1, c).astype(images.dtype).astype(jnp.float32)
        batches = [jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in (index, flat, color)]
        batches = [a.reshape(steps, ev.chunk, *a.shape[1:]) for a in batches]
        pixels = images.astype(jnp.float32)
        cache = ev.cache(pixels, params)
        changed = jnp.ones((ev.chunk, 1), bool)

        def step(batch):
            idx, at, col = batch
            return ev.probs(params, pixels, cache, idx, at, col, changed)

        probs = jax.lax.map(step, batches)
        return probs.reshape(steps * ev.chunk, -1)[:total].reshape(g, m, -1)

    return jax.jit(run)


def _validate(predict, images, positions, colors):
    if not callable(predict):
        raise ValueError(f"predict must be callable, got {type(predict).__name__}")
    names = ("images", "positions", "colors")
    images, positions, colors = (
        checks.as_array(a, name) for a, name in zip((images, positions, colors), names, strict=True)
    )
    if images.ndim != 4 or 0 in images.shape[1:]:
        raise ValueError(f"images must be [N, H, W, C] with H, W, C > 0, got {images.shape}")
    if not (
        jnp.issubdtype(images.dtype, jnp.integer) or jnp.issubdtype(images.dtype, jnp.floating)
    ):
        raise ValueError(f"images must be an integer or float array, got dtype {images.dtype}")
    n, h, w, c = images.shape
    if positions.ndim != 3 or positions.shape[0] != n or positions.shape[2] != 2:
        raise ValueError(f"positions must be [N, M, 2] with N = {n}, got {positions.shape}")
    if not jnp.issubdtype(positions.dtype, jnp.integer):
        raise ValueError(f"positions must be integers (row, col), got dtype {positions.dtype}")
    m = positions.shape[1]
    if colors.shape != (n, m, c):
        raise ValueError(f"colors must be [N, M, C] = {(n, m, c)}, got {colors.shape}")
    if not (
        jnp.issubdtype(colors.dtype, jnp.integer) or jnp.issubdtype(colors.dtype, jnp.floating)
    ):
        raise ValueError(f"colors must be numbers, got dtype {colors.dtype}")
    if not isinstance(colors, jax.core.Tracer) and colors.size:
        # Cast to the images' dtype, a colour must fit it (uint8: 300 would become 255).
        lo_hi = checks.dtype_range(images.dtype)
        checks.check_color_values(colors, lo_hi, False, f"the range {lo_hi} of {images.dtype}")
    if not isinstance(positions, jax.core.Tracer) and positions.size:
        rows, cols = np.asarray(positions[..., 0]), np.asarray(positions[..., 1])
        bad = (rows < 0) | (rows >= h) | (cols < 0) | (cols >= w)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"positions must lie inside the {h}x{w} image; positions[{where[0]}, "
                f"{where[1]}] = {tuple(int(v) for v in np.asarray(positions)[where])}"
            )
    return images, positions, colors
