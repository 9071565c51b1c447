"""experiments.corner_maps.exact against known answers: scipy's exact binomial interval, hand-
worked McNemar and Holm tables, brute-force enumeration of random subsets."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from experiments.corner_maps import exact as corner_exact


@pytest.mark.parametrize("count,n", [(0, 500), (1, 500), (13, 100), (65, 500), (99, 100), (7, 7)])
def test_clopper_pearson_is_scipys_exact_interval(count, n):
    expected = stats.binomtest(count, n).proportion_ci(0.95, method="exact")
    low, high = corner_exact.clopper_pearson(count, n)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)
    s = corner_exact.share(np.arange(n) < count)
    assert s == dict(count=count, estimate=count / n, low=low, high=high)


def test_clopper_pearson_edges():
    # 0 of n: [0, 1 - (alpha/2)^(1/n)], not a point.
    assert corner_exact.clopper_pearson(0, 500) == (0.0, pytest.approx(1 - 0.025 ** (1 / 500)))
    assert all(math.isnan(x) for x in corner_exact.clopper_pearson(0, 0))
    with pytest.raises(ValueError, match="outside"):
        corner_exact.clopper_pearson(3, 2)


def test_mcnemar_on_a_hand_worked_table():
    # 1 vs 9 discordant pairs: p = 2 P(X <= 1), X ~ binomial(10, 1/2) = 2 (1 + 10) / 1024.
    assert corner_exact.mcnemar_p(1, 9) == pytest.approx(22 / 1024)
    assert corner_exact.mcnemar_p(9, 1) == pytest.approx(22 / 1024)
    assert corner_exact.mcnemar_p(1, 9) == pytest.approx(stats.binomtest(1, 10).pvalue)
    assert corner_exact.mcnemar_p(0, 5) == pytest.approx(2 / 32)
    assert corner_exact.mcnemar_p(4, 4) == 1.0 and corner_exact.mcnemar_p(0, 0) == 1.0
    # The table: 30 images both fooled, 9 a only, 1 b only, 60 neither.
    a = np.array([1] * 30 + [1] * 9 + [0] * 1 + [0] * 60, bool)
    b = np.array([1] * 30 + [0] * 9 + [1] * 1 + [0] * 60, bool)
    d = corner_exact.paired(a, b)
    assert (d["a_only"], d["b_only"]) == (9, 1)
    assert d["estimate"] == pytest.approx(0.08) and d["p"] == pytest.approx(22 / 1024)
    # The interval: delta in CP(10 of 100), theta in CP(9 of 10), each at 97.5%.
    dl, dh = corner_exact.clopper_pearson(10, 100, 0.975)
    tl, th = corner_exact.clopper_pearson(9, 10, 0.975)
    assert d["low"] == pytest.approx(dl * (2 * tl - 1))
    assert d["high"] == pytest.approx(dh * (2 * th - 1))
    assert d["low"] < 0.08 < d["high"]


def test_a_paired_difference_without_discordant_images_is_no_point():
    same = np.arange(100) < 14
    d = corner_exact.paired(same, same)
    u = 1 - 0.0125 ** (1 / 100)  # the 97.5% Clopper-Pearson upper bound of 0 of 100
    assert d["estimate"] == 0.0 and d["p"] == 1.0
    assert d["low"] == pytest.approx(-u) and d["high"] == pytest.approx(u)
    with pytest.raises(ValueError, match="two"):
        corner_exact.paired(same, same[:50])


def test_the_paired_interval_covers_at_least_95_percent():
    rng = np.random.default_rng(0)
    n, p10, p01, p11 = 60, 0.08, 0.02, 0.1  # a: p11 + p10, b: p11 + p01
    truth = p10 - p01
    cells = rng.choice(4, (2000, n), p=[p11, p10, p01, 1 - p11 - p10 - p01])
    covered = 0
    for c in cells:
        d = corner_exact.paired((c == 0) | (c == 1), (c == 0) | (c == 2))
        covered += d["low"] <= truth <= d["high"]
    assert covered / len(cells) >= 0.95


def test_holm_on_a_hand_worked_family():
    # Sorted 0.01, 0.03, 0.04: 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06.
    assert corner_exact.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert corner_exact.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert corner_exact.holm([]) == []


def test_at_least_one_against_enumeration():
    marked = {0, 2, 5}
    for population in (6, 8):
        for draws in range(population + 1):
            subsets = list(itertools.combinations(range(population), draws))
            hit = sum(bool(marked & set(s)) for s in subsets) / len(subsets)
            got = corner_exact.at_least_one([population], [len(marked)], [draws])
            assert got[0] == pytest.approx(hit), (population, draws)
    # No marked item, no draw or an empty population: 0; every item marked: 1.
    got = corner_exact.at_least_one([5, 5, 0, 5], [0, 3, 0, 5], [3, 0, 0, 1])
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError):
        corner_exact.at_least_one([3], [4], [1])
