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
        ("strategy", "best2bin"),
        ("init", "sobol"),
        ("value_range", (255.0, 0.0)),
        ("value_range", (0.0, float("inf"))),
        ("restriction", "clip"),
        ("encoding", "spiral"),
        ("chunk_size", 0),
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
