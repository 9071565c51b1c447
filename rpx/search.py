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
INITS = ("lhs", "uniform")


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
    de = DifferentialEvolution(population_size=population, solution=jnp.zeros(num_genes))
    lo, hi = mutation
    params = de.default_params.replace(
        elitism=strategy == "best1bin",
        crossover_rate=crossover,
        differential_weight=lo,
        differential_weight_min=lo,
        differential_weight_max=hi,
    )
    return de, params


def initial_population(key: jax.Array, population: int, num_genes: int, init: str) -> jax.Array:
    """[P, D] genes in [0, 1): latin hypercube ("lhs") or independent uniform."""
    if init == "uniform":
        return jax.random.uniform(key, (population, num_genes))
    # Latin hypercube: each gene's P values fall one into each of P equal strata.
    perm_key, jitter_key = jax.random.split(key)
    strata = jax.vmap(lambda k: jax.random.permutation(k, population))(
        jax.random.split(perm_key, num_genes)
    ).T
    jitter = jax.random.uniform(jitter_key, (population, num_genes))
    return jnp.minimum((strata + jitter) / population, _BELOW_ONE)


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


# The largest float32 below 1, so (stratum + jitter) / P never rounds up to 1.
_BELOW_ONE = float(jnp.nextafter(jnp.float32(1.0), jnp.float32(0.0)))
