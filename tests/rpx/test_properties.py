"""Invariants of rpx.attack over random masks, pixel counts and image sizes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rpx

SHAPES = [(5, 7), (8, 8)]
# (search, init) pairs: DE from a latin hypercube or from the corner scan, and Sparse-RS.
SEARCH_INITS = [("de", "lhs"), ("de", "scan"), ("sparse_rs", "lhs")]


def _linear_models():
    # A fixed random softmax-linear classifier per image shape: smooth, many classes.
    models = {}
    for h, w in SHAPES:
        weights = np.random.default_rng(h * w).normal(size=(h * w * 3, 4)).astype(np.float32)

        def predict(x, weights=weights):
            return jax.nn.softmax((x.reshape(x.shape[0], -1) / 255.0 - 0.5) @ weights, axis=-1)

        models[h, w] = predict
    return models


MODELS = _linear_models()


@pytest.mark.slow
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    shape=st.sampled_from(SHAPES),
    pixels=st.integers(1, 3),
    encoding=st.sampled_from(rpx.encoding.ENCODINGS),
    restriction=st.sampled_from(["table", "restore"]),
    targeted=st.booleans(),
    search_init=st.sampled_from(SEARCH_INITS),
)
def test_only_region_pixels_change_at_most_k_within_range(
    data, shape, pixels, encoding, restriction, targeted, search_init
):
    h, w = shape
    n = 3
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    density = data.draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    region = rng.random((n, h, w)) < density
    images = rng.integers(0, 256, (n, h, w, 3)).astype(np.uint8)
    labels = rng.integers(0, 4, n).astype(np.int32)
    target = (labels + 1) % 4 if targeted else None
    search, init = search_init
    config = rpx.AttackConfig(
        pixels=pixels, population=8, generations=3, encoding=encoding, restriction=restriction,
        search=search, init=init,
    )  # fmt: skip
    result = rpx.attack(
        MODELS[shape],
        images,
        labels,
        region=region,
        target=target,
        config=config,
        key=jax.random.key(seed),
    )

    adversarial = np.asarray(result.adversarial)
    changed = (adversarial != images).any(-1)
    assert not (changed & ~region).any()
    assert (changed.sum((1, 2)) <= pixels).all()
    assert adversarial.dtype == np.uint8  # so values stay within value_range (0, 255)
    positions = np.asarray(result.positions)
    used = positions[..., 0] >= 0
    rows, cols = np.where(used, positions[..., 0], 0), np.where(used, positions[..., 1], 0)
    assert region[np.arange(n)[:, None], rows, cols][used].all()
    assert changed.sum((1, 2)).max(initial=0) <= used.sum(1).max(initial=0)

    empty = ~region.any((1, 2))
    gens = np.asarray(result.generations)
    np.testing.assert_array_equal(gens[empty], 0)
    np.testing.assert_array_equal(adversarial[empty], images[empty])
    assert not np.asarray(result.success)[empty].any()
    success = np.asarray(result.success)
    if init == "scan":
        # The scan's queries come first: every (pixel, corner) pair it can pick unless a
        # step succeeded, and then DE's populations (none after a successful scan).
        scanned = np.asarray(result.queries) - gens * 8
        pairs = np.full(n, h * w) if restriction == "restore" else region.sum((1, 2))
        pairs = pairs * 8
        assert ((gens[~empty] >= 0) & (gens[~empty] <= 4)).all()
        np.testing.assert_array_equal(scanned[~empty & (gens > 0)], pairs[~empty & (gens > 0)])
        done = ~empty & (gens == 0)
        assert success[done].all() and (scanned[done] > 0).all()
        assert (scanned[done] <= pairs[done]).all()
    else:
        assert ((gens[~empty] >= 1) & (gens[~empty] <= 4)).all()
        np.testing.assert_array_equal(result.queries, gens * 8)
    curve = np.asarray(result.fitness_curve)
    assert np.isnan(curve[empty]).all() and np.isfinite(curve[~empty]).all()
    steps = np.diff(curve[~empty], axis=1)
    assert (steps >= 0).all() if targeted else (steps <= 0).all()
    predicted = np.asarray(result.probs).argmax(-1)
    expected = predicted == target if targeted else predicted != labels
    np.testing.assert_array_equal(success[~empty], expected[~empty])


@functools.cache
def _scaled_model(lo, hi):
    # Inputs mapped to [0, 255], so every dtype's colours move the model about equally.
    return lambda x: MODELS[SHAPES[1]]((x - lo) * (255.0 / (hi - lo)))


DTYPE_RANGES = [
    (np.uint8, (0.0, 255.0)),
    (np.int8, (-128.0, 127.0)),
    (np.uint16, (0.0, 1000.0)),
    (np.int32, (-5.0, 300.0)),
    (np.float32, (0.0, 1.0)),
    (np.float16, (0.0, 255.0)),
    (jnp.bfloat16, (-1.0, 1.0)),
]


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    dtype_range=st.sampled_from(DTYPE_RANGES),
    pixels=st.integers(1, 3),
    encoding=st.sampled_from(rpx.encoding.ENCODINGS),
    restriction=st.sampled_from(["table", "restore"]),
    targeted=st.booleans(),
    search_init=st.sampled_from(SEARCH_INITS),
)
def test_what_a_result_reports_the_model_confirms(
    data, dtype_range, pixels, encoding, restriction, targeted, search_init
):
    dtype, (lo, hi) = dtype_range
    h, w = SHAPES[1]
    n = 3
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    region = rng.random((n, h, w)) < data.draw(st.sampled_from([0.05, 0.3, 1.0]))
    images = (lo + rng.random((n, h, w, 3)) * (hi - lo)).astype(dtype)
    labels = rng.integers(0, 4, n).astype(np.int32)
    target = (labels + 1) % 4 if targeted else None
    config = rpx.AttackConfig(
        pixels=pixels,
        population=8,
        generations=3,
        encoding=encoding,
        restriction=restriction,
        value_range=(lo, hi),
        search=search_init[0],
        init=search_init[1],
    )
    predict = _scaled_model(lo, hi)
    result = rpx.attack(
        predict, images, labels, region=region, target=target, config=config,
        key=jax.random.key(seed),
    )  # fmt: skip

    adversarial = np.asarray(result.adversarial)
    assert adversarial.dtype == np.dtype(dtype)
    confirmed = np.asarray(predict(jnp.asarray(adversarial, jnp.float32)))
    np.testing.assert_allclose(confirmed, result.probs, atol=2e-6)
    predicted = confirmed.argmax(-1)
    expected = predicted == target if targeted else predicted != labels
    empty = ~region.any((1, 2))
    np.testing.assert_array_equal(np.asarray(result.success), expected & ~empty)
