"""`one_pixel_probs`: probabilities of many one-pixel changes of many images."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rpx import checks, chunks
from rpx.incremental.plan import Plan, choose, clean_cache, window_probs

EVALUATIONS = ("auto", "full", "incremental")

# Clean activations held at once: images are processed in groups whose caches fit.
CACHE_BUDGET_BYTES = 1 << 28


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
        "incremental" where `rpx.incremental.analyse` predicts a saving, else "full".
      params: weights for `predict(params, x)`, or None.
      chunk_size: candidates per classifier call; None: 256 on CPU, more on
        accelerators.

    Returns:
      float32 [N, M, K]: probabilities of image n with pixel positions[n, m] set to
      colors[n, m].

    Images go through in groups whose clean activations fit CACHE_BUDGET_BYTES
    (`analyse(...).cache_bytes` per image), each group's candidates in chunks; one
    compiled program serves all groups, and repeated calls with the same `predict`
    object and shapes reuse it (weights closed over by `predict` are read once, as under
    `jax.jit`: pass weights that change as `params`).
    """
    images, positions, colors = _validate(predict, images, positions, colors, evaluation)
    if chunk_size is not None:
        checks.positive_int("chunk_size", chunk_size, 1)
    n, m = positions.shape[:2]
    num_classes = checks.num_classes_of(predict, images.shape, params)
    use_plan = choose(predict, images.shape[1:], evaluation, params)
    if n * m == 0:
        return jnp.zeros((n, m, num_classes), jnp.float32)
    chunk = chunks.chunk_size(chunk_size, images.shape, n * m)
    group = cache_group(n, use_plan)
    program = _program(predict, use_plan, chunk, params is not None)
    out = []
    for start in range(0, n, group):
        stop = min(n, start + group)
        take = np.minimum(np.arange(start, start + group), stop - 1)  # pad with repeats
        probs = program(images[take], positions[take], colors[take], params)
        out.append(probs[: stop - start])
    return jnp.concatenate(out) if len(out) > 1 else out[0]


def cache_group(n: int, plan: Plan | None, *, even: bool = True) -> int:
    """Images per group (>= 1) so that a group's clean activations (`plan.cache_bytes`
    each) fit CACHE_BUDGET_BYTES; all n at once without a plan. even: the fewest groups
    that fit, as even as possible; else as many images as fit, the rest in the last."""
    most = max(1, n if plan is None else min(n, CACHE_BUDGET_BYTES // max(1, plan.cache_bytes)))
    groups = -(-n // most)
    return -(-n // groups) if even and groups else most


@functools.lru_cache(maxsize=8)
def _program(predict, plan: Plan | None, chunk: int, with_params: bool):
    """The jitted evaluation of one group of images (cached: one compile per shape)."""

    def run(images, positions, colors, params):
        g, m, c = colors.shape
        total = g * m
        steps = -(-total // chunk)
        pad = steps * chunk - total
        index = jnp.repeat(jnp.arange(g, dtype=jnp.int32), m)
        flat_pos = positions.reshape(total, 2).astype(jnp.int32)
        # The colour the changed image would hold, as predict sees it.
        flat_col = colors.reshape(total, c).astype(images.dtype)
        batches = [
            jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in (index, flat_pos, flat_col)
        ]
        batches = [a.reshape(steps, chunk, *a.shape[1:]) for a in batches]
        if plan is not None:
            cache = clean_cache(plan, images, params)

            def step(batch):
                idx, pos, col = batch
                return window_probs(plan, cache, idx, pos, col.astype(jnp.float32), params)

        else:

            def step(batch):
                idx, pos, col = batch
                # A mask rather than a scatter: it fuses with the gather and the cast.
                h, w = images.shape[1:3]
                at_row = jnp.arange(h)[None, :, None, None] == pos[:, 0, None, None, None]
                at_col = jnp.arange(w)[None, None, :, None] == pos[:, 1, None, None, None]
                x = jnp.where(at_row & at_col, col[:, None, None, :], images[idx])
                x = x.astype(jnp.float32)
                probs = predict(params, x) if with_params else predict(x)
                return jnp.asarray(probs, jnp.float32)

        probs = jax.lax.map(step, batches)
        return probs.reshape(steps * chunk, -1)[:total].reshape(g, m, -1)

    return jax.jit(run)


def _validate(predict, images, positions, colors, evaluation):
    if evaluation not in EVALUATIONS:
        raise ValueError(f"evaluation must be one of {EVALUATIONS}, got {evaluation!r}")
    if not callable(predict):
        raise ValueError(f"predict must be callable, got {type(predict).__name__}")
    images, positions, colors = (jnp.asarray(a) for a in (images, positions, colors))
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
