"""The searches `rpx.slots` runs, one module each, and the registry naming them.

Each search is a static object with init / ask / tell over all slots and a State of its
own (`rpx.search.base` has the protocol): `de.DE` (differential evolution on evosax,
the paper's), `sparse_rs.SparseRS` (random search over k (pixel, corner) pairs) and
`scan.ScanFirst` (the corner scan, a warm-up phase that seeds DE). Adding a search is
one module and one line in SEARCH_TYPES (or WARMUP_TYPES for an init that runs first).
"""

from __future__ import annotations

from rpx.search import base, de, scan, sparse_rs
from rpx.search.de import STRATEGIES

# AttackConfig.search -> the search.
SEARCH_TYPES = {"de": de.DE, "sparse_rs": sparse_rs.SparseRS}
# AttackConfig.init values that run a phase of their own before the search, which they
# seed (its `ask` takes `first`); other inits are the search's own (DE's "lhs", "uniform").
WARMUP_TYPES = {"scan": scan.ScanFirst}
# Searches whose initial population a warm-up may seed.
SEEDABLE = ("de",)

SEARCHES = tuple(SEARCH_TYPES)
INITS = ("lhs", "uniform", *WARMUP_TYPES)


def make(config, layout) -> base.Search:
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
    "base",
    "corner_colors",
    "de",
    "make",
    "scan",
    "sparse_rs",
]
