"""ImageNet classifiers (224x224 inputs): BVLC AlexNet, ResNet-50 and VGG-16 (I).

Every module maps float32 [B, 224, 224, 3] pixel values in [0, 255] to logits [B, K]
and normalises its input itself. `train=True` turns on dropout and batch statistics.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from train.models.common import IMAGENET_MEAN, IMAGENET_STD, batch_norm, conv, dense, normalize


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's across-channel LRN of [B,H,W,C]: x / (k + alpha/size * sum_window x^2)^beta."""
    sq = jnp.square(x.astype(jnp.float32))
    half = size // 2
    window_sum = jax.lax.reduce_window(
        sq, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1), ((0, 0), (0, 0), (0, 0), (half, half))
    )
    return (x / (k + alpha / size * window_sum) ** beta).astype(x.dtype)


class AlexNet(nn.Module):
    """BVLC AlexNet (the Caffe reference model), about 61M parameters.

    conv1 96x11x11/4 - LRN - pool; conv2 256x5x5 (2 groups) - LRN - pool; conv3 384x3x3;
    conv4 384x3x3 (2 groups); conv5 256x3x3 (2 groups) - pool; fc 4096 - fc 4096 - fc K
    with dropout 0.5. conv1 pads by 2 so a 224 input gives Caffe's 55x55 map (as 227 does).
    """

    num_classes: int = 1000
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = normalize(images, IMAGENET_MEAN, IMAGENET_STD, self.dtype)
        x = nn.relu(conv(96, 11, stride=4, padding=((2, 2), (2, 2)), dtype=self.dtype)(x))
        x = nn.max_pool(local_response_norm(x), (3, 3), strides=(2, 2))
        x = nn.relu(conv(256, 5, dtype=self.dtype, feature_group_count=2)(x))
        x = nn.max_pool(local_response_norm(x), (3, 3), strides=(2, 2))
        x = nn.relu(conv(384, 3, dtype=self.dtype)(x))
        x = nn.relu(conv(384, 3, dtype=self.dtype, feature_group_count=2)(x))
        x = nn.relu(conv(256, 3, dtype=self.dtype, feature_group_count=2)(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
        return _classifier_head(x, self.num_classes, self.dtype, train)


def _classifier_head(x, num_classes: int, dtype, train: bool):
    """AlexNet's and VGG's head: flatten, two Dense-4096 + ReLU + Dropout 0.5, logits."""
    x = x.reshape(x.shape[0], -1)
    for _ in range(2):
        x = nn.relu(dense(4096, dtype=dtype)(x))
        x = nn.Dropout(0.5, deterministic=not train)(x)
    return dense(num_classes, dtype=dtype)(x).astype(jnp.float32)


class VGG16ImageNet(nn.Module):
    """VGG-16, configuration D of Simonyan and Zisserman 2014, about 138M parameters."""

    num_classes: int = 1000
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = normalize(images, IMAGENET_MEAN, IMAGENET_STD, self.dtype)
        for width, repeats in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
            for _ in range(repeats):
                x = nn.relu(conv(width, 3, dtype=self.dtype)(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        return _classifier_head(x, self.num_classes, self.dtype, train)


class _Bottleneck(nn.Module):
    """ResNet bottleneck 1x1-3x3-1x1 (stride on the 3x3, "v1.5"), projection when needed."""

    width: int
    stride: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, train: bool):
        y = conv(self.width, 1, dtype=self.dtype, use_bias=False)(x)
        y = nn.relu(batch_norm(train, self.dtype)(y))
        y = conv(self.width, 3, stride=self.stride, dtype=self.dtype, use_bias=False)(y)
        y = nn.relu(batch_norm(train, self.dtype)(y))
        y = conv(4 * self.width, 1, dtype=self.dtype, use_bias=False)(y)
        # Zero-init the last BN scale so each block starts as the identity (Goyal et al.).
        y = nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
            scale_init=nn.initializers.zeros,
        )(y)
        if x.shape[-1] != 4 * self.width or self.stride != 1:
            x = conv(4 * self.width, 1, stride=self.stride, dtype=self.dtype, use_bias=False)(x)
            x = batch_norm(train, self.dtype)(x)
        return nn.relu(x + y)


class ResNet50(nn.Module):
    """ResNet-50 (He et al. 2015), bottleneck stages [3, 4, 6, 3], about 25.6M parameters."""

    num_classes: int = 1000
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = normalize(images, IMAGENET_MEAN, IMAGENET_STD, self.dtype)
        x = conv(64, 7, stride=2, padding=((3, 3), (3, 3)), dtype=self.dtype, use_bias=False)(x)
        x = nn.relu(batch_norm(train, self.dtype)(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage, blocks in enumerate((3, 4, 6, 3)):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                x = _Bottleneck(64 * 2**stage, stride, self.dtype)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
