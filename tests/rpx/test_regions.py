import jax.numpy as jnp
import numpy as np
import pytest

from rpx import regions


def test_named_regions_split_the_image():
    foreground = np.zeros((2, 4, 5), bool)
    foreground[:, 1:3, 2:4] = True
    np.testing.assert_array_equal(regions.mask("foreground", foreground), foreground)
    np.testing.assert_array_equal(regions.mask("background", foreground), ~foreground)
    assert regions.mask("original", foreground).all()
    assert isinstance(regions.mask("background", jnp.asarray(foreground)), type(jnp.zeros(1)))


@pytest.mark.parametrize(
    "name, foreground, message",
    [
        ("middle", np.zeros((4, 4), bool), "region name"),
        ("foreground", np.zeros((4, 4), np.uint8), "bool"),
        ("foreground", np.zeros((4,), bool), "shape"),
    ],
)
def test_named_regions_reject_bad_input(name, foreground, message):
    with pytest.raises(ValueError, match=message):
        regions.mask(name, foreground)


@pytest.mark.parametrize("order", ["row_major", "hilbert"])
def test_index_table_lists_exactly_the_allowed_pixels(order):
    rng = np.random.default_rng(0)
    region = rng.random((3, 6, 7)) < 0.3
    region[2] = False
    table, count = regions.index_table(jnp.asarray(region), order)
    for n in range(3):
        allowed = np.flatnonzero(region[n].reshape(-1))
        assert count[n] == allowed.size
        assert sorted(np.asarray(table[n, : count[n]]).tolist()) == allowed.tolist()
    if order == "row_major":
        first = np.asarray(table[0, : count[0]])
        assert (np.diff(first) > 0).all()


def test_hilbert_order_steps_between_neighbouring_pixels():
    rank = regions.hilbert_rank(8, 8)
    order = np.argsort(rank)
    rows, cols = np.divmod(order, 8)
    steps = np.abs(np.diff(rows)) + np.abs(np.diff(cols))
    assert (steps == 1).all()
    assert sorted(regions.hilbert_rank(5, 3).tolist()) == list(range(15))


def test_nearest_allowed_matches_brute_force():
    rng = np.random.default_rng(1)
    region = rng.random((4, 9, 6)) < 0.15
    region[0] = False
    region[0, 8, 0] = True
    nearest = np.asarray(regions.nearest_allowed(jnp.asarray(region)))
    rr, cc = np.divmod(np.arange(54), 6)
    for n in range(4):
        allowed = np.flatnonzero(region[n].reshape(-1))
        if allowed.size == 0:
            continue
        d2 = (rr[:, None] - rr[allowed][None]) ** 2 + (cc[:, None] - cc[allowed][None]) ** 2
        chosen = nearest[n]
        assert region[n].reshape(-1)[chosen].all()
        np.testing.assert_array_equal(
            d2[np.arange(54), np.searchsorted(allowed, chosen)], d2.min(1)
        )
        np.testing.assert_array_equal(chosen[allowed], allowed)  # allowed map to themselves


def test_broadcast_shapes():
    assert regions.broadcast(None, 2, 3, 4).shape == (2, 3, 4)
    shared = np.eye(3, 4, dtype=bool)
    out = regions.broadcast(shared, 2, 3, 4)
    np.testing.assert_array_equal(out[1], shared)
