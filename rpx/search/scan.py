"""The corner scan that seeds DE (`AttackConfig(init="scan")`).

Before its DE starts, an image tries every pixel its candidates can pick times the 2**C
corners of the colour cube, `population` (pixel, corner) pairs per step of the fused
loop, in the order `rpx.encoding.search_pixel_genes` numbers the pixels, corners in
`rpx.pixel_map.corner_colors` order. One-pixel attacks almost always land on a corner,
so the scan alone often succeeds; it stops at the first step holding a success. Else
it keeps a running top-`population` of its candidates, and DE starts from them.

The scan's candidates are DE genes (one pixel, repeated in all k slots, so it changes
one pixel): colour genes 0 and the largest float32 below 1 decode to lo and hi (exactly
for integer images, within (hi - lo) * 2**-24 of hi for float ones), so the seeds are
exactly the candidates the scan evaluated. `ScanFirst` is the scan as a warm-up phase
of another search (`rpx.search`): the registry wraps DE in it for init="scan".
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from rpx import encoding, evaluate
from rpx.search import Told, de


@struct.dataclass
class State:
    """Per slot: at int32 [S], the next (pixel, corner) pair; genes float32 [S, P, G]
    (G = genes per pixel), the best single-pixel candidates so far, best first; keys
    float32 [S, P], their `evaluate.rank` (inf: none); inner: the seeded search's State."""

    at: jax.Array
    genes: jax.Array
    keys: jax.Array
    inner: Any


@dataclasses.dataclass(frozen=True)
class ScanFirst:
    """The corner scan as the warm-up of `inner` (a search whose `ask` takes `first`,
    the initial population: DE), which starts from the scan's best candidates."""

    inner: Any
    config: Any
    layout: encoding.Layout
    warms_up: ClassVar[bool] = True

    @property
    def corner_colors(self) -> bool:
        return self.inner.corner_colors

    def warmup_steps(self) -> int:
        """Steps of the longest scan: every pixel of the image times 2**C corners."""
        layout = self.layout
        pairs = layout.height * layout.width * 2**layout.channels
        return -(-pairs // self.config.population)

    def init(self, has_region) -> State:
        """Every slot at its first pair (the slot machine marks those with a region
        `warming`)."""
        s, pop = has_region.shape[0], self.config.population
        return State(
            at=jnp.zeros((s,), jnp.int32),
            genes=jnp.zeros((s, pop, self.layout.genes_per_pixel), jnp.float32),
            keys=jnp.full((s, pop), jnp.inf, jnp.float32),
            inner=self.inner.init(has_region),
        )

    def ask(self, keys, lookup, state: State, slots):
        """The scan's next `population` pairs where warming, else the inner search's
        population (its initial one seeded by `seed_population`)."""
        layout, pop = self.layout, self.config.population

        def first():  # the inner search starts from the scan's best candidates
            seed = lambda key, g, v: seed_population(key, layout, pop, g, v)  # noqa: E731
            return jax.vmap(seed)(keys[:, 0], state.genes, state.keys)

        genes, inner = self.inner.ask(keys, lookup, state.inner, slots, first=first)
        pairs = jax.vmap(lambda c, r: total(layout, c, r))(lookup.count, lookup.region)
        s, d, g = genes.shape[0], layout.num_genes, layout.genes_per_pixel
        warming = slots.warming
        scan_genes, singles, real = jax.lax.cond(
            warming.any(),
            lambda: jax.vmap(lambda a, c, r: candidates(layout, a, pop, c, r))(
                state.at, lookup.count, lookup.region
            ),
            lambda: (jnp.zeros((s, pop, d)), jnp.zeros((s, pop, g)), jnp.zeros((s, pop), bool)),
        )
        genes = jnp.where(warming[:, None, None], scan_genes, genes)
        return genes, (inner, singles, real, pairs)

    def tell(self, told: Told, proposal, state: State):
        """The inner search told; the scan's top-P merged with the step's pairs."""
        inner, singles, real, pairs = proposal
        inner_state, _, _ = self.inner.tell(told, inner, state.inner)
        scan_keys = jnp.where(real, evaluate.rank(told.score, told.hit), jnp.inf)
        return tell(state.replace(inner=inner_state), told.slots.warming, singles, scan_keys, pairs)


def total(layout: encoding.Layout, count, region):
    """int32 []: the number of (pixel, corner) pairs of one image's scan."""
    return encoding.search_pixel_count(layout, count, region) * 2**layout.channels


def candidates(layout: encoding.Layout, at, population: int, count, region):
    """The scan's step from pair `at` (int []) for one image (`Lookup` row count, region).

    Returns:
      (genes float32 [P, D], singles float32 [P, G], real bool [P]): the candidates
      (one pixel repeated in the k slots), that pixel's genes, and which are real pairs
      (False: padding past the last pair, repeating it).
    """
    c, k = layout.channels, layout.pixels
    pairs = total(layout, count, region)
    t = at + jnp.arange(population)
    real = t < pairs
    t = jnp.minimum(t, jnp.maximum(pairs - 1, 0))
    pixel, corner = t // 2**c, t % 2**c
    coord = encoding.search_pixel_genes(layout, pixel, count, region)
    # Channel 0 is the most significant bit, as in rpx.pixel_map.corner_colors.
    bits = (corner[:, None] >> jnp.arange(c - 1, -1, -1)) & 1
    color = jnp.where(bits == 1, de.BELOW_ONE, 0.0).astype(jnp.float32)
    singles = jnp.concatenate([coord, color], axis=-1)
    return jnp.tile(singles, (1, k)), singles, real


def tell(state: State, on, singles, keys, pairs) -> tuple[State, jax.Array, jax.Array]:
    """The scan after a step of every scanning slot.

    Args:
      on: bool [S], the scanning slots. singles: float32 [S, P, G], the step's
        single-pixel genes; keys: float32 [S, P], their `evaluate.rank` (inf for
        padding); pairs: int32 [S], each slot's `total`.

    Returns:
      (state, counted int32 [S], exhausted bool [S]): the running top-P merged with the
      step's candidates and `at` advanced, for scanning slots only; the real pairs the
      step evaluated; and whether the scan has now tried every pair (scanning slots).
    """
    p = state.keys.shape[1]
    merged_keys = jnp.concatenate([state.keys, keys], axis=1)
    merged_genes = jnp.concatenate([state.genes, singles], axis=1)
    # top_k keeps the lower index first among equal keys: earlier pairs win ties.
    neg, best = jax.lax.top_k(-merged_keys, p)
    top_genes = jnp.take_along_axis(merged_genes, best[..., None], axis=1)
    at = state.at + p
    new = state.replace(
        at=jnp.where(on, at, state.at),
        genes=jnp.where(on[:, None, None], top_genes, state.genes),
        keys=jnp.where(on[:, None], -neg, state.keys),
    )
    counted = jnp.where(on, jnp.clip(pairs - state.at, 0, p), 0)
    return new, counted, on & (at >= pairs)


def seed_population(key, layout: encoding.Layout, population: int, singles, keys):
    """DE's initial population for one image after a scan that found no success.

    Args:
      key: a PRNG key (for the latin-hypercube fill). singles: float32 [P, G], keys:
        float32 [P], the scan's best single-pixel candidates, best first (`State`).

    Returns:
      float32 [P, D]. k = 1: the scan's best candidates, best first. k > 1: the best
      distinct pixels q_0, q_1, ... (each with its best corner), candidate j changing
      q_j .. q_{j+k-1}. Rows the scan cannot fill (too few candidates or pixels, or
      non-finite output) are the rows of a latin hypercube of the population's size.
    """
    k, cg = layout.pixels, layout.coordinate_genes
    valid = jnp.isfinite(keys)
    fill = de.initial_population(key, population, layout.num_genes, "lhs")
    if k == 1:
        return jnp.where(valid[:, None], singles, fill)
    # A pixel's first (best) candidate: no better-ranked valid one has its coordinates.
    coord = singles[:, :cg]
    same = (coord[:, None, :] == coord[None, :, :]).all(-1)
    earlier = jnp.tril(jnp.ones((population, population), bool), -1)
    first = valid & ~(same & earlier & valid[None, :]).any(-1)
    distinct = singles[jnp.argsort(~first, stable=True)]
    j = jnp.arange(population)[:, None] + jnp.arange(k)[None, :]
    seeds = distinct[jnp.minimum(j, population - 1)].reshape(population, layout.num_genes)
    return jnp.where((j[:, -1] < first.sum())[:, None], seeds, fill)
