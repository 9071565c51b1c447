"""Differential evolution on evosax, the paper's search (`AttackConfig(search="de")`).

Per slot and generation: the initial population (latin hypercube or uniform, or the
corner scan's seeds, `rpx.search.scan`) when the slot is fresh, else `ask`: evosax's DE
mutation x_a + F (x_b - x_c) and binomial crossover, then `keep_in_bounds`; after the
slot machine scored the population, `tell`: evosax's `init` on the initial population,
its greedy one-to-one replacement on a trial population. Nothing here knows about
images or classifiers.

The one place that touches evosax's private interface is `SkipSamplingDE` (it overrides
`_ask` and sets the dithering fields of DE's params); `check_evosax` refuses, naming
the installed release, an evosax whose interface differs from the tested one.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import inspect
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from evosax.algorithms import DifferentialEvolution
from evosax.algorithms.population_based import differential_evolution as evosax_de
from flax import struct

from rpx import encoding
from rpx.search import Told, nothing, where_rows

STRATEGIES = ("best1bin", "rand1bin")
# The largest float32 below 1 (genes lie in [0, 1)): (stratum + jitter) / P is capped
# there so it never rounds up to 1; `rpx.search.scan`'s colour gene that decodes to hi.
BELOW_ONE = float(jnp.nextafter(jnp.float32(1.0), jnp.float32(0.0)))
# The evosax releases whose private DE interface SkipSamplingDE was tested against
# (pyproject.toml pins the same range).
TESTED_EVOSAX = ">=0.3.1,<0.4"


@struct.dataclass
class State:
    """evosax's DE state of every slot (leaves [S, ...])."""

    de: Any


@dataclasses.dataclass(frozen=True)
class DE:
    """The DE search over S slots (see `rpx.search` for the protocol).

    config: the `AttackConfig` (population, generations, strategy, mutation, crossover,
    init); layout: the `encoding.Layout` (num_genes).
    """

    config: Any
    layout: encoding.Layout
    corner_colors: ClassVar[bool] = False
    warms_up: ClassVar[bool] = False

    def strategy(self):
        """(evosax DE, its params) for this config."""
        c = self.config
        return make_strategy(
            self.layout.num_genes, c.population, c.strategy, c.mutation, c.crossover
        )

    def warmup_steps(self) -> int:
        return 0

    def init(self, has_region) -> State:
        s, pop, d = has_region.shape[0], self.config.population, self.layout.num_genes
        de, params = self.strategy()
        return State(
            jax.vmap(de.init, (0, 0, 0, None))(
                jax.random.split(jax.random.key(0), s),
                jnp.zeros((s, pop, d)),
                jnp.zeros((s, pop)),
                params,
            )
        )

    def ask(self, keys, lookup, state: State, slots, first=None):
        """The initial population where fresh (`first()` [S, P, D] when given, as the
        scan's seeds; else `initial_population` with config.init), else the trial one."""
        cfg, s, d = self.config, slots.fresh.shape[0], self.layout.num_genes

        def draw():
            if first is not None:
                return first()
            return jax.vmap(initial_population, (0, None, None, None))(
                keys[:, 0], cfg.population, d, cfg.init
            )

        # Initial populations are drawn only when some slot needs one (a real branch).
        initial = jax.lax.cond(slots.fresh.any(), draw, lambda: jnp.zeros((s, cfg.population, d)))
        de, params = self.strategy()
        trial, _ = jax.vmap(de.ask, (0, 0, None))(keys[:, 0], state.de, params)
        trial = jax.vmap(keep_in_bounds)(keys[:, 1], trial)
        return jnp.where(slots.fresh[:, None, None], initial, trial), None

    def tell(self, told: Told, proposal, state: State):
        """evosax's init where the slot was fresh, its tell where live, else unchanged."""
        de, params = self.strategy()
        started = jax.vmap(de.init, (0, 0, 0, None))(
            told.keys[:, 1], told.genes, told.score, params
        )
        updated, _ = jax.vmap(de.tell, (0, 0, 0, 0, None))(
            told.keys[:, 2], told.genes, told.score, state.de, params
        )
        fresh, live = told.slots.fresh, told.slots.live
        new = jax.tree.map(
            lambda a, b, c: where_rows(fresh, a, where_rows(live, b, c)),
            started,
            updated,
            state.de,
        )
        return State(new), *nothing(told)


def make_strategy(
    num_genes: int,
    population: int,
    strategy: str,
    mutation: tuple[float, float],
    crossover: float,
):
    """evosax DE for candidates of `num_genes` genes, and its params.

    best1bin: the base vector is the population's best (evosax's `elitism`);
    rand1bin: a random member. F is drawn from U[lo, hi) once per generation
    (dithering), or fixed when lo == hi; CR is the binomial crossover rate.
    """
    check_evosax()
    de = SkipSamplingDE(population_size=population, solution=jnp.zeros(num_genes))
    lo, hi = mutation
    params = de.default_params.replace(
        elitism=strategy == "best1bin",
        crossover_rate=crossover,
        differential_weight=lo,
        differential_weight_min=lo,
        differential_weight_max=hi,
    )
    return de, params


class SkipSamplingDE(DifferentialEvolution):
    """evosax's DE with the donor indices drawn in O(1) per member.

    evosax draws each member's base and difference vectors with
    `jax.random.choice(..., p=mask)` over the whole population: O(P) random numbers per
    member, O(P^2) per generation. At P = 400 that cost about 6% of a 20 MFLOP CNN's
    time in the fused attack (benchmarks/README.md). Here each index is one
    `randint` over the members still allowed, shifted past the excluded ones in
    ascending order: the same distribution (uniform over distinct members, none equal
    to the member itself or to the base vector).

    Because the donor draw sits inside evosax's `_ask`, `_ask` is written out again
    here, following evosax 0.3's DE/x/1/bin step by step with new code: the same
    dithering (F ~ U[lo, hi) once per generation from the same folded key, else the
    fixed F), base vector (best with `elitism`, else random), mutation
    x_a + F (x_b - x_c) and binomial crossover with one forced gene. The random
    numbers differ from evosax's, not their distribution. `init`, `tell` and fitness
    shaping are evosax's own. Only one difference vector is supported (`num_diff`=1).
    `check_evosax` (run by `make_strategy`) refuses an evosax whose private interface
    differs from the one this override was tested against.
    """

    def __init__(self, population_size: int, solution, num_diff: int = 1, **kwargs):
        if num_diff != 1:
            raise ValueError(f"num_diff must be 1 (DE/x/1 only), got {num_diff!r}")
        super().__init__(population_size, solution, num_diff=num_diff, **kwargs)

    def _ask(self, key, state, params):
        size, dims = self.population_size, self.num_dims
        best = jnp.argmin(state.fitness)
        dither_key = jax.random.fold_in(key, size)
        weight = jax.lax.cond(
            params.differential_weight_min < params.differential_weight_max,
            lambda k: jax.random.uniform(
                jax.random.fold_in(k, state.generation_counter),
                minval=params.differential_weight_min,
                maxval=params.differential_weight_max,
            ),
            lambda _: jnp.asarray(params.differential_weight, jnp.float32),
            dither_key,
        )

        def member(key, i):
            key_a, key_b, key_c, key_cross, key_r = jax.random.split(key, 5)
            a = jnp.where(params.elitism, best, draw_excluding(key_a, size, jnp.stack([i])))
            b = draw_excluding(key_b, size, jnp.stack([i, a]))
            c = draw_excluding(key_c, size, jnp.stack([i, a, b]))
            population = state.population
            mutant = population[a] + weight * (population[b] - population[c])
            forced = jax.nn.one_hot(jax.random.randint(key_r, (), 0, dims), dims, dtype=bool)
            cross = (jax.random.uniform(key_cross, (dims,)) < params.crossover_rate) | forced
            return jnp.where(cross, mutant, population[i])

        keys = jax.random.split(key, size)
        return jax.vmap(member)(keys, jnp.arange(size)), state


@functools.cache
def check_evosax() -> None:
    """RuntimeError, naming the installed evosax, unless its DE has the private interface
    SkipSamplingDE relies on: `_ask(key, state, params)`, called by `ask`, a state with
    population, fitness and generation_counter, params with the dithering fields."""
    needs = {
        "DifferentialEvolution._ask(self, key, state, params)": list(
            inspect.signature(getattr(DifferentialEvolution, "_ask", lambda: 0)).parameters
        )
        == ["self", "key", "state", "params"],
        "ask calling self._ask": "self._ask(" in _source(DifferentialEvolution.ask),
    }
    for cls, fields in (
        (evosax_de.State, ("population", "fitness", "generation_counter")),
        (evosax_de.Params, ("elitism", "crossover_rate", "differential_weight",
                            "differential_weight_min", "differential_weight_max")),
    ):  # fmt: skip
        have = {f.name for f in dataclasses.fields(cls)}
        needs[f"{cls.__qualname__} fields {fields}"] = set(fields) <= have
    missing = [name for name, ok in needs.items() if not ok]
    if missing:
        raise RuntimeError(
            f"evosax {importlib.metadata.version('evosax')} changed the private DE interface "
            f"rpx.search.de.SkipSamplingDE overrides (tested: evosax{TESTED_EVOSAX}); "
            f"missing: {'; '.join(missing)}"
        )


def _source(fn) -> str:
    try:
        return inspect.getsource(inspect.unwrap(fn))
    except (OSError, TypeError):  # no source shipped: trust the other checks
        return "self._ask("


def draw_excluding(key: jax.Array, n, excluded: jax.Array) -> jax.Array:
    """A uniform int32 in [0, n) not in `excluded` (int [E]; repeats allowed, entries >= n
    ignored, e.g. padding); n when every value is excluded."""
    e = jnp.sort(excluded)
    distinct = (e < n) & jnp.concatenate([jnp.ones(1, bool), e[1:] != e[:-1]])
    e = jnp.sort(jnp.where(distinct, e, jnp.iinfo(e.dtype).max))
    index = jax.random.randint(key, (), 0, jnp.maximum(n - distinct.sum(), 1))
    # The index-th value not excluded: index plus the excluded values at or below it,
    # which are the sorted e_i with e_i - i <= index (e_i - i never decreases).
    return (index + jnp.sum(e - jnp.arange(e.shape[0]) <= index)).astype(jnp.int32)


def initial_population(key: jax.Array, population: int, num_genes: int, init: str) -> jax.Array:
    """[P, D] genes in [0, 1): latin hypercube ("lhs", also the fill after a "scan") or
    independent uniform ("uniform")."""
    if init == "uniform":
        return jax.random.uniform(key, (population, num_genes))
    # Latin hypercube: each gene's P values fall one into each of P equal strata.
    perm_key, jitter_key = jax.random.split(key)
    strata = jax.vmap(lambda k: jax.random.permutation(k, population))(
        jax.random.split(perm_key, num_genes)
    ).T
    jitter = jax.random.uniform(jitter_key, (population, num_genes))
    return jnp.minimum((strata + jitter) / population, BELOW_ONE)


def keep_in_bounds(key: jax.Array, genes: jax.Array) -> jax.Array:
    """genes [..., D] with every value outside [0, 1) redrawn from U[0, 1).

    evosax's DE does not bound its mutants (x_best + F * (x_b - x_c) can leave the
    box). Redrawing out-of-bound genes is what scipy's differential_evolution, and so
    the public one-pixel attacks, do; clipping instead would pile candidates onto the
    image border and the colour cube's faces, biasing the search.
    """
    fresh = jax.random.uniform(key, genes.shape, genes.dtype)
    inside = (genes >= 0.0) & (genes < 1.0)
    return jnp.where(inside, genes, fresh)
