"""The searches `rpx.slots` runs, one module each, and the registry naming them.

Each search is a static object with init / ask / tell over all slots and a State of its
own: `de.DE` (differential evolution on evosax, the paper's), `sparse_rs.SparseRS`
(random search over k (pixel, corner) pairs) and `scan.ScanFirst` (the corner scan, a
warm-up phase that seeds DE). Adding a search is one module and one line in SEARCH_TYPES
(or WARMUP_TYPES for an init that runs first).

The protocol between the slot machine (`rpx.slots`) and a search, defined here: a
search is a static, hashable object (part of the jit key) built from the
`AttackConfig` and the `encoding.Layout`, whose methods work on all S slots at once:

    state = search.init(has_region)                 # its own flax.struct State, [S, ...]
    genes, proposal = search.ask(keys, lookup, state, slots)     # genes [S, P, D]
    # ... the slot machine evaluates and scores genes, keeps each slot's best ...
    state, counted, warmed = search.tell(told, proposal, state)

`slots` is the slot machine's own state (fresh, live, warming bool [S], evaluated int32
[S], best_genes [S, D]); `keys` [S, 3] are each slot's keys for this step, derived from
(key, image index, populations evaluated) alone. A search that runs a phase of its own
before its first population (the corner scan of init="scan") sets `warms_up`: its slots
start `warming`, each step's queries are its `counted` and not a population, and a
slot whose phase ends (`warmed`) without a success becomes fresh. Others return zeros.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Told:
    """What one step found, for `tell`: keys [S, 3]; genes [S, P, D], the population
    evaluated; score float32 [S, P] (`evaluate.score_and_hit`; inf for inactive slots)
    and hit bool [S, P]; best int [S], each slot's best candidate of the step; better
    bool [S], whether it became the slot's best so far; success bool [S], the slots that
    have now succeeded; slots: the slot machine's state before the step."""

    keys: jax.Array
    genes: jax.Array
    score: jax.Array
    hit: jax.Array
    best: jax.Array
    better: jax.Array
    success: jax.Array
    slots: Any


class Search(Protocol):
    """What `rpx.slots` needs of a search (see the module docstring)."""

    # Candidates' colour genes stand for corners of the colour cube (`encoding.Layout`).
    corner_colors: ClassVar[bool]
    # Slots start in a phase of the search's own before the first population.
    warms_up: ClassVar[bool]

    def warmup_steps(self) -> int:
        """Steps the warm-up phase takes at most (0 without one)."""

    def init(self, has_region: jax.Array) -> Any:
        """The state of S slots, has_region bool [S]."""

    def ask(self, keys, lookup, state, slots) -> tuple[jax.Array, Any]:
        """(genes [S, P, D], proposal): the next population of every slot (rows of
        inactive slots unused), and what `tell` needs to know about it."""

    def tell(self, told: Told, proposal, state) -> tuple[Any, jax.Array, jax.Array]:
        """(state, counted int32 [S], warmed bool [S]) after the step."""


def nothing(told: Told) -> tuple[jax.Array, jax.Array]:
    """(counted, warmed) of a search without a warm-up phase: zeros."""
    s = told.best.shape[0]
    return jnp.zeros((s,), jnp.int32), jnp.zeros((s,), bool)


def where_rows(rows, new, old):
    """new where rows [S] else old, for arrays [S, ...]."""
    return jnp.where(rows.reshape(rows.shape + (1,) * (new.ndim - 1)), new, old)


def row(a, m):
    """a[s, m[s]] for a [S, P, ...] and m int [S]."""
    return jnp.take_along_axis(a, m[:, None, None], axis=1)[:, 0]


# The searches import the protocol above from this partly initialised module.
from rpx.search import de, scan, sparse_rs  # noqa: E402
from rpx.search.de import STRATEGIES  # noqa: E402

# AttackConfig.search -> the search.
SEARCH_TYPES = {"de": de.DE, "sparse_rs": sparse_rs.SparseRS}
# AttackConfig.init values that run a phase of their own before the search, which they
# seed (its `ask` takes `first`); other inits are the search's own (DE's "lhs", "uniform").
WARMUP_TYPES = {"scan": scan.ScanFirst}
# Searches whose initial population a warm-up may seed.
SEEDABLE = ("de",)

SEARCHES = tuple(SEARCH_TYPES)
INITS = ("lhs", "uniform", *WARMUP_TYPES)


def make(config, layout) -> Search:
    """The search `config` (an `AttackConfig`) asks for, over candidates of `layout`."""
    search = SEARCH_TYPES[config.search](config, layout)
    warmup = WARMUP_TYPES.get(config.init)
    return search if warmup is None else warmup(search, config, layout)


def corner_colors(config) -> bool:
    """Whether the search's colour genes stand for corners of the colour cube (the
    `encoding.Layout` its candidates are decoded with)."""
    return SEARCH_TYPES[config.search].corner_colors


__all__ = [
    "INITS",
    "SEARCHES",
    "SEARCH_TYPES",
    "SEEDABLE",
    "STRATEGIES",
    "WARMUP_TYPES",
    "Search",
    "Told",
    "corner_colors",
    "de",
    "make",
    "scan",
    "sparse_rs",
]
