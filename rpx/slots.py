"""The slot machine: ask, evaluate, score, tell, over a fixed number of slots.

A slot carries everything of one image's search, including its own generation
counter, so images can start at different times (the streaming engine refills a slot
as soon as its image stops) and still follow exactly the trajectory `rpx.attack`
gives them: all randomness of image i at population g derives from (key, i, g).

`step` asks the search (`rpx.search`: DE, Sparse-RS, DE after a corner scan; chosen
statically from the config, one per Context) for a population of every active slot,
evaluates and scores it (`rpx.evaluate`), keeps each slot's best and
tells the search. It never looks at which search runs: a search's warm-up phase (the
scan) shows only as `warming` slots, whose steps count their own queries and no
population. Live slots are compacted to the front and only chunks holding their
candidates run the classifier. `rpx.attack.finish` turns the final state into the
`AttackResult`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rpx import encoding, evaluate, search
from rpx.config import AttackConfig
from rpx.search import Told, row


@dataclasses.dataclass(frozen=True)
class Context:
    """Static facts of a search (hashable: the jit cache key).

    search: the `rpx.search` object that proposes candidates (`search.make(config)`).
    evaluator: how candidates are applied and classified (`rpx.evaluate.Evaluator`:
    predict, chunk size, and the `rpx.incremental` plan when one-pixel candidates are
    scored from cached clean activations, config.evaluation).
    """

    config: AttackConfig
    layout: encoding.Layout
    num_classes: int
    targeted: bool
    evaluator: evaluate.Evaluator
    search: Any


@struct.dataclass
class Inputs:
    """What each slot searches: pixels float32 [S,H,W,C], lookup rows, label and goal
    (label, or target when targeted) int32 [S], index int32 [S] (randomness), and the
    clean activations of the evaluator's plan (a tuple of [S, ...] arrays; None without a plan)."""

    pixels: jax.Array
    lookup: encoding.Lookup
    label: jax.Array
    goal: jax.Array
    index: jax.Array
    cache: object = None


@struct.dataclass
class State:
    """Per slot. search: the search's own State (`rpx.search`). warming: in the search's
    warm-up phase (the corner scan of init="scan"); fresh: loaded (or warmed up), initial
    population not yet evaluated; live: searching; evaluated: populations evaluated
    (not counting warm-up steps); queries: model evaluations counted so far; best_*:
    best candidate so far (for sparse_rs, the current set); curve: best fitness after
    each population."""

    search: Any
    best_genes: jax.Array
    best_score: jax.Array
    success: jax.Array
    warming: jax.Array
    fresh: jax.Array
    live: jax.Array
    evaluated: jax.Array
    queries: jax.Array
    curve: jax.Array


def make_context(
    predict, config, images_shape, dtype, num_classes, targeted, with_params=False, params=None
) -> Context:
    """The Context for images of shape [S, H, W, C] and `dtype` (params: the weights
    when with_params, only their shapes are used)."""
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
        corner_colors=search.corner_colors(config),
    )
    chunk = evaluate.chunk_size(config.chunk_size, images_shape, s * config.population)
    plan = None
    if config.pixels == 1:
        # Every slot caches its own image's activations: "auto" keeps their total within
        # the budget one_pixel_probs and pixel_map hold theirs to, else runs in full.
        p = params if with_params else None
        plan = evaluate.choose(predict, (h, w, c), config.evaluation, p, slots=s)
    evaluator = evaluate.Evaluator(predict, chunk, with_params, plan)
    return Context(config, layout, num_classes, targeted, evaluator, search.make(config, layout))


def load(ctx: Context, images, region, labels, target, index, params=None) -> Inputs:
    """Inputs for images [S,H,W,C], region bool [S,H,W], labels/target/index [S]; with a
    plan, the clean activations each slot's candidates are scored from."""
    lookup = encoding.build_lookup(ctx.layout, region)
    goal = target if ctx.targeted else labels
    pixels = images.astype(jnp.float32)
    cache = ctx.evaluator.cache(pixels, params)
    return Inputs(pixels, lookup, labels, goal, index, cache)


def start(ctx: Context, inputs: Inputs) -> State:
    """A fresh state: every slot with a non-empty region waits for its first population
    (or, for a search with a warm-up phase, starts warming up)."""
    s, d = inputs.label.shape[0], ctx.layout.num_genes
    has_region = inputs.lookup.region.any(-1)
    warms_up = ctx.search.warms_up
    return State(
        search=ctx.search.init(has_region),
        best_genes=jnp.zeros((s, d), jnp.float32),
        best_score=jnp.full((s,), jnp.inf, jnp.float32),
        success=jnp.zeros((s,), bool),
        warming=has_region & warms_up,
        fresh=has_region & (not warms_up),
        live=jnp.zeros((s,), bool),
        evaluated=jnp.zeros((s,), jnp.int32),
        queries=jnp.zeros((s,), jnp.int32),
        curve=jnp.full((s, ctx.config.generations + 1), jnp.nan, jnp.float32),
    )


def active(state: State) -> jax.Array:
    return state.fresh | state.live | state.warming


def max_steps(ctx: Context) -> int:
    """Steps after which every slot has stopped: its warm-up's and its generations + 1
    populations."""
    return ctx.search.warmup_steps() + ctx.config.generations + 1


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
    """One population for every active slot: a warm-up step for warming slots, the
    initial population for fresh ones, the search's next one for live ones."""
    cfg, pop = ctx.config, ctx.config.population
    on, warming, searching = active(state), state.warming, state.fresh | state.live
    keys = jax.vmap(
        lambda i, g: jax.random.split(jax.random.fold_in(jax.random.fold_in(key, i), g), 3)
    )(inputs.index, state.evaluated)
    genes, proposal = ctx.search.ask(keys, inputs.lookup, state.search, state)

    probs = classify(ctx, params, inputs, genes, on)
    score, hit = evaluate.score_and_hit(
        probs, inputs.label[:, None], inputs.goal[:, None], ctx.targeted
    )
    score = jnp.where(on[:, None], score, jnp.inf)
    hit = hit & on[:, None]

    m = jnp.argmin(evaluate.rank(score, hit), axis=1)
    hit_m = jnp.take_along_axis(hit, m[:, None], axis=1)[:, 0]
    score_m = jnp.take_along_axis(score, m[:, None], axis=1)[:, 0]
    # Without a finite best yet, the chosen candidate is taken anyway (it is reported
    # only once its score is finite), so Sparse-RS always moves a set it evaluated.
    better = on & (hit_m | (score_m < state.best_score) | jnp.isinf(state.best_score))
    best_genes = jnp.where(better[:, None], row(genes, m), state.best_genes)
    best_score = jnp.where(better, score_m, state.best_score)
    success = state.success | hit_m

    told = Told(keys, genes, score, hit, m, better, success, state)
    search_state, counted, warmed = ctx.search.tell(told, proposal, state.search)
    evaluated = state.evaluated + searching
    queries = state.queries + jnp.where(warming, counted, searching * pop)
    value = evaluate.value(best_score, ctx.targeted)
    rows = jnp.arange(on.shape[0])
    # A warming slot keeps its best in the first column (the whole curve if its warm-up
    # succeeds); the initial population overwrites it. Out of range: dropped.
    column = jnp.where(searching, evaluated - 1, jnp.where(warming, 0, cfg.generations + 1))
    curve = state.curve.at[rows, column].set(value, mode="drop")
    return State(
        search=search_state,
        best_genes=best_genes,
        best_score=best_score,
        success=success,
        warming=warming & ~warmed & ~success,
        fresh=warming & warmed & ~success,
        live=searching & ~success & (evaluated <= cfg.generations),
        evaluated=evaluated,
        queries=queries,
        curve=curve,
    )


def classify(ctx: Context, params, inputs: Inputs, genes, on):
    """probs [S, P, K] of genes [S, P, D] for slots where `on`; other rows are zeros."""
    s, pop = on.shape[0], ctx.config.population
    # Active slots first; run only the chunks holding their candidates.
    order = jnp.argsort(~on, stable=True)
    chunk = ctx.evaluator.chunk
    rows = evaluate.padded_rows(s * pop, chunk)
    slot = jnp.arange(rows)
    image_of = order[jnp.minimum(slot // pop, s - 1)]
    source = image_of * pop + slot % pop
    flat_genes = genes.reshape(s * pop, -1)

    def run(size):
        def run_chunk(at, out):
            who = jax.lax.dynamic_slice(image_of, (at,), (size,))
            genes_i = flat_genes[jax.lax.dynamic_slice(source, (at,), (size,))]
            flat, colors, changed = jax.vmap(lambda g, n: decode(ctx, inputs, g, n))(genes_i, who)
            probs = ctx.evaluator.probs(
                params, inputs.pixels, inputs.cache, who, flat, colors, changed
            )
            return jax.lax.dynamic_update_slice(out, probs.astype(out.dtype), (at, 0))

        return run_chunk

    out = jnp.zeros((rows, ctx.num_classes), jnp.float32)
    out = evaluate.over_chunks(on.sum() * pop, chunk, run, out)
    return out[: s * pop].reshape(s, pop, ctx.num_classes)[jnp.argsort(order)]


def decode(ctx: Context, inputs: Inputs, genes, n):
    lookup = inputs.lookup
    return encoding.decode(ctx.layout, genes, lookup.table[n], lookup.count[n], lookup.region[n])
