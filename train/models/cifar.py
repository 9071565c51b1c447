"""CIFAR-size classifiers (32x32 inputs): the paper's AllConv, NiN, VGG-16 (C) and a
compact residual net for fast CPU work.

Every module maps float32 [B, H, W, 3] pixel values in [0, 255] to logits [B, K] and
normalises its input itself. `train=True` turns on dropout and batch statistics.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from train.models.common import CIFAR10_MEAN, CIFAR10_STD, batch_norm, conv, dense, normalize


class AllConv(nn.Module):
    """All-CNN-C (Springenberg et al. 2014, table 2), about 1.37M parameters.

    Strided 3x3 convolutions replace pooling; dropout 0.2 on the input and 0.5 after each
    strided layer, as in the paper. The last 1x1 convolution gives the class scores
    without the paper's ReLU: a ReLU there clamps logits at 0 and can leave a class that is
    never predicted (a known failure when training this net from scratch).
    """

    num_classes: int = 10
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = normalize(images, CIFAR10_MEAN, CIFAR10_STD, self.dtype)
        x = nn.Dropout(0.2, deterministic=not train)(x)
        for width in (96, 192):
            x = nn.relu(conv(width, 3, dtype=self.dtype)(x))
            x = nn.relu(conv(width, 3, dtype=self.dtype)(x))
            x = nn.relu(conv(width, 3, stride=2, dtype=self.dtype)(x))
            x = nn.Dropout(0.5, deterministic=not train)(x)
        x = nn.relu(conv(192, 3, padding="VALID", dtype=self.dtype)(x))
        x = nn.relu(conv(192, 1, dtype=self.dtype)(x))
        x = conv(self.num_classes, 1, dtype=self.dtype)(x)
        return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)


class NiN(nn.Module):
    """Network in Network for CIFAR-10 (Lin et al. 2013), about 0.97M parameters.

    Three mlpconv blocks (a spatial convolution followed by two 1x1 convolutions), max
    and average pooling 3x3/2 with dropout 0.5 between them, global average pooling of the
    last block's class maps (no ReLU on those, see AllConv).
    """

    num_classes: int = 10
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = normalize(images, CIFAR10_MEAN, CIFAR10_STD, self.dtype)
        blocks = ((5, 192, 160, 96), (5, 192, 192, 192), (3, 192, 192, self.num_classes))
        for i, (kernel, w0, w1, w2) in enumerate(blocks):
            x = nn.relu(conv(w0, kernel, dtype=self.dtype)(x))
            x = nn.relu(conv(w1, 1, dtype=self.dtype)(x))
            x = conv(w2, 1, dtype=self.dtype)(x)
            if i == 2:
                break
            x = nn.relu(x)
            pool = nn.max_pool if i == 0 else nn.avg_pool
            x = pool(x, (3, 3), strides=(2, 2), padding="SAME")
            x = nn.Dropout(0.5, deterministic=not train)(x)
        return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)


class VGG16Cifar(nn.Module):
    """VGG-16 for 32x32 inputs (Liu and Deng 2015), about 15M parameters.

    The 13 3x3 convolutions of VGG-16 (64-64-M-128-128-M-256x3-M-512x3-M-512x3-M) with
    BatchNorm, then a 512-512-K classifier with dropout 0.5: the usual CIFAR adaptation,
    since the 4096-wide ImageNet head is pointless on a 1x1x512 feature map.
    """

    num_classes: int = 10
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = normalize(images, CIFAR10_MEAN, CIFAR10_STD, self.dtype)
        for width, repeats in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
            for _ in range(repeats):
                x = conv(width, 3, dtype=self.dtype, use_bias=False)(x)
                x = nn.relu(batch_norm(train, self.dtype)(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for _ in range(2):
            x = nn.relu(dense(512, dtype=self.dtype)(x))
            x = nn.Dropout(0.5, deterministic=not train)(x)
        return dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


class _ResidualBlock(nn.Module):
    """Two 3x3 conv-BN-ReLU layers with an identity shortcut."""

    width: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, train: bool):
        y = nn.relu(batch_norm(train, self.dtype)(conv(self.width, 3, dtype=self.dtype)(x)))
        y = batch_norm(train, self.dtype)(conv(self.width, 3, dtype=self.dtype)(y))
        return nn.relu(x + y)


def _conv_bn_relu(x, width: int, train: bool, dtype, stride: int = 1):
    """3x3 conv (no bias) -> BatchNorm -> ReLU, created in the calling compact module."""
    x = conv(width, 3, stride=stride, dtype=dtype, use_bias=False)(x)
    return nn.relu(batch_norm(train, dtype)(x))


class Compact(nn.Module):
    """A compact residual CIFAR net for CPU work: about 0.48M parameters, 123 MFLOP.

    conv 32 -> residual block 32 (32x32) -> strided conv 64 -> block 64 (16x16) ->
    strided conv 128 -> block 128 (8x8) -> global average pool -> dense K. Each
    resolution is processed by one residual block only: enough for 85%+ on CIFAR-10 with
    flip + crop augmentation, at a cost low enough to query many times in an attack.
    """

    num_classes: int = 10
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = normalize(images, CIFAR10_MEAN, CIFAR10_STD, self.dtype)
        for i, width in enumerate((32, 64, 128)):
            x = _conv_bn_relu(x, width, train, self.dtype, stride=1 if i == 0 else 2)
            x = _ResidualBlock(width, self.dtype)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


class CompactFast(nn.Module):
    """A compact net shaped for CPU training: about 0.76M parameters, 49 MFLOP.

    conv 32 (32x32) -> max-pool -> conv 64 (16x16) -> max-pool -> residual block 64
    (8x8) -> conv 128 -> max-pool -> residual block 128 (4x4) -> conv 256 -> global max
    pool -> dense K. It downsamples early because XLA's CPU convolutions, their weight
    gradients above all, are slowest at 32x32 and 16x16 with few channels: its train step
    runs about 2.3x faster than `Compact`'s on a 2-core CPU (benchmarks/README.md).
    """

    num_classes: int = 10
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = normalize(images, CIFAR10_MEAN, CIFAR10_STD, self.dtype)
        x = nn.max_pool(_conv_bn_relu(x, 32, train, self.dtype), (2, 2), (2, 2))  # 16x16
        x = nn.max_pool(_conv_bn_relu(x, 64, train, self.dtype), (2, 2), (2, 2))  # 8x8
        x = _ResidualBlock(64, self.dtype)(x, train)
        x = nn.max_pool(_conv_bn_relu(x, 128, train, self.dtype), (2, 2), (2, 2))  # 4x4
        x = _ResidualBlock(128, self.dtype)(x, train)
        x = _conv_bn_relu(x, 256, train, self.dtype)
        x = jnp.max(x, axis=(1, 2))
        return dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
