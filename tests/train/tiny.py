"""A tiny classifier registered as "tiny" for fast training-loop tests."""

import flax.linen as nn
import jax.numpy as jnp

from train import models
from train.models.common import batch_norm, conv


class Tiny(nn.Module):
    """conv 8 - BN - ReLU - global pool - dense: compiles and trains in a second."""

    num_classes: int = 2
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = images.astype(self.dtype) / 255.0
        x = nn.relu(batch_norm(train, self.dtype)(conv(8, 3, dtype=self.dtype)(x)))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


models.register("tiny", models.Spec(Tiny, 8, 2, "test"))
