"""rpx.attack: region-restricted few-pixel attacks, the whole search in one fused XLA call.

Each generation asks evosax's DE (vmapped over images) for a trial population, applies
every live image's candidates and runs the classifier on them in fixed-size chunks
inside the same program, then tells DE the fitness. Images that have succeeded (or
whose region is empty) are frozen and their candidates are no longer evaluated: live
images are compacted to the front of the batch and only the chunks that hold live
candidates run, so the classifier's work follows the number of images still searching.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from rpx import checks, encoding, regions, search


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Settings of the search; the defaults are the paper's (section IV-B).

    pixels: k, pixels changed per image. population: DE population size.
    generations: DE generations after the initial population. mutation: (lo, hi), F
    drawn from U[lo, hi) each generation; lo == hi fixes F. crossover: CR of the
    binomial crossover. strategy: "best1bin" or "rand1bin". init: "lhs" (latin
    hypercube) or "uniform". value_range: (lo, hi) of pixel values, the range of
    `images` and of the colours tried. restriction: "table" (coordinates map only to
    region pixels) or "restore" (the paper's workaround: search the whole image and
    leave out-of-region pixels unchanged). encoding: "rowcol", "flat" or "hilbert",
    how coordinate genes map to pixels (see `rpx.encoding`). chunk_size: candidates
    per classifier call inside the fused program; None picks one for the backend.
    """

    pixels: int = 1
    population: int = 400
    generations: int = 100
    mutation: tuple[float, float] = (0.5, 1.0)
    crossover: float = 1.0
    strategy: str = "best1bin"
    init: str = "lhs"
    value_range: tuple[float, float] = (0.0, 255.0)
    restriction: str = "table"
    encoding: str = "rowcol"
    chunk_size: int | None = None

    def __post_init__(self):
        checks.check_config(self)
        # Tuples of floats, so that equal configs hash alike (the config is a jit key).
        object.__setattr__(self, "mutation", tuple(float(m) for m in self.mutation))
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        object.__setattr__(self, "crossover", float(self.crossover))


@struct.dataclass
class AttackResult:
    """One row per image.

    success: bool [N]. adversarial: [N, H, W, C], the images' dtype, the best candidate
    found (the successful one with the best fitness if any succeeded). positions: int32
    [N, k, 2] (row, col), (-1, -1) where a pixel slot changed nothing (empty region, or
    outside the region under "restore"). colors: float32 [N, k, C], 0 where the slot
    changed nothing. probs: float32 [N, K] = predict(adversarial). generations: int32
    [N], populations evaluated, the initial one counting as 1. queries: int32 [N], model
    evaluations spent on the image (generations * population). fitness_curve: float32
    [N, generations + 1], the best fitness after each population: p[label] for
    untargeted attacks (falling), p[target] for targeted ones (rising), the last value
    repeated after the image stopped, NaN throughout for an empty region.
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
) -> AttackResult:
    """Search k-pixel perturbations inside each image's region with DE.

    Args:
      predict: float32 [B, H, W, C] in value_range -> probabilities [B, K]; traceable.
      images: [N, H, W, C], uint8 or float, values in value_range.
      labels: int [N], the class an untargeted attack drives down (usually the
        classifier's clean prediction).
      region: bool [N, H, W] or [H, W], True where pixels may change; None: whole image.
      target: int [N] or None; given, the attack is targeted (maximise p[target]).
      config: an `AttackConfig` (default: the paper's settings).
      key: a PRNG key. Image i's randomness derives from (key, i) alone.

    Returns:
      An `AttackResult` with one row per image. Also works under the caller's `jit`
      (value checks then apply only to concrete inputs).
    """
    config = AttackConfig() if config is None else config
    images, labels, region, target = checks.check_inputs(
        predict, images, labels, region, target, config
    )
    n, h, w, _ = images.shape
    index = jnp.arange(n, dtype=jnp.int32)
    return fused_attack(
        predict, config, images, labels, regions.broadcast(region, n, h, w), target, key, index
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def fused_attack(predict, config, images, labels, region, target, key, index) -> AttackResult:
    """The whole search for images [N, H, W, C] with region bool [N, H, W], compiled once.

    `index` int32 [N] names each image for its randomness (key folded with the index),
    so an image's result does not depend on which other images share the call.
    """
    n, h, w, c = images.shape
    pop, gens = config.population, config.generations
    layout = encoding.Layout(
        pixels=config.pixels,
        height=h,
        width=w,
        channels=c,
        encoding=config.encoding,
        restore=config.restriction == "restore",
        value_range=config.value_range,
        integer_colors=bool(jnp.issubdtype(images.dtype, jnp.integer)),
    )
    de, params = search.make_strategy(
        layout.num_genes, pop, config.strategy, config.mutation, config.crossover
    )
    lookup = encoding.build_lookup(layout, region)
    has_region = lookup.region.any(-1)
    pixels = images.astype(jnp.float32)
    chunk = chunk_size(config, images.shape, n * pop)
    tail = max(1, chunk // 8)
    goal = labels if target is None else target

    def decode(genes, image_index):
        return encoding.decode(
            layout,
            genes,
            lookup.table[image_index],
            lookup.count[image_index],
            lookup.region[image_index],
        )

    def evaluate(genes, live):
        # Live images first; run only the chunks that hold their candidates: full chunks,
        # then small ones for the remainder, so padding wastes fewer than `tail` calls.
        order = jnp.argsort(~live, stable=True)
        # One spare tail of rows: the last tail chunk may run past n * pop (never past this).
        rows = -(-(n * pop) // chunk) * chunk + tail
        slot = jnp.arange(rows)
        image_of = order[jnp.minimum(slot // pop, n - 1)]
        source = image_of * pop + slot % pop
        flat_genes = genes.reshape(n * pop, -1)

        def run(size):
            def run_chunk(at, out):
                who = jax.lax.dynamic_slice(image_of, (at,), (size,))
                genes_i = flat_genes[jax.lax.dynamic_slice(source, (at,), (size,))]
                flat, colors, changed = jax.vmap(decode)(genes_i, who)
                candidates = jax.vmap(encoding.apply)(pixels[who], flat, colors, changed)
                probs = predict(candidates).astype(out.dtype)
                return jax.lax.dynamic_update_slice(out, probs, (at, 0))

            return run_chunk

        total = live.sum() * pop
        full = total // chunk
        out = jnp.zeros((rows, num_classes), jnp.float32)
        out = jax.lax.fori_loop(0, full, lambda i, o: run(chunk)(i * chunk, o), out)
        rest = -(-(total - full * chunk) // tail)
        out = jax.lax.fori_loop(0, rest, lambda i, o: run(tail)(full * chunk + i * tail, o), out)
        return out[: n * pop].reshape(n, pop, num_classes)[jnp.argsort(order)]

    def judge(probs):
        p_goal = jnp.take_along_axis(probs, goal[:, None, None], axis=-1)[..., 0]
        predicted = jnp.argmax(probs, axis=-1)
        if target is None:
            return p_goal, p_goal, predicted != labels[:, None]
        return p_goal, -p_goal, predicted == target[:, None]

    def keep_best(best, genes, probs, live):
        genes_b, score_b, probs_b, success = best
        _, score, hit = judge(probs)
        score = jnp.where(live[:, None], score, jnp.inf)
        hit = hit & live[:, None]
        # A successful candidate always wins over an unsuccessful one (scores are in [-1, 1]).
        m = jnp.argmin(jnp.where(hit, score - 4.0, score), axis=1)
        pick = lambda a: jnp.take_along_axis(a, m[:, None, None], axis=1)[:, 0]  # noqa: E731
        hit_m = jnp.take_along_axis(hit, m[:, None], axis=1)[:, 0]
        score_m = jnp.take_along_axis(score, m[:, None], axis=1)[:, 0]
        better = live & (hit_m | (score_m < score_b))
        best = (
            jnp.where(better[:, None], pick(genes), genes_b),
            jnp.where(better, score_m, score_b),
            jnp.where(better[:, None], pick(probs), probs_b),
            success | hit_m,
        )
        return best, score

    def curve_value(score_b):
        value = -score_b if target is not None else score_b
        return jnp.where(has_region, value, jnp.nan)

    num_classes = jax.eval_shape(predict, jax.ShapeDtypeStruct((chunk, h, w, c), jnp.float32))
    num_classes = num_classes.shape[-1]
    image_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, index)
    keys_at = lambda g: jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, g), 3))(  # noqa: E731
        image_keys
    )

    # Generation 0: the initial population.
    k0 = keys_at(0)
    genes0 = jax.vmap(search.initial_population, (0, None, None, None))(
        k0[:, 0], pop, layout.num_genes, config.init
    )
    probs0 = evaluate(genes0, has_region)
    best = (
        jnp.zeros((n, layout.num_genes), jnp.float32),
        jnp.full((n,), jnp.inf, jnp.float32),
        clean_probs(predict, pixels, min(chunk, n), num_classes),
        jnp.zeros((n,), bool),
    )
    best, score0 = keep_best(best, genes0, probs0, has_region)
    state = jax.vmap(de.init, (0, 0, 0, None))(k0[:, 1], genes0, score0, params)
    curve = jnp.full((n, gens + 1), jnp.nan, jnp.float32).at[:, 0].set(curve_value(best[1]))
    carry = (1, state, best, has_region & ~best[3], has_region.astype(jnp.int32), curve)

    def not_done(carry):
        g, _, _, live, _, _ = carry
        return (g <= gens) & live.any()

    def generation(carry):
        g, state, best, live, evaluated, curve = carry
        k = keys_at(g)
        trial, _ = jax.vmap(de.ask, (0, 0, None))(k[:, 0], state, params)
        trial = jax.vmap(search.keep_in_bounds)(k[:, 1], trial)
        probs = evaluate(trial, live)
        best, score = keep_best(best, trial, probs, live)
        told, _ = jax.vmap(de.tell, (0, 0, 0, 0, None))(k[:, 2], trial, score, state, params)
        state = jax.tree.map(lambda new, old: _where_rows(live, new, old), told, state)
        evaluated = evaluated + live
        curve = curve.at[:, g].set(curve_value(best[1]))
        return g + 1, state, best, live & ~best[3], evaluated, curve

    g_end, _, best, _, evaluated, curve = jax.lax.while_loop(not_done, generation, carry)
    genes_b, score_b, probs_b, success = best
    # Columns after the loop ended repeat each image's final best.
    curve = jnp.where(jnp.arange(gens + 1) >= g_end, curve_value(score_b)[:, None], curve)

    found = has_region & jnp.isfinite(score_b)
    flat, colors, changed = jax.vmap(decode)(genes_b, jnp.arange(n))
    changed = changed & found[:, None]
    adversarial = jax.vmap(encoding.apply)(images, flat, colors, changed)
    positions = jnp.stack([flat // w, flat % w], axis=-1).astype(jnp.int32)
    return AttackResult(
        success=success & has_region,
        adversarial=adversarial,
        positions=jnp.where(changed[..., None], positions, -1),
        colors=jnp.where(changed[..., None], colors, 0.0),
        probs=probs_b,
        generations=evaluated,
        queries=evaluated * pop,
        fitness_curve=curve,
    )


def chunk_size(config: AttackConfig, image_shape, total: int) -> int:
    """Candidates per classifier call: the config's, else a backend default.

    On CPU a small CNN runs fastest at batches of 128-256 (DESIGN.md's measurements);
    accelerators want large batches, capped so the candidate images stay near 1 GiB.
    """
    if config.chunk_size is not None:
        size = config.chunk_size
    elif jax.default_backend() == "cpu":
        size = 256
    else:
        per_image = 4 * math.prod(image_shape[1:])
        size = max(64, min(8192, (1 << 30) // per_image))
    return max(1, min(size, total))


def clean_probs(predict, pixels: jax.Array, chunk: int, num_classes: int) -> jax.Array:
    """predict(pixels) [N, K] in chunks of `chunk` images."""
    n = pixels.shape[0]
    padded = -(-n // chunk) * chunk
    batches = jnp.pad(pixels, ((0, padded - n), (0, 0), (0, 0), (0, 0)))
    batches = batches.reshape(padded // chunk, chunk, *pixels.shape[1:])
    probs = jax.lax.map(lambda x: predict(x).astype(jnp.float32), batches)
    return probs.reshape(padded, num_classes)[:n]


def _where_rows(rows: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    return jnp.where(rows.reshape(rows.shape + (1,) * (new.ndim - 1)), new, old)
