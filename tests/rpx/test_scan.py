"""rpx.search.scan: init="scan" runs the corner scan first and seeds DE with its best."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import rpx
from tests.rpx import planted
from tests.rpx.test_engine import assert_same

PATCH = ((2, 5), (3, 6))
ONE_PIXEL = planted.one_pixel_model(PATCH)
CONFIG = rpx.AttackConfig(population=24, generations=6, init="scan")


def _never_fooled():
    # Class 1's logit moves a little with every pixel but stays far below class 0's: the
    # scan never succeeds, yet each (pixel, corner) has its own fitness.
    weights = np.random.default_rng(0).uniform(-0.05, 0.05, (8 * 8 * 3,)).astype(np.float32)

    def predict(x):
        z = -8.0 + (x.reshape(x.shape[0], -1) / 255.0) @ weights
        return jax.nn.softmax(jnp.stack([jnp.zeros_like(z), z], axis=-1), axis=-1)

    return predict


NEVER_FOOLED = _never_fooled()


def test_a_planted_pixel_is_found_by_the_scan_alone():
    images = planted.grey_images(3)
    result = rpx.attack(
        ONE_PIXEL, images, np.zeros(3, np.int32), config=CONFIG, key=jax.random.key(0)
    )

    assert result.success.all()
    # Pixel (2, 3) is the 19th, RED = (hi, lo, lo) its 5th corner: pair 19 * 8 + 4 = 156,
    # in the 7th step of 24 pairs; the scan stops there and DE never starts.
    np.testing.assert_array_equal(result.queries, (156 // 24 + 1) * 24)
    np.testing.assert_array_equal(result.generations, 0)
    np.testing.assert_array_equal(result.positions[:, 0], [[2, 3]] * 3)
    np.testing.assert_array_equal(result.colors[:, 0], np.broadcast_to(planted.RED, (3, 3)))
    curve = np.asarray(result.fitness_curve)
    assert curve.shape == (3, 7)
    np.testing.assert_allclose(curve, np.broadcast_to(np.asarray(result.probs)[:, :1], (3, 7)))


def test_a_failed_scan_counts_its_queries_and_de_starts_from_its_best():
    images = planted.grey_images(3, seed=1)
    labels = np.zeros(3, np.int32)
    region = np.random.default_rng(1).random((3, 8, 8)) < 0.2
    size = region.sum((1, 2))
    result = rpx.attack(
        NEVER_FOOLED, images, labels, region=region, config=CONFIG, key=jax.random.key(1)
    )

    assert not result.success.any()
    np.testing.assert_array_equal(result.generations, 7)
    np.testing.assert_array_equal(result.queries, size * 8 + 7 * 24)
    # DE's initial population holds the scan's best: the exhaustive scan's minimum.
    scanned = rpx.pixel_map(NEVER_FOOLED, images, labels, region=region)
    best = np.nanmin(np.asarray(scanned.fitness).reshape(3, -1), axis=1)
    np.testing.assert_allclose(result.fitness_curve[:, 0], best, rtol=1e-6)
    assert (np.diff(np.asarray(result.fitness_curve), axis=1) <= 0).all()
    changed = (np.asarray(result.adversarial) != images).any(-1)
    assert not (changed & ~region).any()


def test_k_pixel_seeds_combine_the_best_single_pixels():
    # Red in patch A and blue in patch B, each alone not enough: the scan fails, and the
    # seed pairing the last of A's nine best pixels with B's first succeeds at once.
    predict = planted.two_pixel_model()
    images = planted.grey_images(2)
    config = dataclasses.replace(CONFIG, pixels=2)
    result = rpx.attack(
        predict, images, np.zeros(2, np.int32), config=config, key=jax.random.key(2)
    )

    assert result.success.all()
    np.testing.assert_array_equal(result.generations, 1)
    np.testing.assert_array_equal(result.queries, 64 * 8 + 24)
    assert ((np.asarray(result.adversarial) != images).any(-1).sum((1, 2)) == 2).all()


def test_deterministic_and_run_equals_attack_whatever_the_batch_size():
    n = 5
    images = planted.grey_images(n, seed=3)
    labels = np.zeros(n, np.int32)
    region = np.ones((n, 8, 8), bool)
    region[1] = False  # empty: no scan, no queries
    region[3] = ~planted.patch_mask(8, 8, PATCH)  # the scan fails, DE runs its budget
    expected = rpx.attack(
        ONE_PIXEL, images, labels, region=region, config=CONFIG, key=jax.random.key(3)
    )
    assert expected.queries[1] == 0 and not expected.success[1]
    assert not expected.success[3] and expected.queries[3] == 55 * 8 + 7 * 24
    assert np.asarray(expected.success)[[0, 2, 4]].all()
    for batch_size in (1, 3):
        got = rpx.run(
            ONE_PIXEL, images, labels, region=region, config=CONFIG, key=jax.random.key(3),
            batch_size=batch_size, progress=False,
        )  # fmt: skip
        assert_same(expected, got)
