"""Sparse-RS inside a region: random search over k (pixel, corner colour) pairs.

Sparse-RS (Croce et al., "Sparse-RS: a versatile framework for query-efficient sparse
black-box adversarial attacks", AAAI 2022; fra31/sparse-rs) keeps one current set of k
perturbed pixels, each set to a corner of the colour cube. A proposal moves a few of
them: it drops m of the k pixels (they return to the clean image) and adds m pixels not
in the set, with new random corners. The proposal replaces the current set when it
improves the fitness. m starts at p_init * k and shrinks on a fixed schedule of the
share of the budget spent, never below one pixel.

Here every image proposes `population` changes of its current set per generation (one
batch for the classifier) and keeps the best of them if it improves; pixels are drawn
uniformly from the pixels its candidates can pick (`rpx.encoding.search_pixel_genes`),
so every proposal lies in the region. Candidates are genes decoded by
`rpx.encoding.decode` with `Layout.corner_colors`: colour genes 0.25 and 0.75 stand
for lo and hi. Nothing here knows about classifiers. `SparseRS` is the search the slot
machine runs (`rpx.search`): the current set is the slot's best candidate so far
(the slot machine's best_genes), its State the numbers of that set's pixels; `tell`
moves them to the step's best proposal where it became the best.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rpx import encoding
from rpx.search import Told, de, nothing, row

# Sparse-RS's L0 schedule (rs_attacks.py, p_selection): on iteration `it` of 10,000
# (the budget rescaled to 10,000), the share is p_init / DIVISORS[number of THRESHOLDS
# below it]: p_init at the start, p_init / 2 up to 50, ... p_init / 20 after 8,000.
THRESHOLDS = (0, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
DIVISORS = (1, 2, 4, 5, 6, 8, 10, 12, 15, 20)
# A large rank: an empty entry of an exclusion list (ranks are below H*W).
_NONE = 2**30


@struct.dataclass
class State:
    """ranks int32 [S, k]: the numbers (`encoding.search_pixel_genes`) of the pixels of
    each slot's current set."""

    ranks: jax.Array


@dataclasses.dataclass(frozen=True)
class SparseRS:
    """Sparse-RS over S slots (see `rpx.search` for the protocol).

    config: the `AttackConfig` (pixels, population, generations, p_init); layout: the
    `encoding.Layout` (with corner_colors).
    """

    config: Any
    layout: encoding.Layout
    corner_colors: ClassVar[bool] = True
    warms_up: ClassVar[bool] = False

    def warmup_steps(self) -> int:
        return 0

    def init(self, has_region) -> State:
        return State(jnp.zeros((has_region.shape[0], self.config.pixels), jnp.int32))

    def ask(self, keys, lookup, state: State, slots):
        """Random k-sets where fresh, else `population` proposals around the current set
        (each slot's best_genes), moving the schedule's number of pixels; the proposals'
        ranks int32 [S, P, k] are the proposal `tell` takes."""
        cfg, layout, pop, k = self.config, self.layout, self.config.population, self.config.pixels
        s, d = slots.fresh.shape[0], layout.num_genes
        # Initial populations are drawn only when some slot needs one (a real branch).
        first, first_ranks = jax.lax.cond(
            slots.fresh.any(),
            lambda: jax.vmap(lambda key, c, r: initial(key, layout, pop, c, r))(
                keys[:, 0], lookup.count, lookup.region
            ),
            lambda: (jnp.zeros((s, pop, d)), jnp.zeros((s, pop, k), jnp.int32)),
        )
        counts = jnp.asarray(resample_counts(cfg.generations, cfg.p_init, k))
        moves = counts[jnp.minimum(slots.evaluated, cfg.generations)]
        trial, ranks = jax.vmap(
            lambda key, g, r, m, c, reg: propose(key, layout, pop, g, r, m, c, reg)
        )(keys[:, 0], slots.best_genes, state.ranks, moves, lookup.count, lookup.region)
        fresh = slots.fresh[:, None, None]
        return jnp.where(fresh, first, trial), jnp.where(fresh, first_ranks, ranks)

    def tell(self, told: Told, ranks, state: State):
        """The best proposal's pixels where it became the slot's best."""
        new = jnp.where(told.better[:, None], row(ranks, told.best), state.ranks)
        return State(new), *nothing(told)


def resample_counts(generations: int, p_init: float, pixels: int) -> np.ndarray:
    """int32 [generations + 1]: pixels resampled by the proposals of each generation.

    Generation g of generations + 1 (the initial population is g = 0) stands for
    Sparse-RS's iteration g of a budget of generations + 1 iterations, so the schedule
    is rescaled to the budget as Sparse-RS does (`resc_schedule`); m = max(floor(p * k),
    1) as in Sparse-RS. Computed in Python so floor never meets float32 rounding.
    """
    counts = []
    for g in range(generations + 1):
        it = int(g / (generations + 1) * 10000)
        share = p_init / DIVISORS[sum(it > t for t in THRESHOLDS)]
        counts.append(max(int(share * pixels), 1))
    return np.asarray(counts, np.int32)


def initial(key, layout: encoding.Layout, population: int, count, region):
    """A first population of random k-sets for one image.

    Args:
      key: a PRNG key. count int32 [], region bool [H*W]: the image's `Lookup` row.

    Returns:
      (genes float32 [P, D], ranks int32 [P, k]): each candidate k distinct pixels
      (fewer only when the image has fewer) numbered as `search_pixel_genes` numbers
      them, each with a random corner colour.
    """
    k = layout.pixels
    empty = jnp.full((k,), _NONE, jnp.int32)
    return propose(key, layout, population, jnp.zeros(layout.num_genes), empty, k, count, region)


def propose(key, layout: encoding.Layout, population: int, genes, ranks, m, count, region):
    """`population` proposals around one image's current set.

    Args:
      key: a PRNG key. genes: float32 [D], the current set; ranks: int32 [k], the
        numbers of its pixels (`search_pixel_genes`); m: int [], how many of its pixels
        each proposal moves (all k when m >= k). count, region: the `Lookup` row.

    Returns:
      (genes float32 [P, D], ranks int32 [P, k]): each proposal moves m random pixels
      of the set to m pixels drawn uniformly from the ones not in it (distinct while
      the image has enough), each with a new random corner; the other pixels keep
      their positions and colours.
    """
    k, c, cg = layout.pixels, layout.channels, layout.coordinate_genes
    n = encoding.search_pixel_count(layout, count, region)
    moved, new_ranks, corners = jax.vmap(lambda key: _move(key, ranks, m, n, c))(
        jax.random.split(key, population)
    )
    coord = encoding.search_pixel_genes(layout, new_ranks, count, region)  # [P, k, cg]
    color = jnp.where(corners, 0.75, 0.25).astype(jnp.float32)
    fresh = jnp.concatenate([coord, color], axis=-1)
    current = genes.reshape(k, cg + c)
    out = jnp.where(moved[..., None], fresh, current[None])
    return out.reshape(population, layout.num_genes), new_ranks


def _move(key, ranks, m, n, channels):
    """(moved bool [k], ranks int32 [k], corners bool [k, C]) of one proposal."""
    k = ranks.shape[0]
    pick_key, draw_key, color_key = jax.random.split(key, 3)
    # m random slots of the k: those whose position in a random order is below m.
    order = jnp.argsort(jax.random.uniform(pick_key, (k,)))
    moved = jnp.zeros(k, bool).at[order].set(jnp.arange(k) < m)
    # New pixels avoid the current set and each other: drawn one slot at a time, each
    # added to the exclusion list (the current ranks, then the new ones).
    excluded = jnp.concatenate([ranks, jnp.full((k,), _NONE, jnp.int32)])

    def draw(j, carry):
        ranks, excluded = carry
        free_key, any_key = jax.random.split(jax.random.fold_in(draw_key, j))
        r = de.draw_excluding(free_key, n, excluded)
        # Uniform over all n pixels when the set already holds them all.
        r = jnp.where(r < n, r, jax.random.randint(any_key, (), 0, jnp.maximum(n, 1)))
        r = jnp.where(moved[j], r, -1)
        excluded = excluded.at[k + j].set(jnp.where(moved[j], r, _NONE))
        return ranks.at[j].set(jnp.where(moved[j], r, ranks[j])), excluded

    ranks, _ = jax.lax.fori_loop(0, k, draw, (ranks, excluded))
    corners = jax.random.bernoulli(color_key, 0.5, (k, channels))
    return moved, ranks, corners
