"""rpx.attack against planted classifiers whose vulnerable pixel and colour are known."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rpx
from tests.rpx import planted
from tests.rpx.planted import PATCH, in_patch

FAST = rpx.AttackConfig(population=24, generations=40)
# One predict object per model and one config keep tests on the same compiled program.
ONE_PIXEL = planted.one_pixel_model(PATCH)
N = 4


def test_untargeted_finds_the_planted_pixel_and_colour():
    predict = ONE_PIXEL
    images = planted.grey_images(N)
    result = rpx.attack(predict, images, np.zeros(N, np.int32), config=FAST, key=jax.random.key(0))

    assert result.success.all()
    assert in_patch(np.asarray(result.positions[:, 0])).all()
    distance = np.linalg.norm(np.asarray(result.colors[:, 0]) - np.asarray(planted.RED), axis=-1)
    assert (distance < 50).all()
    # probs is the classifier's output on the returned image, and it is fooled.
    np.testing.assert_allclose(
        result.probs, predict(jnp.asarray(result.adversarial, jnp.float32)), atol=1e-6
    )
    assert (np.argmax(result.probs, -1) != 0).all()
    assert result.adversarial.dtype == np.uint8


def test_targeted_reaches_the_target_not_just_any_other_class():
    predict = planted.three_class_model(PATCH)
    images = planted.grey_images(4)
    labels = np.zeros(4, np.int32)
    target = np.array([2, 1, 2, 1], np.int32)
    result = rpx.attack(predict, images, labels, target=target, config=FAST, key=jax.random.key(1))

    assert result.success.all()
    np.testing.assert_array_equal(np.argmax(result.probs, -1), target)
    wanted = np.where(target[:, None] == 2, np.asarray(planted.BLUE), np.asarray(planted.RED))
    assert (np.linalg.norm(np.asarray(result.colors[:, 0]) - wanted, axis=-1) < 50).all()
    # Targeted fitness is p[target]: the curve rises and ends at the returned probability.
    curve = np.asarray(result.fitness_curve)
    assert (np.diff(curve, axis=1) >= 0).all()
    np.testing.assert_allclose(
        curve[:, -1], np.asarray(result.probs)[np.arange(4), target], rtol=1e-6
    )


@pytest.mark.parametrize("restriction", ["table", "restore"])
def test_region_excluding_the_patch_never_succeeds(restriction):
    images = planted.grey_images(N)
    outside = ~planted.patch_mask(8, 8, PATCH)
    config = dataclasses.replace(FAST, restriction=restriction)
    result = rpx.attack(
        ONE_PIXEL,
        images,
        np.zeros(N, np.int32),
        region=outside,
        config=config,
        key=jax.random.key(2),
    )

    assert not result.success.any()
    changed = (np.asarray(result.adversarial) != images).any(-1)
    assert changed.any() and not (changed & ~outside).any()
    np.testing.assert_array_equal(result.generations, 41)
    np.testing.assert_array_equal(result.queries, 41 * 24)


def test_region_holding_only_the_patch_succeeds_inside_it():
    images = planted.grey_images(N)
    region = planted.patch_mask(8, 8, PATCH)
    for encoding in rpx.encoding.ENCODINGS:
        config = dataclasses.replace(FAST, encoding=encoding)
        result = rpx.attack(
            ONE_PIXEL,
            images,
            np.zeros(N, np.int32),
            region=region,
            config=config,
            key=jax.random.key(3),
        )
        assert result.success.all(), encoding
        assert in_patch(np.asarray(result.positions[:, 0])).all(), encoding


def test_two_pixel_vulnerability_needs_more_than_one_pixel():
    predict = planted.two_pixel_model()
    images = planted.grey_images(3)
    labels = np.zeros(3, np.int32)
    one = rpx.attack(
        predict,
        images,
        labels,
        config=rpx.AttackConfig(population=24, generations=30),
        key=jax.random.key(4),
    )
    three = rpx.attack(
        predict,
        images,
        labels,
        config=rpx.AttackConfig(pixels=3, population=60, generations=80),
        key=jax.random.key(4),
    )

    assert not one.success.any()
    assert three.success.all()
    assert ((np.asarray(three.adversarial) != images).any(-1).sum((1, 2)) <= 3).all()


def test_empty_region_returns_the_image_unchanged_with_no_queries():
    predict = ONE_PIXEL
    images = planted.grey_images(N)
    region = np.ones((N, 8, 8), bool)
    region[1] = False
    result = rpx.attack(
        predict, images, np.zeros(N, np.int32), region=region, config=FAST, key=jax.random.key(5)
    )

    assert not result.success[1]
    np.testing.assert_array_equal(result.adversarial[1], images[1])
    assert result.queries[1] == 0 and result.generations[1] == 0
    assert np.isnan(result.fitness_curve[1]).all()
    np.testing.assert_array_equal(result.positions[1], -1)
    np.testing.assert_allclose(result.probs[1], predict(jnp.asarray(images[1:2], jnp.float32))[0])
    assert np.asarray(result.success)[[0, 2, 3]].all()


def test_early_stop_counts_and_curve_are_consistent():
    images = planted.grey_images(N, seed=6)
    result = rpx.attack(
        ONE_PIXEL, images, np.zeros(N, np.int32), config=FAST, key=jax.random.key(6)
    )
    gens, curve = np.asarray(result.generations), np.asarray(result.fitness_curve)

    np.testing.assert_array_equal(result.queries, gens * 24)
    assert ((gens >= 1) & (gens <= 41)).all()
    assert curve.shape == (N, 41)
    assert (np.diff(curve, axis=1) <= 0).all()  # untargeted: best p[label] never rises
    for i, g in enumerate(gens):
        assert (curve[i, g - 1 :] == curve[i, -1]).all()  # repeated after the stop
        if result.success[i] and g > 1:
            assert curve[i, g - 2] > curve[i, g - 1]  # the success improved the best
    np.testing.assert_allclose(curve[:, -1], np.asarray(result.probs)[:, 0], rtol=1e-6)
    # An image stops only by succeeding or by spending the whole budget.
    assert (np.asarray(result.success) | (gens == 41)).all()


def test_float_images_keep_dtype_and_custom_value_range():
    predict = lambda x: planted.one_pixel_model(PATCH)(x * 255.0)  # noqa: E731
    images = planted.grey_images(3, dtype=np.float32) / 255.0
    config = rpx.AttackConfig(population=24, generations=40, value_range=(0.0, 1.0))
    result = rpx.attack(
        predict, images, np.zeros(3, np.int32), config=config, key=jax.random.key(7)
    )

    assert result.success.all()
    assert result.adversarial.dtype == np.float32
    assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0


def test_same_key_same_result_and_results_do_not_depend_on_batch_companions():
    predict, config = ONE_PIXEL, FAST
    images = planted.grey_images(N)
    labels = np.zeros(N, np.int32)
    a = rpx.attack(predict, images, labels, config=config, key=jax.random.key(8))
    b = rpx.attack(predict, images, labels, config=config, key=jax.random.key(8))
    few = rpx.attack(predict, images[:2], labels[:2], config=config, key=jax.random.key(8))

    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(few), strict=True):
        np.testing.assert_array_equal(x[:2], y)
    other = rpx.attack(predict, images, labels, config=config, key=jax.random.key(9))
    assert not np.array_equal(a.fitness_curve, other.fitness_curve)


def test_works_inside_the_callers_jit_and_compiles_once():
    traces = []

    def predict(x):
        traces.append(x.shape)
        return planted.one_pixel_model(PATCH)(x)

    images = planted.grey_images(2)
    labels = np.zeros(2, np.int32)
    config = FAST
    rpx.attack(predict, images, labels, config=config, key=jax.random.key(0))
    first = len(traces)
    again = rpx.attack(predict, images + 1, labels, config=config, key=jax.random.key(1))
    assert len(traces) == first  # same shapes and config: no retrace
    assert first > 0

    @jax.jit
    def outer(images, labels, key):
        return rpx.attack(predict, images, labels, config=config, key=key).fitness_curve

    inside = outer(jnp.asarray(images + 1), jnp.asarray(labels), jax.random.key(1))
    np.testing.assert_allclose(inside, again.fitness_curve)


def test_candidates_with_nan_output_are_never_successes():
    # Before: argmax of a NaN row is 0 != label 1, so every image counted as a success.
    predict = planted.nan_model(PATCH)
    images = planted.grey_images(N)
    labels = np.ones(N, np.int32)
    region = planted.patch_mask(8, 8, PATCH)
    result = rpx.attack(predict, images, labels, region=region, config=FAST, key=jax.random.key(0))
    assert not np.asarray(result.success).any()
    probs = np.asarray(result.probs)
    np.testing.assert_allclose(probs, predict(jnp.asarray(result.adversarial, jnp.float32)))
    assert np.isfinite(probs).all() and (probs.argmax(-1) == labels).all()
    # Only finite candidates are kept as the best: the returned image is not a NaN one.
    assert np.isfinite(np.asarray(result.fitness_curve)).all()


def test_reported_probs_and_success_are_the_models_word_on_the_returned_images(monkeypatch):
    # The windowed one-pixel scores equal the full pass only within float rounding; a
    # result must still report predict(adversarial) and what it says. Simulate windowed
    # scores that are off (classes swapped: every candidate looks like a success) and
    # check that neither rpx.attack nor rpx.run reports what the model does not confirm.
    real = rpx.incremental.window_probs
    monkeypatch.setattr(rpx.incremental, "window_probs", lambda *args: real(*args)[:, ::-1])
    predict = planted.one_pixel_model(PATCH)  # a new object: compiled afresh, patched
    images, labels = planted.grey_images(N), np.zeros(N, np.int32)
    config = dataclasses.replace(FAST, evaluation="incremental")
    key = jax.random.key(0)
    results = [
        rpx.attack(predict, images, labels, config=config, key=key),
        rpx.run(predict, images, labels, config=config, key=key, batch_size=2, progress=False),
    ]
    for result in results:
        assert (np.asarray(result.generations) == 1).all()  # the search took a "success"
        confirmed = np.asarray(predict(jnp.asarray(result.adversarial, jnp.float32)))
        np.testing.assert_array_equal(np.asarray(result.probs), confirmed)
        np.testing.assert_array_equal(np.asarray(result.success), confirmed.argmax(-1) != labels)
        assert not np.asarray(result.success).any()


def test_outputs_that_are_not_probabilities_on_the_returned_images_raise():
    # Before: probabilities on the clean images (the probe passed), logits once the patch
    # turns red: the logits' argmax was reported as a success, with the logits as probs.
    def predict(x):
        z = 20.0 * (planted.closeness(x, PATCH, planted.RED) - 0.75)
        logits = jnp.stack([jnp.zeros_like(z), z], axis=-1)
        return jnp.where((z > 0)[:, None], logits, jax.nn.softmax(logits, axis=-1))

    images, labels = planted.grey_images(N), np.zeros(N, np.int32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="probabilities.*returned .perturbed. images"):
        rpx.attack(predict, images, labels, config=FAST, key=key)
    with pytest.raises(ValueError, match="probabilities.*returned .perturbed. images"):
        rpx.run(predict, images, labels, config=FAST, key=key, batch_size=2, progress=False)


def small_cnn():
    """A two-conv classifier of 16x16 images whose one-pixel changes the incremental
    evaluation computes cheaply (so "auto" picks it unless memory forbids)."""
    rng = np.random.default_rng(0)
    w1 = jnp.asarray(rng.normal(size=(3, 3, 3, 8)) * 0.3, jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(3, 3, 8, 8)) * 0.3, jnp.float32)
    dense = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)

    def predict(x):
        y = jax.nn.relu(conv(jax.nn.relu(conv(x / 255.0, w1)), w2))
        return jax.nn.softmax(y.mean((1, 2)) @ dense)

    return predict


NHWC = ("NHWC", "HWIO", "NHWC")


class _Decided(Exception):
    """Raised once the attack has decided how it evaluates: no search needs to run."""


def test_auto_takes_the_full_pass_when_the_slots_caches_exceed_the_budget(monkeypatch):
    # Every slot caches its image's clean activations: "auto" must keep their total
    # within CACHE_BUDGET_BYTES (as one_pixel_probs and pixel_map do by grouping). The
    # attack stops where its slots load their images (their caches, if any, computed):
    # both evaluations' attacks are run to the end and compared in the tests below.
    predict = small_cnn()
    plan = rpx.incremental.analyse(predict, (16, 16, 3))
    assert plan.saves_work
    monkeypatch.setattr(rpx.evaluate, "CACHE_BUDGET_BYTES", 3 * plan.cache_bytes)
    cached = []
    real = rpx.evaluate.Evaluator.cache

    def cache(self, pixels, params=None):
        real(self, pixels, params)
        cached.append(len(pixels) if self.plan is not None else None)
        raise _Decided

    monkeypatch.setattr(rpx.evaluate.Evaluator, "cache", cache)
    images = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    labels = np.asarray(predict(jnp.asarray(images, jnp.float32))).argmax(-1).astype(np.int32)
    config = rpx.AttackConfig(population=8, generations=1)
    key = jax.random.key(0)

    def slots_cached(n, evaluation="auto", batch_size=None):
        cached.clear()
        cfg = dataclasses.replace(config, evaluation=evaluation)
        with pytest.raises(_Decided):
            if batch_size is None:
                rpx.attack(predict, images[:n], labels[:n], config=cfg, key=key)
            else:
                rpx.run(predict, images, labels, config=cfg, key=key, batch_size=batch_size,
                        progress=False)  # fmt: skip
        return cached[0]

    assert slots_cached(3) == 3  # three caches fit: incremental
    assert slots_cached(4) is None  # four do not: the full pass
    assert slots_cached(4, "incremental") == 4  # asked for: kept, whatever the memory
    assert slots_cached(4, batch_size=2) == 2  # rpx.run: two slots fit
    assert slots_cached(4, batch_size=4) is None


def test_more_pixels_than_the_region_holds_reports_each_changed_pixel_once():
    # Decided: k above the region's pixel count is allowed; each region pixel changes at
    # most once and the slots without a distinct pixel report (-1, -1) and colour 0.
    images = planted.grey_images(N)
    region = np.zeros((8, 8), bool)
    region[3, 4] = region[6, 1] = True
    config = rpx.AttackConfig(pixels=4, population=8, generations=2)
    for restriction in ("table", "restore"):
        result = rpx.attack(
            ONE_PIXEL,
            images,
            np.zeros(N, np.int32),
            region=region,
            config=dataclasses.replace(config, restriction=restriction),
            key=jax.random.key(3),
        )
        positions, colors = np.asarray(result.positions), np.asarray(result.colors)
        adversarial = np.asarray(result.adversarial)
        for i in range(N):
            used = positions[i, :, 0] >= 0
            rows, cols = positions[i, used, 0], positions[i, used, 1]
            assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == used.sum()
            assert region[rows, cols].all() and used.sum() <= 2
            assert (colors[i, ~used] == 0).all()
            changed = (adversarial[i] != images[i]).any(-1)
            assert changed.sum() <= used.sum()
            np.testing.assert_array_equal(adversarial[i, rows, cols], colors[i, used])


def test_weights_as_an_argument_reuse_the_compiled_program():
    # predict(params, x): new weights of the same shapes must not recompile the search.
    traces = []

    def predict(params, x):
        traces.append(x.shape)
        z = params["gain"] * (planted.closeness(x, PATCH, planted.RED) - params["at"])
        return jax.nn.softmax(jnp.stack([jnp.zeros_like(z), z], axis=-1), axis=-1)

    images, labels = planted.grey_images(N), np.zeros(N, np.int32)
    region = planted.patch_mask(8, 8, PATCH)
    closure = lambda x: predict(dict(gain=20.0, at=0.75), x)  # noqa: E731
    before = len(traces)
    results = []
    for at in (0.75, 0.5, 0.95):
        params = dict(gain=jnp.float32(20.0), at=jnp.float32(at))
        results.append(
            rpx.attack(
                predict, images, labels, region, params=params, config=FAST, key=jax.random.key(0)
            )  # fmt: skip
        )
        if at == 0.75:
            first = len(traces)
    assert len(traces) == first, "new weights traced predict again"
    assert first > before
    # The weights are really used: same result as the closure form at the same weights.
    reference = rpx.attack(closure, images, labels, region, config=FAST, key=jax.random.key(0))
    for x, y in zip(jax.tree.leaves(results[0]), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(x, y)
    # at=0.95 needs an almost exact red: the search still has to find it, 0.5 is easier.
    assert results[1].success.all()
    np.testing.assert_allclose(
        results[2].probs, predict(params, jnp.asarray(results[2].adversarial, jnp.float32))
    )


@pytest.fixture(scope="module")
def real_classifier():
    import os

    import train

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assets = os.path.join(root, "train", "assets")
    predict, _ = train.load_classifier(os.path.join(assets, "cifar10_compact_fast"))
    data = np.load(os.path.join(assets, "cifar10_test_sample100.npz"))
    images = data["image"][:6]
    labels = np.asarray(predict(jnp.asarray(images, jnp.float32))).argmax(-1).astype(np.int32)
    return predict, images, labels


def test_incremental_evaluation_reports_what_the_full_model_confirms(real_classifier):
    predict, images, labels = real_classifier
    region = np.zeros((32, 32), bool)
    region[4:28, 4:28] = True
    base = rpx.AttackConfig(population=32, generations=3)
    out = {}
    for evaluation in ("incremental", "full"):
        config = dataclasses.replace(base, evaluation=evaluation)
        out[evaluation] = rpx.attack(
            predict, images, labels, region, config=config, key=jax.random.key(0)
        )
        result = out[evaluation]
        confirmed = np.asarray(predict(jnp.asarray(result.adversarial, jnp.float32)))
        np.testing.assert_allclose(result.probs, confirmed, atol=1e-5)
        np.testing.assert_array_equal(result.success, confirmed.argmax(-1) != labels)
    # Scores agree to float rounding, so the searches take the same path here.
    np.testing.assert_allclose(
        out["incremental"].fitness_curve, out["full"].fitness_curve, atol=1e-5
    )
    streamed = rpx.run(
        predict, images, labels, region,
        config=dataclasses.replace(base, evaluation="incremental"), key=jax.random.key(0),
        batch_size=4, progress=False,
    )  # fmt: skip
    for field in ("success", "positions", "generations", "queries"):
        np.testing.assert_array_equal(
            getattr(streamed, field), getattr(out["incremental"], field), err_msg=field
        )
    np.testing.assert_allclose(streamed.probs, out["incremental"].probs, atol=1e-6)
