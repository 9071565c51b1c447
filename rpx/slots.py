"""The fused search over a fixed number of slots, each holding one image's search.

A slot carries everything of one image's search, including its own generation
counter, so images can start at different times (the streaming engine refills a slot
as soon as its image stops) and still follow exactly the trajectory `rpx.attack`
gives them: all randomness of image i at population g derives from (key, i, g).

`step` evaluates one population for every active slot: the initial population of a
freshly loaded slot, or the next population of a running one: DE's trial population
or Sparse-RS's proposals (`config.search`, chosen statically, so one Context holds one
kind of search state). With init="scan" a slot first runs its corner scan
(`rpx.scan`), `population` candidates per step. Live slots are compacted to the front
and only chunks holding their candidates run the classifier.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from rpx import chunks, encoding, fitness, incremental, scan, search, sparse_rs
from rpx.config import AttackConfig


@dataclasses.dataclass(frozen=True)
class Context:
    """Static facts of a search (hashable: the jit cache key).

    with_params: predict is called as predict(params, x), params traced (so new weights
    of the same shapes reuse the compiled program); else as predict(x). plan: the
    `rpx.incremental` analysis when one-pixel candidates are scored from cached clean
    activations (config.evaluation), else None.
    """

    predict: Callable
    config: AttackConfig
    layout: encoding.Layout
    num_classes: int
    targeted: bool
    chunk: int
    with_params: bool = False
    plan: incremental.Plan | None = None

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
    (label, or target when targeted) int32 [S], index int32 [S] (randomness), and the
    clean activations of `ctx.plan` (a tuple of [S, ...] arrays; None without a plan)."""

    pixels: jax.Array
    lookup: encoding.Lookup
    label: jax.Array
    goal: jax.Array
    index: jax.Array
    cache: object = None


@struct.dataclass
class State:
    """Search state per slot. search: evosax's DE state (search="de") or, for
    "sparse_rs", int32 [S, k], the numbers of the current set's pixels
    (`encoding.search_pixel_genes`); scan: a `scan.ScanState` with init="scan", else
    None. fresh: loaded (or scanned), initial population not yet evaluated; live:
    searching; evaluated: populations evaluated (not counting scan steps); queries:
    model evaluations counted so far; best_*: best candidate so far (for sparse_rs,
    the current set)."""

    search: object
    scan: object
    best_genes: jax.Array
    best_score: jax.Array
    success: jax.Array
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
        corner_colors=config.search == "sparse_rs",
    )
    chunk = chunks.chunk_size(config.chunk_size, images_shape, s * config.population)
    plan = None
    if config.pixels == 1:
        plan = incremental.choose(
            predict, (h, w, c), config.evaluation, params if with_params else None
        )
        # Every slot caches its own image's activations: "auto" keeps their total within
        # the budget one_pixel_probs and pixel_map hold theirs to, else runs in full.
        budget = incremental.api.CACHE_BUDGET_BYTES
        if config.evaluation == "auto" and plan is not None and s * plan.cache_bytes > budget:
            plan = None
    return Context(predict, config, layout, num_classes, targeted, chunk, with_params, plan)


def load(ctx: Context, images, region, labels, target, index, params=None) -> Inputs:
    """Inputs for images [S,H,W,C], region bool [S,H,W], labels/target/index [S]; with a
    plan, the clean activations each slot's candidates are scored from."""
    lookup = encoding.build_lookup(ctx.layout, region)
    goal = target if ctx.targeted else labels
    pixels = images.astype(jnp.float32)
    cache = None if ctx.plan is None else incremental.clean_cache(ctx.plan, pixels, params)
    return Inputs(pixels, lookup, labels, goal, index, cache)


def start(ctx: Context, inputs: Inputs) -> State:
    """A fresh state: every slot with a non-empty region waits for its first population
    (with init="scan": starts its scan)."""
    s = inputs.label.shape[0]
    cfg = ctx.config
    pop, d = cfg.population, ctx.layout.num_genes
    has_region = inputs.lookup.region.any(-1)
    if cfg.search == "sparse_rs":
        search_state = jnp.zeros((s, cfg.pixels), jnp.int32)
    else:
        de, de_params = ctx.strategy()
        search_state = jax.vmap(de.init, (0, 0, 0, None))(
            jax.random.split(jax.random.key(0), s),
            jnp.zeros((s, pop, d)),
            jnp.zeros((s, pop)),
            de_params,
        )
    scanned = cfg.init == "scan"
    return State(
        search=search_state,
        scan=scan.start(has_region, ctx.layout, pop) if scanned else None,
        best_genes=jnp.zeros((s, d), jnp.float32),
        best_score=jnp.full((s,), jnp.inf, jnp.float32),
        success=jnp.zeros((s,), bool),
        fresh=has_region & (not scanned),
        live=jnp.zeros((s,), bool),
        evaluated=jnp.zeros((s,), jnp.int32),
        queries=jnp.zeros((s,), jnp.int32),
        curve=jnp.full((s, ctx.config.generations + 1), jnp.nan, jnp.float32),
    )


def active(state: State) -> jax.Array:
    return state.fresh | state.live | scanning(state)


def scanning(state: State) -> jax.Array:
    """bool [S]: slots in their corner scan (never without init="scan")."""
    return jnp.zeros_like(state.fresh) if state.scan is None else state.scan.scanning


def max_steps(ctx: Context) -> int:
    """Steps after which every slot has stopped: its scan's (init="scan") and its
    generations + 1 populations."""
    cfg, layout = ctx.config, ctx.layout
    pairs = layout.height * layout.width * 2**layout.channels
    scan_steps = -(-pairs // cfg.population) if cfg.init == "scan" else 0
    return scan_steps + cfg.generations + 1


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
    """One population for every active slot: a scan step for scanning slots, the initial
    population for fresh ones, the next DE or Sparse-RS population for live ones."""
    cfg, pop = ctx.config, ctx.config.population
    on, scans, searching = active(state), scanning(state), state.fresh | state.live
    keys = jax.vmap(
        lambda i, g: jax.random.split(jax.random.fold_in(jax.random.fold_in(key, i), g), 3)
    )(inputs.index, state.evaluated)
    genes, ranks = _ask(ctx, keys, inputs, state)
    if state.scan is not None:
        lookup = inputs.lookup
        pairs = jax.vmap(lambda c, r: scan.total(ctx.layout, c, r))(lookup.count, lookup.region)
        s, d, g = on.shape[0], ctx.layout.num_genes, ctx.layout.genes_per_pixel
        scan_genes, singles, real = jax.lax.cond(
            scans.any(),
            lambda: jax.vmap(lambda a, c, r: scan.candidates(ctx.layout, a, pop, c, r))(
                state.scan.at, lookup.count, lookup.region
            ),
            lambda: (jnp.zeros((s, pop, d)), jnp.zeros((s, pop, g)), jnp.zeros((s, pop), bool)),
        )
        genes = jnp.where(scans[:, None, None], scan_genes, genes)

    probs = evaluate(ctx, params, inputs, genes, on)
    score, hit = fitness.score_and_hit(
        probs, inputs.label[:, None], inputs.goal[:, None], ctx.targeted
    )
    score = jnp.where(on[:, None], score, jnp.inf)
    hit = hit & on[:, None]

    m = jnp.argmin(fitness.rank(score, hit), axis=1)
    hit_m = jnp.take_along_axis(hit, m[:, None], axis=1)[:, 0]
    score_m = jnp.take_along_axis(score, m[:, None], axis=1)[:, 0]
    # Without a finite best yet, the chosen candidate is taken anyway (it is reported
    # only once its score is finite), so Sparse-RS always moves a set it evaluated.
    better = on & (hit_m | (score_m < state.best_score) | jnp.isinf(state.best_score))
    best_genes = jnp.where(better[:, None], _row(genes, m), state.best_genes)
    best_score = jnp.where(better, score_m, state.best_score)

    if cfg.search == "sparse_rs":
        search_state = jnp.where(better[:, None], _row(ranks, m), state.search)
    else:
        de, de_params = ctx.strategy()
        started = jax.vmap(de.init, (0, 0, 0, None))(keys[:, 1], genes, score, de_params)
        told, _ = jax.vmap(de.tell, (0, 0, 0, 0, None))(
            keys[:, 2], genes, score, state.search, de_params
        )
        search_state = jax.tree.map(
            lambda a, b, c: where_rows(state.fresh, a, where_rows(state.live, b, c)),
            started,
            told,
            state.search,
        )
    scan_state, counted, exhausted = state.scan, 0, jnp.zeros_like(on)
    if state.scan is not None:
        scan_keys = jnp.where(real, fitness.rank(score, hit), jnp.inf)
        scan_state, counted, exhausted = scan.tell(state.scan, singles, scan_keys, pairs)
    evaluated = state.evaluated + searching
    queries = state.queries + jnp.where(scans, counted, searching * pop)
    success = state.success | hit_m
    value = fitness.value(best_score, ctx.targeted)
    rows = jnp.arange(on.shape[0])
    # A scanning slot keeps its best in the first column (the whole curve if the scan
    # succeeds); DE's initial population overwrites it. Out of range: dropped.
    column = jnp.where(searching, evaluated - 1, jnp.where(scans, 0, cfg.generations + 1))
    curve = state.curve.at[rows, column].set(value, mode="drop")
    if scan_state is not None:
        scan_state = scan_state.replace(scanning=scans & ~exhausted & ~success)
    return State(
        search=search_state,
        scan=scan_state,
        best_genes=best_genes,
        best_score=best_score,
        success=success,
        fresh=scans & exhausted & ~success,
        live=searching & ~success & (evaluated <= cfg.generations),
        evaluated=evaluated,
        queries=queries,
        curve=curve,
    )


def _ask(ctx: Context, keys, inputs: Inputs, state: State):
    """(genes [S, P, D], ranks int32 [S, P, k] for sparse_rs else None): the initial
    population where fresh, else the search's next one (rows of other slots unused)."""
    cfg, pop, layout = ctx.config, ctx.config.population, ctx.layout
    lookup = inputs.lookup
    s, d = state.fresh.shape[0], layout.num_genes
    fresh = state.fresh[:, None, None]
    # Initial populations are drawn only when some slot needs one (a real branch).
    if cfg.search == "sparse_rs":
        k = cfg.pixels
        initial, first_ranks = jax.lax.cond(
            state.fresh.any(),
            lambda: jax.vmap(lambda key, c, r: sparse_rs.initial(key, layout, pop, c, r))(
                keys[:, 0], lookup.count, lookup.region
            ),
            lambda: (jnp.zeros((s, pop, d)), jnp.zeros((s, pop, k), jnp.int32)),
        )
        counts = jnp.asarray(sparse_rs.resample_counts(cfg.generations, cfg.p_init, k))
        moves = counts[jnp.minimum(state.evaluated, cfg.generations)]
        trial, ranks = jax.vmap(
            lambda key, g, r, m, c, reg: sparse_rs.propose(key, layout, pop, g, r, m, c, reg)
        )(keys[:, 0], state.best_genes, state.search, moves, lookup.count, lookup.region)
        return jnp.where(fresh, initial, trial), jnp.where(fresh, first_ranks, ranks)

    def first():
        if cfg.init == "scan":  # DE starts from the scan's best candidates
            seed = lambda key, g, v: scan.seed_population(key, layout, pop, g, v)  # noqa: E731
            return jax.vmap(seed)(keys[:, 0], state.scan.genes, state.scan.keys)
        return jax.vmap(search.initial_population, (0, None, None, None))(
            keys[:, 0], pop, d, cfg.init
        )

    initial = jax.lax.cond(state.fresh.any(), first, lambda: jnp.zeros((s, pop, d)))
    de, de_params = ctx.strategy()
    trial, _ = jax.vmap(de.ask, (0, 0, None))(keys[:, 0], state.search, de_params)
    trial = jax.vmap(search.keep_in_bounds)(keys[:, 1], trial)
    return jnp.where(fresh, initial, trial), None


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
            if ctx.plan is None:
                candidates = jax.vmap(encoding.apply)(inputs.pixels[who], flat, colors, changed)
                probs = ctx.classify(params, candidates)
            else:  # one pixel: only its receptive field, from the slot's clean activations
                probs = _one_pixel(ctx, params, inputs, who, flat[:, 0], colors[:, 0], changed)
            return jax.lax.dynamic_update_slice(out, probs.astype(out.dtype), (at, 0))

        return run_chunk

    out = jnp.zeros((rows, ctx.num_classes), jnp.float32)
    out = chunks.run(on.sum() * pop, ctx.chunk, run, out)
    return out[: s * pop].reshape(s, pop, ctx.num_classes)[jnp.argsort(order)]


def _one_pixel(ctx: Context, params, inputs: Inputs, who, flat, colors, changed):
    # An unchanged pixel ("restore", outside the region) keeps its own value.
    w = ctx.layout.width
    own = inputs.pixels.reshape(inputs.pixels.shape[0], -1, ctx.layout.channels)[who, flat]
    colors = jnp.where(changed, colors, own)
    positions = jnp.stack([flat // w, flat % w], axis=-1)
    return incremental.window_probs(ctx.plan, inputs.cache, who, positions, colors, params)


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
    # What a result reports, the model confirms: probs are one full pass of predict over
    # the returned images (the search's scores may come from the windowed evaluation,
    # equal only within float rounding), and success is what they say. Images returned
    # unchanged (empty region, or no candidate with finite output) are no success.
    probs = chunks.classify(
        lambda x: ctx.classify(params, x), adversarial.astype(jnp.float32), ctx.chunk
    )
    _, hit = fitness.score_and_hit(probs, inputs.label, inputs.goal, ctx.targeted)
    return dict(
        success=hit & found,
        adversarial=adversarial,
        positions=jnp.where(changed[..., None], positions, -1),
        colors=jnp.where(changed[..., None], colors, 0.0),
        probs=probs,
        generations=state.evaluated,
        queries=state.queries,
        fitness_curve=curve,
    )


def _row(a, m):
    return jnp.take_along_axis(a, m[:, None, None], axis=1)[:, 0]


def where_rows(rows, new, old):
    """new where rows [S] else old, for arrays [S, ...]."""
    return jnp.where(rows.reshape(rows.shape + (1,) * (new.ndim - 1)), new, old)
