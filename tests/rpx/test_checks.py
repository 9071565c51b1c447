"""Bad input to rpx.attack and rpx.AttackConfig: a ValueError naming the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rpx
from tests.rpx import planted

PREDICT = planted.three_class_model()
CONFIG = rpx.AttackConfig(population=8, generations=1)


def call(images=None, labels=None, region=None, target=None, predict=PREDICT):
    images = planted.grey_images(2) if images is None else images
    labels = np.zeros(2, np.int32) if labels is None else labels
    return rpx.attack(
        predict, images, labels, region=region, target=target, config=CONFIG, key=jax.random.key(0)
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(images=np.zeros((8, 8, 3), np.uint8)), "images must be"),
        (dict(labels=np.zeros(3, np.int32)), "labels must be"),
        (dict(labels=np.zeros((2, 1), np.int32)), "labels must be"),
        (dict(labels=np.array([0, 3], np.int32)), r"labels must be class indices in \[0, 3\)"),
        (dict(labels=np.array([-1, 0], np.int32)), "labels must be class indices"),
        (dict(labels=np.zeros(2, np.float32)), "labels must be integers"),
        (dict(region=np.ones((8, 7), bool)), "region must be"),
        (dict(region=np.ones((3, 8, 8), bool)), "region must be"),
        (dict(region=np.ones((8, 8), np.uint8)), "region must be a bool"),
        (dict(target=np.array([1, 5], np.int32)), "target must be class indices"),
        (dict(target=np.array([1], np.int32)), "target must be"),
        (dict(target=np.array([1, 0], np.int32)), r"target must differ from labels.*\[1\]"),
        (dict(images=np.full((2, 8, 8, 3), np.nan, np.float32)), "images must be finite"),
        (dict(images=np.full((2, 8, 8, 3), 300.0, np.float32)), "images must lie in value_range"),
        (dict(images=np.full((2, 8, 8, 3), -1.0, np.float32)), "images must lie in value_range"),
        (dict(predict=lambda x: x[:, 0, 0, 0]), "predict must map"),
        (dict(predict="model"), "predict must be callable"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        call(**kwargs)


@pytest.mark.parametrize(
    "field, value",
    [
        ("pixels", 0),
        ("pixels", 1.5),
        ("population", 3),
        ("generations", -1),
        ("mutation", (1.0, 0.5)),
        ("mutation", (0.5, 2.5)),
        ("mutation", 0.5),
        ("crossover", 1.5),
        ("crossover", True),  # bools are refused as numbers, as for p_init and the ints
        ("p_init", True),
        ("pixels", True),
        ("chunk_size", True),
        ("strategy", "best2bin"),
        ("init", "sobol"),
        ("value_range", (255.0, 0.0)),
        ("value_range", (0.0, float("inf"))),
        ("restriction", "clip"),
        ("encoding", "spiral"),
        ("chunk_size", 0),
        ("evaluation", "fast"),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        rpx.AttackConfig(**{field: value})


def test_valid_config_is_hashable_and_normalised():
    a = rpx.AttackConfig(mutation=[0.5, 1], value_range=[0, 1])
    b = rpx.AttackConfig(mutation=(0.5, 1.0), value_range=(0.0, 1.0))
    assert a == b and hash(a) == hash(b)


def test_traced_inputs_skip_value_checks_but_keep_shape_checks():
    @jax.jit
    def run(images):
        return rpx.attack(
            PREDICT, images, jnp.zeros(2, jnp.int32), config=CONFIG, key=jax.random.key(0)
        ).success

    assert run(jnp.asarray(planted.grey_images(2))).shape == (2,)
    with pytest.raises(ValueError, match="labels must be"):
        jax.jit(
            lambda x: rpx.attack(
                PREDICT, x, jnp.zeros(3, jnp.int32), config=CONFIG, key=jax.random.key(0)
            )
        )(jnp.asarray(planted.grey_images(2)))


def softmax_linear(num_classes, dtype=jnp.float32):
    weights = np.random.default_rng(0).normal(size=(8 * 8 * 3, num_classes)) / 50

    def predict(x):
        logits = (x.reshape(x.shape[0], -1) / 255.0).astype(dtype) @ weights.astype(dtype)
        return jax.nn.softmax(logits, axis=-1)

    return predict


@pytest.mark.parametrize(
    "predict, message",
    [
        (lambda x: jnp.full((x.shape[0], 3), jnp.nan), "finite"),
        (lambda x: jnp.full((x.shape[0], 3), jnp.inf), "finite"),
        (
            lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3)), 0 * x[:, 0, 0, 0]], 1),
            "apply jax.nn.softmax",
        ),  # fmt: skip
        (lambda x: jnp.full((x.shape[0], 3), 0.5), "apply jax.nn.softmax"),  # sums to 1.5
        (lambda x: jnp.full((x.shape[0], 3), 0.1), "summing to 1"),
    ],
)
def test_predict_that_does_not_return_probabilities_is_refused(predict, message):
    with pytest.raises(ValueError, match=message):
        call(predict=predict, labels=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match=message):
        rpx.pixel_map(predict, planted.grey_images(2), np.zeros(2, np.int32))
    with pytest.raises(ValueError, match=message):
        rpx.run(
            predict,
            planted.grey_images(2),
            np.zeros(2, np.int32),
            config=CONFIG,
            key=jax.random.key(0),
            progress=False,
        )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_probabilities_of_low_precision_models_pass_the_probe(dtype):
    predict = softmax_linear(1000, dtype)
    out = predict(jnp.asarray(planted.grey_images(2), jnp.float32))
    assert out.dtype == dtype
    rpx.checks.check_probabilities(predict, planted.grey_images(2))


@pytest.mark.parametrize(
    "dtype, value_range",
    [
        (np.uint8, (0.0, 65535.0)),
        (np.uint8, (0.0, 256.0)),
        (np.uint8, (0.5, 255.0)),
        (np.int8, (0.0, 255.0)),
        (np.int8, (-129.0, 127.0)),
        (np.uint16, (-1.0, 255.0)),
        (np.float16, (0.0, 1e6)),
    ],
)
def test_value_range_the_images_dtype_cannot_hold_is_refused(dtype, value_range):
    images = np.zeros((2, 8, 8, 3), dtype)
    config = rpx.AttackConfig(population=8, generations=1, value_range=value_range)
    with pytest.raises(ValueError, match=rf"value_range .* dtype {np.dtype(dtype).name}"):
        rpx.attack(PREDICT, images, np.zeros(2, np.int32), config=config, key=jax.random.key(0))
    with pytest.raises(ValueError, match="value_range"):
        rpx.pixel_map(PREDICT, images, np.zeros(2, np.int32), value_range=value_range)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(config={"pixels": 1}), TypeError, r"config must be an rpx.AttackConfig.*\*\*d"),
        (dict(config=(1, 400)), TypeError, "config must be an rpx.AttackConfig"),
        (dict(key=0), TypeError, "key must be a PRNG key"),
        (dict(key=np.array([1, 2, 3], np.uint32)), ValueError, "key must be one PRNG key"),
        (dict(key=jax.random.split(jax.random.key(0), 2)), ValueError, "key must be one"),
        (dict(key=jnp.zeros(2, jnp.int32)), ValueError, "key must be one PRNG key"),
    ],
)
def test_config_and_key_of_the_wrong_kind_are_refused(kwargs, error, message):
    args = dict(config=CONFIG, key=jax.random.key(0)) | kwargs
    images, labels = planted.grey_images(2), np.zeros(2, np.int32)
    with pytest.raises(error, match=message):
        rpx.attack(PREDICT, images, labels, **args)
    with pytest.raises(error, match=message):
        rpx.run(PREDICT, images, labels, progress=False, **args)


def test_legacy_prng_key_is_accepted():
    images, labels = planted.grey_images(2), np.zeros(2, np.int32)
    a = rpx.attack(PREDICT, images, labels, config=CONFIG, key=jax.random.PRNGKey(0))
    assert a.success.shape == (2,)


WIDE = 2**32 + 1  # int64; JAX without x64 would store it as int32 1


@pytest.mark.parametrize("entry", ["attack", "run", "pixel_map"])
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(labels=np.array([WIDE, 0])), "labels"),
        (dict(labels=np.array([-WIDE + 2, 0])), "labels"),  # wraps to class 1 as well
        (dict(target=np.array([WIDE, 1])), "target"),
        (dict(images=np.full((2, 8, 8, 3), WIDE, np.int64)), "images"),
    ],
)
def test_integers_beyond_int32_are_refused_not_wrapped(entry, kwargs, name):
    args = dict(images=planted.grey_images(2), labels=np.zeros(2, np.int64))
    args.update(kwargs)
    key = dict(key=jax.random.key(0))
    call = {
        "attack": lambda **a: rpx.attack(PREDICT, **a, config=CONFIG, **key),
        "run": lambda **a: rpx.run(PREDICT, **a, config=CONFIG, batch_size=2, **key),
        "pixel_map": lambda **a: rpx.pixel_map(PREDICT, **a),
    }[entry]
    with pytest.raises(ValueError, match=rf"^{name} has values in \[.*int32"):
        call(**args)


def test_run_with_no_target_columns_names_target():
    images, labels = planted.grey_images(2), np.zeros(2, np.int32)
    with pytest.raises(ValueError, match=r"target must be \[N\] or \[N, T\].*T >= 1.*\(2, 0\)"):
        rpx.run(PREDICT, images, labels, target=np.zeros((2, 0), np.int32), config=CONFIG,
                key=jax.random.key(0), batch_size=2)  # fmt: skip


def test_one_pixel_probs_refuses_positions_beyond_int32():
    # (2**32 + 1, 0) would wrap to row 1, inside the image, and be scored silently.
    positions = np.array([[[2**32 + 1, 0]]], np.int64)
    with pytest.raises(ValueError, match=r"^positions has values in \[.*int32"):
        rpx.one_pixel_probs(PREDICT, planted.grey_images(1), positions, np.zeros((1, 1, 3)))
