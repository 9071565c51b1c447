"""rpx.sparse_rs: the schedule, the proposals, and search="sparse_rs" on planted models."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rpx
from rpx import encoding
from rpx.search import sparse_rs
from tests.rpx import planted
from tests.rpx.planted import PATCH, in_patch
from tests.rpx.test_engine import assert_same, mixed_batch

ONE_PIXEL = planted.one_pixel_model(PATCH)
CONFIG = rpx.AttackConfig(population=24, generations=40, search="sparse_rs")
N = 4


def test_resample_counts_follow_sparse_rs_l0_schedule():
    # 10,000 iterations: no rescaling; Sparse-RS's p_selection gives p_init / divisor.
    counts = sparse_rs.resample_counts(9999, 0.3, 100)
    expected = {0: 30, 1: 15, 50: 15, 51: 7, 200: 7, 201: 6, 501: 5, 1001: 3, 2001: 3}
    expected |= {4001: 2, 6001: 2, 8001: 1, 9999: 1}
    assert {g: int(counts[g]) for g in expected} == expected
    # A budget of 100 populations is rescaled: generation 1 is iteration 100 of 10,000.
    assert sparse_rs.resample_counts(99, 0.3, 100)[1] == 7
    # Never fewer than one pixel, and never increasing.
    small = sparse_rs.resample_counts(40, 0.3, 3)
    assert (small == 1).all() and small.shape == (41,)
    assert (np.diff(counts) <= 0).all()


@pytest.mark.parametrize("name", encoding.ENCODINGS)
def test_proposals_move_m_pixels_to_new_distinct_region_pixels(name):
    region = np.random.default_rng(0).random((8, 8)) < 0.4
    layout = encoding.Layout(
        pixels=4, height=8, width=8, channels=3, encoding=name, restore=False,
        value_range=(0.0, 255.0), integer_colors=True, corner_colors=True,
    )  # fmt: skip
    lookup = encoding.build_lookup(layout, jnp.asarray(region)[None])
    table, count, allowed = lookup.table[0], lookup.count[0], lookup.region[0]
    ordered = np.flatnonzero(region) if name == "rowcol" else np.asarray(table)

    def decoded(genes):
        return jax.vmap(lambda g: encoding.decode(layout, g, table, count, allowed))(genes)

    genes, ranks = sparse_rs.initial(jax.random.key(0), layout, 16, count, allowed)
    flat, colors, _ = decoded(genes)
    np.testing.assert_array_equal(flat, ordered[np.asarray(ranks)])
    assert all(len(set(row)) == 4 for row in np.asarray(flat).tolist())
    assert region.reshape(-1)[np.asarray(flat)].all()
    assert np.isin(np.asarray(colors), [0.0, 255.0]).all()

    new_genes, new_ranks = sparse_rs.propose(
        jax.random.key(1), layout, 16, genes[0], ranks[0], 2, count, allowed
    )
    new_flat, new_colors, _ = decoded(new_genes)
    np.testing.assert_array_equal(new_flat, ordered[np.asarray(new_ranks)])
    moved = np.asarray(new_ranks) != np.asarray(ranks[0])
    assert (moved.sum(1) == 2).all()
    for row, was_moved in zip(np.asarray(new_ranks), moved, strict=True):
        assert len(set(row.tolist())) == 4  # still k distinct pixels
        assert not np.isin(row[was_moved], np.asarray(ranks[0])).any()
    # Kept pixels keep their genes (position and colour).
    kept = np.asarray(new_genes).reshape(16, 4, -1)[~moved]
    np.testing.assert_array_equal(kept, np.asarray(genes[0]).reshape(4, -1)[np.where(~moved)[1]])
    assert region.reshape(-1)[np.asarray(new_flat)].all()
    assert np.isin(np.asarray(new_colors), [0.0, 255.0]).all()


def test_untargeted_finds_the_planted_pixel_and_its_corner():
    images = planted.grey_images(N)
    result = rpx.attack(
        ONE_PIXEL, images, np.zeros(N, np.int32), config=CONFIG, key=jax.random.key(0)
    )

    assert result.success.all()
    assert in_patch(np.asarray(result.positions[:, 0])).all()
    np.testing.assert_array_equal(result.colors[:, 0], np.broadcast_to(planted.RED, (N, 3)))
    np.testing.assert_allclose(
        result.probs, ONE_PIXEL(jnp.asarray(result.adversarial, jnp.float32)), atol=1e-6
    )
    np.testing.assert_array_equal(result.queries, np.asarray(result.generations) * 24)
    curve = np.asarray(result.fitness_curve)
    assert curve.shape == (N, 41) and (np.diff(curve, axis=1) <= 0).all()


def test_targeted_reaches_the_target():
    predict = planted.three_class_model(PATCH)
    images = planted.grey_images(N)
    target = np.array([2, 1, 2, 1], np.int32)
    result = rpx.attack(
        predict, images, np.zeros(N, np.int32), target=target, config=CONFIG,
        key=jax.random.key(1),
    )  # fmt: skip

    assert result.success.all()
    np.testing.assert_array_equal(np.argmax(result.probs, -1), target)
    assert (np.diff(np.asarray(result.fitness_curve), axis=1) >= 0).all()


@pytest.mark.parametrize("restriction", ["table", "restore"])
def test_region_excluding_the_patch_never_succeeds_and_spends_the_budget(restriction):
    images = planted.grey_images(N)
    outside = ~planted.patch_mask(8, 8, PATCH)
    config = dataclasses.replace(CONFIG, restriction=restriction)
    result = rpx.attack(
        ONE_PIXEL, images, np.zeros(N, np.int32), region=outside, config=config,
        key=jax.random.key(2),
    )  # fmt: skip

    assert not result.success.any()
    changed = (np.asarray(result.adversarial) != images).any(-1)
    assert not (changed & ~outside).any()
    np.testing.assert_array_equal(result.generations, 41)
    np.testing.assert_array_equal(result.queries, 41 * 24)


def test_two_pixel_vulnerability_needs_more_than_one_pixel():
    predict = planted.two_pixel_model()
    images = planted.grey_images(3)
    labels = np.zeros(3, np.int32)
    one = rpx.attack(predict, images, labels, config=CONFIG, key=jax.random.key(4))
    three = rpx.attack(
        predict, images, labels, config=dataclasses.replace(CONFIG, pixels=3),
        key=jax.random.key(4),
    )  # fmt: skip

    assert not one.success.any()
    assert three.success.all()
    assert ((np.asarray(three.adversarial) != images).any(-1).sum((1, 2)) <= 3).all()
    assert (np.asarray(three.queries) <= 41 * 24).all()


def test_deterministic_and_run_equals_attack_whatever_the_batch_size():
    images, labels, region = mixed_batch()
    expected = rpx.attack(
        ONE_PIXEL, images, labels, region=region, config=CONFIG, key=jax.random.key(0)
    )
    again = rpx.attack(
        ONE_PIXEL, images[:3], labels[:3], region=region[:3], config=CONFIG, key=jax.random.key(0)
    )
    assert_same(jax.tree.map(lambda a: a[:3], expected), again)
    assert expected.queries[2] == 0 and not expected.success[5]
    for batch_size in (1, 4):
        got = rpx.run(
            ONE_PIXEL, images, labels, region=region, config=CONFIG, key=jax.random.key(0),
            batch_size=batch_size, progress=False,
        )  # fmt: skip
        assert_same(expected, got)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(search="cma"), "search"),
        (dict(search="sparse_rs", p_init=0.0), "p_init"),
        (dict(p_init=1.5), "p_init"),
        (dict(search="sparse_rs", init="scan"), "init='scan'"),
    ],
)
def test_bad_search_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rpx.AttackConfig(**kwargs)
