"""Pieces shared by the classifiers: input normalisation and layer defaults."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

# Per-channel RGB statistics of the training sets, in [0, 255] pixel units.
CIFAR10_MEAN = (125.31, 122.95, 113.87)
CIFAR10_STD = (62.99, 62.09, 66.70)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# He (Kaiming) normal init: the ReLU nets without BatchNorm (AllConv, NiN, the VGGs,
# AlexNet) do not train from flax's default LeCun init at useful learning rates.
he_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def normalize(images: jax.Array, mean, std, dtype) -> jax.Array:
    """[B,H,W,3] pixel values in [0, 255] -> standardised [B,H,W,3] in `dtype`."""
    x = (images.astype(jnp.float32) - jnp.asarray(mean)) / jnp.asarray(std)
    return x.astype(dtype)


def conv(features: int, kernel: int, stride: int = 1, padding="SAME", dtype=jnp.float32, **kw):
    """A Conv with He init and the given compute dtype (parameters stay float32)."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=padding,
        kernel_init=he_init,
        dtype=dtype,
        **kw,
    )


def batch_norm(train: bool, dtype) -> nn.BatchNorm:
    """BatchNorm: batch statistics while training, running averages otherwise."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype)


dense = functools.partial(nn.Dense, kernel_init=he_init)
