"""rpx.attack: region-restricted few-pixel attacks, the whole search in one fused XLA call.

`attack` validates the inputs (`rpx.checks`) and runs `fused_attack`, one jitted
program: the slot machine (`rpx.slots`) asks the search (`rpx.search`: evosax's DE by
default, Sparse-RS, or DE seeded by the corner scan) for a population of every live
image, evaluates and scores it in chunks (`rpx.evaluate`) and tells the
search, until every image has succeeded or spent its budget; `finish` confirms the
best candidates with one full pass of predict and builds the `AttackResult`. Images
that have succeeded (or whose region is empty) no longer cost model evaluations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from rpx import checks, encoding, evaluate, regions, slots
from rpx.config import AttackConfig, resolve


@struct.dataclass
class AttackResult:
    """One row per image.

    success: bool [N], what probs say: argmax != label (== target when targeted), never
    for non-finite probs or an image returned unchanged. adversarial: [N, H, W, C], the
    images' dtype, the best candidate found (the successful one with the best fitness if
    any succeeded). positions: int32 [N, k, 2] (row, col), each changed pixel once;
    (-1, -1) where a pixel slot changed nothing (empty region, outside the region under
    "restore", or a slot whose position repeats an earlier slot's, as when k exceeds the
    region's pixel count). colors: float32 [N, k, C], 0 where the slot changed nothing.
    probs: float32 [N, K] = predict(adversarial), one full pass over the returned images
    (whatever config.evaluation scored the candidates with). A candidate whose
    probabilities are not all finite is never a success nor a best; an image without any
    such candidate is returned unchanged.
    generations: int32 [N], populations evaluated, the initial one counting as 1 (DE's
    or Sparse-RS's; the corner scan of init="scan" is not counted, so an image whose
    scan succeeded reports 0). queries: int32 [N], model evaluations spent on the
    image: generations * population, plus, with init="scan", the (pixel, corner) pairs
    its scan tried (up to and including its successful step, or all of them; the
    padding of the scan's last step is not counted). fitness_curve: float32
    [N, generations + 1], the best fitness after each population: p[label] for
    untargeted attacks (falling), p[target] for targeted ones (rising), the last value
    repeated after the image stopped, NaN throughout for an empty region (and until a
    candidate with finite probabilities is found). With init="scan" the curve is DE's
    (its first value includes the scan's best, which the initial population holds);
    an image whose scan succeeded has the scan's best throughout.
    """

    success: jax.Array
    adversarial: jax.Array
    positions: jax.Array
    colors: jax.Array
    probs: jax.Array
    generations: jax.Array
    queries: jax.Array
    fitness_curve: jax.Array


def attack(
    predict: Callable[[jax.Array], jax.Array],
    images,
    labels,
    region=None,
    target=None,
    *,
    config: AttackConfig | None = None,
    key: jax.Array,
    params=None,
) -> AttackResult:
    """Search k-pixel perturbations inside each image's region with DE (or Sparse-RS,
    `AttackConfig(search="sparse_rs")`; DE seeded by a corner scan with init="scan").

    Args:
      predict: float32 [B, H, W, C] in value_range -> probabilities [B, K]; traceable.
      images: [N, H, W, C], uint8 or float, values in value_range.
      labels: int [N], the class an untargeted attack drives down (usually the
        classifier's clean prediction).
      region: bool [N, H, W] or [H, W], True where pixels may change; None: whole image.
      target: int [N] or None; given, the attack is targeted (maximise p[target]).
      config: an `AttackConfig` (default: the paper's settings).
      key: a PRNG key. Image i's randomness derives from (key, i) alone.
      params: None, or the model's weights (any pytree): predict is then called as
        predict(params, x) and params are traced, so new weights of the same shapes
        reuse the compiled program (e.g. every epoch of a training run).

    Returns:
      An `AttackResult` with one row per image. Also works under the caller's `jit`
      (value checks then apply only to concrete inputs). `predict` and `config` are
      static: pass the same function object again to reuse the compiled program (a new
      lambda per call compiles anew).
    """
    config = resolve(config)
    checks.check_key(key)
    images, labels, region, target = checks.check_inputs(
        predict, images, labels, region, target, config, params=params
    )
    n, h, w, _ = images.shape
    index = jnp.arange(n, dtype=jnp.int32)
    region = regions.broadcast(region, n, h, w)
    result = fused_attack(predict, config, params, images, labels, region, target, key, index)
    checks.check_confirmed(result.probs)
    return result


@functools.partial(jax.jit, static_argnums=(0, 1))
def fused_attack(predict, config, params, images, labels, region, target, key, index):
    """The whole search for images [N, H, W, C] with region bool [N, H, W], compiled once.

    `index` int32 [N] names each image for its randomness (key folded with the index),
    so an image's result does not depend on which other images share the call. `params`
    (traced) is None or the weights predict takes first. Returns an `AttackResult`.
    """
    num_classes = checks.num_classes_of(predict, images.shape, params)
    ctx = slots.make_context(
        predict,
        config,
        images.shape,
        images.dtype,
        num_classes,
        targeted=target is not None,
        with_params=params is not None,
        params=params,
    )
    inputs = slots.load(ctx, images, region, labels, target, index, params)
    state = slots.start(ctx, inputs)
    state = slots.advance(ctx, params, key, inputs, state, slots.max_steps(ctx))
    return finish(ctx, params, inputs, state, images.dtype)


def finish(ctx: slots.Context, params, inputs: slots.Inputs, state: slots.State, dtype):
    """The `AttackResult` of every slot, its probs and success one full pass of predict
    over the returned images."""
    s, k = state.success.shape[0], ctx.layout.pixels
    has_region = inputs.lookup.region.any(-1)
    found = has_region & jnp.isfinite(state.best_score)
    flat, colors, changed = jax.vmap(lambda g, n: slots.decode(ctx, inputs, g, n))(
        state.best_genes, jnp.arange(s)
    )
    changed = changed & found[:, None]
    adversarial = jax.vmap(encoding.apply)(inputs.pixels, flat, colors, changed).astype(dtype)
    # Slots of one candidate at the same position change one pixel: report it once, in
    # its first slot (k above the region's size always repeats positions).
    earlier = jnp.tril(jnp.ones((k, k), bool), -1)
    repeat = ((flat[:, :, None] == flat[:, None, :]) & earlier & changed[:, None, :]).any(-1)
    changed = changed & ~repeat
    w = ctx.layout.width
    positions = jnp.stack([flat // w, flat % w], axis=-1).astype(jnp.int32)
    # Columns after an image stopped repeat its final best.
    final = state.curve[jnp.arange(s), jnp.maximum(state.evaluated - 1, 0)]
    later = jnp.arange(ctx.config.generations + 1)[None, :] >= state.evaluated[:, None]
    curve = jnp.where(later & has_region[:, None], final[:, None], state.curve)
    # What a result reports, the model confirms: probs are one full pass of predict over
    # the returned images (the search's scores may come from the windowed evaluation,
    # equal only within float rounding), and success is what they say. Images returned
    # unchanged (empty region, or no candidate with finite output) are no success.
    classify = functools.partial(ctx.evaluator.classify, params)
    pixels = adversarial.astype(jnp.float32)
    probs = evaluate.classify_in_chunks(classify, pixels, ctx.evaluator.chunk)
    _, hit = evaluate.score_and_hit(probs, inputs.label, inputs.goal, ctx.targeted)
    return AttackResult(
        success=hit & found,
        adversarial=adversarial,
        positions=jnp.where(changed[..., None], positions, -1),
        colors=jnp.where(changed[..., None], colors, 0.0),
        probs=probs,
        generations=state.evaluated,
        queries=state.queries,
        fitness_curve=curve,
    )
