"""The differential-evolution search: evosax's DE, set up as the one-pixel attacks use it.

Per image, per generation: `ask` (evosax DE mutation + binomial crossover), `keep_in_bounds`,
evaluate, `tell` (greedy one-to-one replacement). The fused loop in `rpx.attack` vmaps
these over images; nothing here knows about images or classifiers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from evosax.algorithms import DifferentialEvolution

STRATEGIES = ("best1bin", "rand1bin")
# "scan": DE starts from the corner scan's best candidates (`rpx.scan`), the rest LHS.
INITS = ("lhs", "uniform", "scan")
# "sparse_rs": random search over k (pixel, corner) pairs (`rpx.sparse_rs`).
SEARCHES = ("de", "sparse_rs")
# The largest float32 below 1 (genes lie in [0, 1)): (stratum + jitter) / P is capped
# there so it never rounds up to 1; `rpx.scan`'s colour gene that decodes to hi.
BELOW_ONE = float(jnp.nextafter(jnp.float32(1.0), jnp.float32(0.0)))


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
