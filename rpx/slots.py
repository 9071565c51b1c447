"""The fused search over a fixed number of slots, each holding one image's DE run.

A slot carries everything of one image's search, including its own generation
counter, so images can start at different times (the streaming engine refills a slot
as soon as its image stops) and still follow exactly the trajectory `rpx.attack`
gives them: all randomness of image i at population g derives from (key, i, g).

`step` evaluates one population for every active slot: the initial population of a
freshly loaded slot, or a DE trial population of a running one. Live slots are
compacted to the front and only chunks holding their candidates run the classifier.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from rpx import chunks, encoding, fitness, search
from rpx.config import AttackConfig


@dataclasses.dataclass(frozen=True)
class Context:
    """Static facts of a search (hashable: the jit cache key).

    with_params: predict is called as predict(params, x), params traced (so new weights
    of the same shapes reuse the compiled program); else as predict(x).
    """

    predict: Callable
    config: AttackConfig
    layout: encoding.Layout
    num_classes: int
    targeted: bool
    chunk: int
    with_params: bool = False

    def classify(self, params, x):
        """predict's probabilities for images x [B, H, W, C] float32."""
        return self.predict(params, x) if self.with_params else self.predict(x)

    def strategy(self):
        c = self.config
        return search.make_strategy(
            self.layout.num_genes, c.population, c.strategy, c.mutation, c.crossover
        )


@struct.dataclass
class Inputs:
    """What each slot searches: pixels float32 [S,H,W,C], lookup rows, label and goal
    (label, or target when targeted) int32 [S], index int32 [S] (randomness)."""

    pixels: jax.Array
    lookup: encoding.Lookup
    label: jax.Array
    goal: jax.Array
    index: jax.Array


@struct.dataclass
class State:
    """Search state per slot. fresh: loaded, initial population not yet evaluated;
    live: searching; evaluated: populations evaluated; best_*: best candidate so far."""

    de: object
    best_genes: jax.Array
    best_score: jax.Array
    best_probs: jax.Array
    success: jax.Array
    fresh: jax.Array
    live: jax.Array
    evaluated: jax.Array
    curve: jax.Array


def make_context(
    predict, config, images_shape, dtype, num_classes, targeted, with_params=False
) -> Context:
    """The Context for images of shape [S, H, W, C] and `dtype`."""
    s, h, w, c = images_shape
    layout = encoding.Layout(
        pixels=config.pixels,
        height=h,
        width=w,
        channels=c,
        encoding=config.encoding,
        restore=config.restriction == "restore",
        value_range=config.value_range,
        integer_colors=bool(jnp.issubdtype(dtype, jnp.integer)),
        color_dtype=jnp.dtype(dtype).name,
    )
    chunk = chunks.chunk_size(config.chunk_size, images_shape, s * config.population)
    return Context(predict, config, layout, num_classes, targeted, chunk, with_params)


def load(ctx: Context, images, region, labels, target, index) -> Inputs:
    """Inputs for images [S,H,W,C], region bool [S,H,W], labels/target/index [S]."""
    lookup = encoding.build_lookup(ctx.layout, region)
    goal = target if ctx.targeted else labels
    return Inputs(images.astype(jnp.float32), lookup, labels, goal, index)


def start(ctx: Context, inputs: Inputs) -> State:
    """A fresh state: every slot with a non-empty region waits for its first population."""
    s = inputs.label.shape[0]
    pop, d = ctx.config.population, ctx.layout.num_genes
    de, de_params = ctx.strategy()
    has_region = inputs.lookup.region.any(-1)
    dummy = jax.vmap(de.init, (0, 0, 0, None))(
        jax.random.split(jax.random.key(0), s),
        jnp.zeros((s, pop, d)),
        jnp.zeros((s, pop)),
        de_params,
    )
    return State(
        de=dummy,
        best_genes=jnp.zeros((s, d), jnp.float32),
        best_score=jnp.full((s,), jnp.inf, jnp.float32),
        best_probs=jnp.zeros((s, ctx.num_classes), jnp.float32),
        success=jnp.zeros((s,), bool),
        fresh=has_region,
        live=jnp.zeros((s,), bool),
        evaluated=jnp.zeros((s,), jnp.int32),
        curve=jnp.full((s, ctx.config.generations + 1), jnp.nan, jnp.float32),
    )


def active(state: State) -> jax.Array:
    return state.fresh | state.live


def advance(
    ctx: Context, params, key, inputs: Inputs, state: State, max_steps, stop_on_finish=False
):
    """Run `step` until no slot is active or `max_steps` populations were evaluated, or,
    with `stop_on_finish`, as soon as a slot that was active stops (so the streaming
    engine can report it and refill the slot at once)."""
    was_active = active(state)

    def cond(carry):
        i, state = carry
        now = active(state)
        finished = stop_on_finish & (was_active & ~now).any()
        return (i < max_steps) & now.any() & ~finished

    def body(carry):
        i, state = carry
        return i + 1, step(ctx, params, key, inputs, state)

    return jax.lax.while_loop(cond, body, (0, state))[1]


def step(ctx: Context, params, key, inputs: Inputs, state: State) -> State:
    """One population for every active slot (initial for fresh slots, DE trial else)."""
    cfg, pop = ctx.config, ctx.config.population
    de, de_params = ctx.strategy()
    on = active(state)
    keys = jax.vmap(
        lambda i, g: jax.random.split(jax.random.fold_in(jax.random.fold_in(key, i), g), 3)
    )(inputs.index, state.evaluated)
    # Initial populations are drawn only when some slot needs one (a real branch).
    initial = jax.lax.cond(
        state.fresh.any(),
        lambda: jax.vmap(search.initial_population, (0, None, None, None))(
            keys[:, 0], pop, ctx.layout.num_genes, cfg.init
        ),
        lambda: jnp.zeros((on.shape[0], pop, ctx.layout.num_genes)),
    )
    trial, _ = jax.vmap(de.ask, (0, 0, None))(keys[:, 0], state.de, de_params)
    trial = jax.vmap(search.keep_in_bounds)(keys[:, 1], trial)
    genes = jnp.where(state.fresh[:, None, None], initial, trial)

    probs = evaluate(ctx, params, inputs, genes, on)
    score, hit = fitness.score_and_hit(
        probs, inputs.label[:, None], inputs.goal[:, None], ctx.targeted
    )
    score = jnp.where(on[:, None], score, jnp.inf)
    hit = hit & on[:, None]

    m = jnp.argmin(fitness.rank(score, hit), axis=1)
    hit_m = jnp.take_along_axis(hit, m[:, None], axis=1)[:, 0]
    score_m = jnp.take_along_axis(score, m[:, None], axis=1)[:, 0]
    better = on & (hit_m | (score_m < state.best_score))
    best_genes = jnp.where(better[:, None], _row(genes, m), state.best_genes)
    best_score = jnp.where(better, score_m, state.best_score)
    best_probs = jnp.where(better[:, None], _row(probs, m), state.best_probs)

    started = jax.vmap(de.init, (0, 0, 0, None))(keys[:, 1], genes, score, de_params)
    told, _ = jax.vmap(de.tell, (0, 0, 0, 0, None))(keys[:, 2], genes, score, state.de, de_params)
    de_state = jax.tree.map(
        lambda a, b, c: where_rows(state.fresh, a, where_rows(state.live, b, c)),
        started,
        told,
        state.de,
    )
    evaluated = state.evaluated + on
    success = state.success | hit_m
    value = fitness.value(best_score, ctx.targeted)
    rows = jnp.arange(on.shape[0])
    column = jnp.where(on, evaluated - 1, cfg.generations + 1)  # out of range: dropped
    curve = state.curve.at[rows, column].set(value, mode="drop")
    return State(
        de=de_state,
        best_genes=best_genes,
        best_score=best_score,
        best_probs=best_probs,
        success=success,
        fresh=jnp.zeros_like(state.fresh),
        live=on & ~success & (evaluated <= cfg.generations),
        evaluated=evaluated,
        curve=curve,
    )


def evaluate(ctx: Context, params, inputs: Inputs, genes, on):
    """probs [S, P, K] of genes [S, P, D] for slots where `on`; other rows are zeros."""
    s, pop = on.shape[0], ctx.config.population
    # Active slots first; run only the chunks holding their candidates.
    order = jnp.argsort(~on, stable=True)
    rows = chunks.padded_rows(s * pop, ctx.chunk)
    slot = jnp.arange(rows)
    image_of = order[jnp.minimum(slot // pop, s - 1)]
    source = image_of * pop + slot % pop
    flat_genes = genes.reshape(s * pop, -1)

    def run(size):
        def run_chunk(at, out):
            who = jax.lax.dynamic_slice(image_of, (at,), (size,))
            genes_i = flat_genes[jax.lax.dynamic_slice(source, (at,), (size,))]
            flat, colors, changed = jax.vmap(lambda g, n: decode(ctx, inputs, g, n))(genes_i, who)
            candidates = jax.vmap(encoding.apply)(inputs.pixels[who], flat, colors, changed)
            probs = ctx.classify(params, candidates).astype(out.dtype)
            return jax.lax.dynamic_update_slice(out, probs, (at, 0))

        return run_chunk

    out = jnp.zeros((rows, ctx.num_classes), jnp.float32)
    out = chunks.run(on.sum() * pop, ctx.chunk, run, out)
    return out[: s * pop].reshape(s, pop, ctx.num_classes)[jnp.argsort(order)]


def decode(ctx: Context, inputs: Inputs, genes, n):
    lookup = inputs.lookup
    return encoding.decode(ctx.layout, genes, lookup.table[n], lookup.count[n], lookup.region[n])


def finish(ctx: Context, params, inputs: Inputs, state: State, dtype):
    """The result fields for every slot (see `rpx.AttackResult`)."""
    s, k = state.success.shape[0], ctx.layout.pixels
    has_region = inputs.lookup.region.any(-1)
    found = has_region & jnp.isfinite(state.best_score)
    flat, colors, changed = jax.vmap(lambda g, n: decode(ctx, inputs, g, n))(
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
    # Images returned unchanged (empty region, or no candidate with finite output):
    # their probabilities are the clean image's, computed only when some slot needs them.
    clean = jax.lax.cond(
        (~found).any(),
        lambda: chunks.classify(
            lambda x: ctx.classify(params, x), adversarial.astype(jnp.float32), ctx.chunk
        ),
        lambda: jnp.zeros((s, ctx.num_classes), jnp.float32),
    )
    return dict(
        success=state.success & has_region,
        adversarial=adversarial,
        positions=jnp.where(changed[..., None], positions, -1),
        colors=jnp.where(changed[..., None], colors, 0.0),
        probs=jnp.where(found[:, None], state.best_probs, clean),
        generations=state.evaluated,
        queries=state.evaluated * ctx.config.population,
        fitness_curve=curve,
    )


def _row(a, m):
    return jnp.take_along_axis(a, m[:, None, None], axis=1)[:, 0]


def where_rows(rows, new, old):
    """new where rows [S] else old, for arrays [S, ...]."""
    return jnp.where(rows.reshape(rows.shape + (1,) * (new.ndim - 1)), new, old)
