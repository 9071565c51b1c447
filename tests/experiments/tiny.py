"""A tiny CIFAR-shaped classifier and made-up data for the experiment tests."""

import jax
import jax.numpy as jnp
import numpy as np


def tiny_predict(num_classes=10, seed=0, scale=6.0, peak_scale=6.0):
    """float32 [B, 32, 32, 3] in [0, 255] -> probs [B, K]: a random linear map of 8x8
    block means plus, per class, the image's peak of a random colour direction, so one
    pixel of the right colour can lift a class (a one-pixel attack often, not always,
    succeeds on the mock images)."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    w = jax.random.normal(k1, (48, num_classes)) * scale
    u = jax.random.normal(k2, (3, num_classes))

    def predict(images):
        b = images.shape[0]
        blocks = images.reshape(b, 4, 8, 4, 8, 3).mean((2, 4)) / 255.0 - 0.5
        peak = jnp.max((images / 255.0 - 0.5) @ u, axis=(1, 2))
        return jax.nn.softmax(blocks.reshape(b, 48) @ w + peak_scale * peak, axis=-1)

    return predict


def mock_cifar(path, n=24, seed=0, wrong=4):
    """Write path.npz: uint8 [n, 32, 32, 3] images with a centre square of one colour on
    a noisy background of another (so GrabCut finds a foreground), labels = the tiny model's
    predictions except the first `wrong` (to test that only correct images are picked)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 200, (n, 1, 1, 3)) + rng.integers(0, 40, (n, 32, 32, 3))
    images[:, 10:22, 10:22] = rng.integers(0, 255, (n, 1, 1, 3))
    images = images.astype(np.uint8)
    predicted = np.asarray(tiny_predict()(jnp.asarray(images, jnp.float32))).argmax(1)
    labels = predicted.copy()
    labels[:wrong] = (predicted[:wrong] + 1) % 10
    np.savez(path, image=images, label=labels.astype(np.uint8))
    return images, labels
