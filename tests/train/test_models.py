"""Every registered classifier: output shape, finite logits, parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import models

# The papers' sizes (VGG-16 (C) is the 512-512-K head CIFAR variant).
PARAMS = {
    "compact": 0.48e6,
    "compact_fast": 0.76e6,
    "allconv": 1.37e6,
    "nin": 0.97e6,
    "vgg16_cifar": 15.25e6,
    "alexnet": 61.0e6,
    "resnet50": 25.56e6,
    "vgg16_imagenet": 138.36e6,
}
CIFAR = ["compact", "compact_fast", "allconv", "nin", "vgg16_cifar"]
IMAGENET = ["alexnet", "resnet50", "vgg16_imagenet"]


def _count(params):
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def test_registry_has_the_papers_nets():
    assert set(CIFAR + IMAGENET) <= set(models.names())


@pytest.mark.parametrize("name", CIFAR)
def test_cifar_nets_give_finite_logits(name):
    apply, variables = models.init(name, jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), maxval=255.0)
    logits = jax.jit(apply)(variables, images)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert bool(jnp.isfinite(logits).all())
    # Inference mode: no dropout, so the same input gives the same logits.
    np.testing.assert_array_equal(logits, jax.jit(apply)(variables, images))
    assert _count(variables["params"]) == pytest.approx(PARAMS[name], rel=0.02)


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_nets_shapes(name):
    model = models.module(name)
    variables = jax.eval_shape(lambda k: models.init_variables(model, k, 224), jax.random.key(0))
    out = jax.eval_shape(
        lambda v, x: model.apply(v, x),
        variables,
        jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32),
    )
    assert out.shape == (2, 1000) and out.dtype == jnp.float32
    assert _count(variables["params"]) == pytest.approx(PARAMS[name], rel=0.02)


def test_num_classes_and_bf16():
    apply, variables = models.init(
        "compact", jax.random.key(0), num_classes=3, image_size=8, dtype=jnp.bfloat16
    )
    logits = apply(variables, jnp.full((2, 8, 8, 3), 128.0))
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32
    assert bool(jnp.isfinite(logits).all())
    # Parameters stay float32 whatever the compute dtype.
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet18'.*allconv.*vgg16_imagenet"):
        models.init("resnet18", jax.random.key(0))
    with pytest.raises(ValueError, match="num_classes"):
        models.module("compact", num_classes=1)
