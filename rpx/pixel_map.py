"""rpx.pixel_map: exhaustive one-pixel scan, every allowed pixel times a set of colours.

For one pixel the search space is small enough to enumerate: each allowed position
times M colours (by default the 2**C corners of the colour cube, where one-pixel attacks
almost always land). The scan gives the true map of where an image is one-pixel
vulnerable, the ground truth against which `rpx.attack`'s DE can be measured.

All (image, allowed pixel, colour) triples of the call are numbered consecutively,
image after image, so only pixels inside the region are evaluated and no chunk is
wasted at image boundaries; fixed-size chunks of triples are decoded arithmetically
from their numbers, applied and classified inside one jitted program, so memory for
candidate images stays at one chunk whatever the number of images.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rpx import checks, evaluate, regions
from rpx.config import AttackConfig


@struct.dataclass
class PixelMap:
    """One-pixel vulnerability of every pixel, one row per image.

    fitness: float32 [N, H, W], the fitness of `best_color` at the pixel, the same
      fitness as `rpx.attack`: p[label] for untargeted scans (lower is better),
      p[target] for targeted ones (higher is better). As in `rpx.attack`, a colour
      that succeeds beats one that does not; among colours of the same kind the best
      fitness wins. NaN at pixels outside the region (never evaluated) and where no
      colour gave finite probabilities.
    fooled: bool [N, H, W], some tried colour at that pixel succeeds (untargeted:
      argmax != label; targeted: argmax == target). Always False outside the region.
    best_color: float32 [N, H, W, C], the chosen colour at each pixel (a successful one
      wherever `fooled`); NaN outside the region.
    classes: int32 [N, H, W, M], the predicted class with colour m at each pixel, so
      one scan answers the untargeted and every targeted one-pixel question at once;
      -1 outside the region (and where the output was not finite).
    """

    fitness: jax.Array
    fooled: jax.Array
    best_color: jax.Array
    classes: jax.Array


def corner_colors(channels: int, value_range=(0.0, 255.0)) -> np.ndarray:
    """float32 [2**C, C]: the corners of the colour cube value_range**C, lo before hi."""
    lo, hi = (float(v) for v in value_range)
    return np.array(list(itertools.product((lo, hi), repeat=channels)), np.float32)


def pixel_map(
    predict: Callable[[jax.Array], jax.Array],
    images,
    labels,
    region=None,
    target=None,
    colors=None,
    *,
    chunk_size: int | None = None,
    value_range: tuple[float, float] = (0.0, 255.0),
    params=None,
    evaluation: str = "auto",
    batch_size: int | None = None,
) -> PixelMap:
    """Try every colour at every allowed pixel of every image, one pixel at a time.

    Args:
      predict: float32 [B, H, W, C] in value_range -> probabilities [B, K]; traceable.
      images: [N, H, W, C], uint8 or float, values in value_range.
      labels: int [N], the class an untargeted scan drives down.
      region: bool [N, H, W] or [H, W], True where pixels may change; None: whole image.
      target: int [N] or None; given, the scan is targeted (fitness p[target]).
      colors: [M, C] colours to try, values in value_range (whole numbers for integer
        images); None: the 2**C corners of the colour cube (8 for RGB).
      chunk_size: candidates per classifier call, as on `rpx.AttackConfig` and
        `rpx.one_pixel_probs`; None: the backend default (`rpx.evaluate.chunk_size`: 256
        on CPU).
      value_range: (lo, hi) of pixel values.
      params: None, or weights: predict is called as predict(params, x), params traced.
      evaluation: "full" runs predict on every candidate image; "incremental"
        recomputes only the changed pixel's receptive field from each image's cached
        clean activations (`rpx.incremental`, exact within float tolerance); "auto"
        (the default) is "incremental" where the analysis predicts a saving, and the
        full pass wherever the incremental program cannot be built
        (`rpx.evaluate.choose`).
      batch_size: deprecated alias of chunk_size (DeprecationWarning); removed in the
        next release.

    Returns:
      A `PixelMap`. The scan costs sum(region) * M model evaluations, in
      ceil(total / chunk_size) calls (the last ones smaller), plus [N, H*W, M] buffers
      for the per-colour score (float32), success (bool) and class (int32): 9 bytes per
      (pixel, colour). Incremental evaluation also holds the clean activations of the
      images scanned at once (`rpx.incremental.analyse(...).cache_bytes` each), in
      groups of at most `rpx.evaluate.CACHE_BUDGET_BYTES` (256 MiB).
    """
    if batch_size is not None:
        if chunk_size is not None:
            raise ValueError("pass chunk_size only (batch_size is its deprecated alias)")
        warnings.warn(
            "rpx.pixel_map(batch_size=) is deprecated: use chunk_size= (candidates per "
            "classifier call, as on rpx.AttackConfig and rpx.one_pixel_probs)",
            DeprecationWarning,
            stacklevel=2,
        )
        chunk_size = batch_size
    config = AttackConfig(value_range=value_range)
    images, labels, region, target = checks.check_inputs(
        predict, images, labels, region, target, config, params=params
    )
    n, h, w, c = images.shape
    colors = _check_colors(colors, c, config.value_range, jnp.issubdtype(images.dtype, jnp.integer))
    if chunk_size is not None:
        checks.positive_int("chunk_size", chunk_size, 1)
    if n * h * w * len(colors) >= 2**31:  # triples are numbered in int32
        raise ValueError(
            f"images: {n} images x {h * w} pixels x {len(colors)} colors exceed 2**31 "
            "candidates; scan them in smaller calls"
        )
    checks.one_of("evaluation", evaluation, evaluate.EVALUATIONS)
    chunk = evaluate.chunk_size(chunk_size, images.shape, n * h * w * len(colors))
    region = regions.broadcast(region, n, h, w)
    plan = evaluate.choose(predict, (h, w, c), evaluation, params)
    ev = evaluate.Evaluator(predict, chunk, params is not None, plan)

    # Images in groups whose clean activations fit the budget (all at once for the full
    # pass); the last group's padding gets empty regions (nothing evaluated). Kept
    # uneven: even groups split the candidates into other batches, which moved a few
    # fitness values by an ulp (seen on CPU).
    def run(take, live):
        goal = None if target is None else target[take]
        group_region = region[take] & live[:, None, None]
        return fused_pixel_map(ev, params, images[take], labels[take], group_region, goal, colors)

    return evaluate.by_groups(n, evaluate.cache_group(n, plan, even=False), run)


@functools.partial(jax.jit, static_argnums=0)
def fused_pixel_map(ev, params, images, labels, region, target, colors) -> PixelMap:
    """The whole scan for images [N, H, W, C], region bool [N, H, W], colors [M, C],
    each candidate scored by the `rpx.evaluate.Evaluator` ev (from its image's clean
    activations when ev has a plan)."""
    n, h, w, c = images.shape
    m = colors.shape[0]
    targeted = target is not None
    pixels = images.astype(jnp.float32)
    # Colours as the images' dtype stores them, so the map describes storable images.
    colors = colors.astype(images.dtype).astype(jnp.float32)
    goal = target if targeted else labels
    table, count = regions.index_table(region)
    # Triples are numbered image by image: image i owns [ends[i] - count[i]*M, ends[i]).
    ends = jnp.cumsum(count * m)
    cache = ev.cache(pixels, params)

    def run(size):
        def run_chunk(at, out):
            score, hit, classes = out
            t = at + jnp.arange(size)
            image = jnp.minimum(jnp.searchsorted(ends, t, side="right"), n - 1)
            offset = t - (ends[image] - count[image] * m)
            slot, color = offset // m, offset % m
            flat = table[image, jnp.clip(slot, 0, h * w - 1)]
            changed = jnp.ones((size, 1), bool)
            probs = ev.probs(
                params, pixels, cache, image, flat[:, None], colors[color][:, None], changed
            )
            s, hit_t = evaluate.score_and_hit(probs, labels[image], goal[image], targeted)
            predicted = jnp.where(jnp.isfinite(s), jnp.argmax(probs, axis=-1), -1)
            # Padding rows past the last triple get an out-of-bounds image and are dropped.
            row = jnp.where(t < ends[-1], image, n)
            score = score.at[row, flat, color].set(s, mode="drop")
            hit = hit.at[row, flat, color].set(hit_t, mode="drop")
            classes = classes.at[row, flat, color].set(predicted, mode="drop")
            return score, hit, classes

        return run_chunk

    out = (
        jnp.full((n, h * w, m), jnp.inf, jnp.float32),
        jnp.zeros((n, h * w, m), bool),
        jnp.full((n, h * w, m), -1, jnp.int32),
    )
    score, hit, classes = evaluate.over_chunks(ends[-1], ev.chunk, run, out)

    best = jnp.argmin(evaluate.rank(score, hit), axis=-1)
    allowed = region.reshape(n, h * w)
    best_score = jnp.take_along_axis(score, best[..., None], axis=-1)[..., 0]
    best_color = jnp.where(allowed[..., None], colors[best], jnp.nan)
    return PixelMap(
        fitness=jnp.where(allowed, evaluate.value(best_score, targeted), jnp.nan).reshape(n, h, w),
        fooled=(hit.any(-1) & allowed).reshape(n, h, w),
        best_color=best_color.reshape(n, h, w, c),
        classes=classes.reshape(n, h, w, m),
    )


def _check_colors(colors, channels, value_range, integer_images) -> jax.Array:
    """Validated float32 [M, C] colours; None gives the cube's corners."""
    if colors is None:
        return jnp.asarray(corner_colors(channels, value_range))
    if isinstance(colors, jax.core.Tracer):
        raise ValueError("colors must be a concrete array (pixel_map checks their values)")
    values = np.asarray(colors)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] != channels:
        raise ValueError(f"colors must be [M, C] with M >= 1, C = {channels}, got {values.shape}")
    values = checks.check_color_values(values, value_range, integer_images)
    return jnp.asarray(values, jnp.float32)
