"""Exact intervals and tests for counts of images (the corner study's shares).

A share of images (k of n fooled) is a binomial count: its interval is Clopper-Pearson's,
which never collapses to a point (0 of 500 gives [0, 0.7%], not [0, 0]), unlike a
percentile bootstrap over images.

A paired difference of two shares over the same images, p_a - p_b, depends only on the
discordant images: a_only (a fooled, b not) and b_only. With delta the chance that an
image is discordant and theta the chance that a discordant image is a_only,
p_a - p_b = delta (2 theta - 1). Given the number d of discordant images, a_only is
binomial(d, theta) (the conditional binomial of McNemar's test), so

- `paired`'s p value is the exact McNemar test of p_a = p_b (theta = 1/2): twice the
  smaller binomial(d, 1/2) tail, at most 1;
- its interval is exact and conservative: Clopper-Pearson intervals for delta (d of n)
  and theta (a_only of d; [0, 1] when d = 0), each at level 1 - (1 - LEVEL) / 2 so that
  both hold together with probability >= LEVEL (Bonferroni), and the range of
  delta (2 theta - 1) over both. It never collapses to a point either.

`holm` adjusts a family of p values (Holm's step-down), and `at_least_one` is the exact
chance that a random subset (drawn without replacement) holds a marked item: the
expectation of the size-matched background control over all its draws.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

LEVEL = 0.95


def clopper_pearson(count: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper-Pearson) central `level` interval of a binomial share count/n;
    (nan, nan) when n = 0."""
    count, n = int(count), int(n)
    if not 0 <= count <= n:
        raise ValueError(f"count {count} outside [0, {n}]")
    if n == 0:
        return float("nan"), float("nan")
    alpha = 1 - level
    low = 0.0 if count == 0 else float(stats.beta.ppf(alpha / 2, count, n - count + 1))
    high = 1.0 if count == n else float(stats.beta.ppf(1 - alpha / 2, count + 1, n - count))
    return low, high


def share(flags) -> dict:
    """{count, estimate, low, high} of the share of True in bool [N] (Clopper-Pearson)."""
    flags = np.asarray(flags, bool)
    count, n = int(flags.sum()), flags.size
    low, high = clopper_pearson(count, n)
    return dict(count=count, estimate=count / n if n else float("nan"), low=low, high=high)


def mcnemar_p(a_only: int, b_only: int) -> float:
    """The exact two-sided McNemar p value of a_only vs b_only discordant pairs."""
    d = int(a_only) + int(b_only)
    if d == 0:
        return 1.0
    return float(min(1.0, 2 * stats.binom.cdf(min(a_only, b_only), d, 0.5)))


def paired(a, b) -> dict:
    """The paired difference of the shares of bool [N] a and b over the same images:
    {estimate, low, high (module docstring), a_only, b_only, p (exact McNemar)}."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired flags must be two [N] arrays, got {a.shape} and {b.shape}")
    n = a.size
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    d = a_only + b_only
    if n == 0:
        nan = float("nan")
        return dict(estimate=nan, low=nan, high=nan, a_only=0, b_only=0, p=1.0)
    each = 1 - (1 - LEVEL) / 2
    delta = clopper_pearson(d, n, each)
    theta = clopper_pearson(a_only, d, each) if d else (0.0, 1.0)
    # delta (2 theta - 1) is monotone in each: its range lies at the box's corners.
    corners = [dl * (2 * t - 1) for dl in delta for t in theta]
    return dict(
        estimate=(a_only - b_only) / n,
        low=float(min(corners)),
        high=float(max(corners)),
        a_only=a_only,
        b_only=b_only,
        p=mcnemar_p(a_only, b_only),
    )


def holm(p) -> list[float]:
    """Holm's step-down adjusted p values of the family `p` (in the given order)."""
    p = np.asarray(p, np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def at_least_one(population, marked, draws) -> np.ndarray:
    """float [N]: the chance that `draws` items drawn without replacement from
    `population` items, `marked` of them marked, include a marked one (hypergeometric:
    1 - C(population - marked, draws) / C(population, draws)); int arrays [N]."""
    population, marked, draws = (np.asarray(x, np.int64) for x in (population, marked, draws))
    if (marked > population).any() or (draws > population).any() or (marked < 0).any():
        raise ValueError("need 0 <= marked <= population and draws <= population")
    with np.errstate(invalid="ignore"):
        chance = np.asarray(stats.hypergeom.sf(0, population, marked, draws), np.float64)
    return np.where((draws == 0) | (marked == 0), 0.0, chance)  # scipy: nan for 0 of 0
