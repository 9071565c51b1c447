"""rpx.evaluate: one evaluator for slots, pixel_map and one_pixel_probs; "auto" falls back
to the full pass whenever the incremental program cannot be built."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rpx
from rpx import evaluate

NHWC = ("NHWC", "HWIO", "NHWC")
W = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3, 3, 4)) * 0.02, jnp.float32)


def callback_predict(x):
    """A conv (the analysis predicts a saving) then a host callback that cannot be vmapped
    (no vmap_method): the incremental program, which vmaps over candidates, fails to build."""
    y = jax.lax.conv_general_dilated(x / 255.0, W, (1, 1), "SAME", dimension_numbers=NHWC)
    y = jax.pure_callback(np.tanh, jax.ShapeDtypeStruct(y.shape, y.dtype), y)
    return jax.nn.softmax(4.0 * y.mean((1, 2)))


def test_auto_takes_the_full_pass_when_the_incremental_program_cannot_be_built():
    # Before: "auto" chose the plan (the analysis itself succeeds) and rpx.attack,
    # rpx.pixel_map and rpx.one_pixel_probs raised NotImplementedError from vmap.
    plan = rpx.incremental.analyse(callback_predict, (8, 8, 3))
    assert plan.saves_work
    assert evaluate.choose(callback_predict, (8, 8, 3), "auto") is None
    images = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    labels = np.asarray(callback_predict(jnp.asarray(images, jnp.float32))).argmax(-1)
    labels = labels.astype(np.int32)
    key = jax.random.key(0)
    config = rpx.AttackConfig(population=8, generations=2)
    full_config = rpx.AttackConfig(population=8, generations=2, evaluation="full")
    positions = np.array([[(0, 0), (7, 7)]] * 2)
    colors = np.full((2, 2, 3), 255.0)
    calls = {
        "attack": lambda cfg, ev: rpx.attack(callback_predict, images, labels, config=cfg, key=key),
        "pixel_map": lambda cfg, ev: rpx.pixel_map(callback_predict, images, labels, evaluation=ev),
        "one_pixel_probs": lambda cfg, ev: rpx.one_pixel_probs(
            callback_predict, images, positions, colors, evaluation=ev
        ),
    }
    for name, call in calls.items():
        auto, full = call(config, "auto"), call(full_config, "full")
        for a, b in zip(jax.tree.leaves(auto), jax.tree.leaves(full), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    # Asked for explicitly, the incremental evaluation refuses, naming the cause.
    with pytest.raises(NotImplementedError, match="incremental.*vmap"):
        rpx.one_pixel_probs(callback_predict, images, positions, colors, evaluation="incremental")
    with pytest.raises(NotImplementedError, match="incremental.*vmap"):
        rpx.pixel_map(callback_predict, images, labels, evaluation="incremental")


def test_the_evaluator_scores_one_pixel_candidates_alike_in_full_and_incrementally():
    def predict(x):
        y = jax.lax.conv_general_dilated(x / 255.0, W, (1, 1), "SAME", dimension_numbers=NHWC)
        return jax.nn.softmax(4.0 * jnp.tanh(y).mean((1, 2)))

    pixels = jnp.asarray(np.random.default_rng(2).integers(0, 256, (3, 8, 8, 3)), jnp.float32)
    plan = evaluate.choose(predict, (8, 8, 3), "incremental")
    assert plan is not None
    full = evaluate.Evaluator(predict, chunk=4)
    windowed = evaluate.Evaluator(predict, chunk=4, plan=plan)
    image = jnp.array([0, 2, 1, 2])
    flat = jnp.array([[0], [9], [63], [20]])
    colors = jnp.array([[[255.0, 0, 0]], [[0, 0, 0]], [[255.0, 255, 255]], [[1.0, 2, 3]]])
    changed = jnp.array([[True], [True], [True], [False]])  # the last keeps its own value
    want = full.probs(None, pixels, None, image, flat, colors, changed)
    got = windowed.probs(None, pixels, windowed.cache(pixels), image, flat, colors, changed)
    np.testing.assert_allclose(got, want, atol=1e-6)
    clean = predict(pixels)[2]
    np.testing.assert_allclose(want[3], clean, atol=1e-6)


def test_cache_groups_fit_the_budget(monkeypatch):
    class Plan:
        cache_bytes = 10

    monkeypatch.setattr(evaluate, "CACHE_BUDGET_BYTES", 35)
    assert evaluate.cache_group(7, None) == 7
    assert evaluate.cache_group(7, Plan()) == 3  # three groups of at most 3: 3, 3, 1
    assert evaluate.cache_group(8, Plan()) == 3
    assert evaluate.cache_group(5, Plan(), even=False) == 3
    assert evaluate.cache_group(4, Plan()) == 2  # two even groups of 2
