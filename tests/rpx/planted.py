"""Planted-vulnerability classifiers: tiny `predict` functions whose weak spot is known.

Each one flips only when a pixel inside a known patch takes (nearly) a known colour, so
a test knows exactly where and what a successful attack must change.
"""

import jax
import jax.numpy as jnp
import numpy as np

RED = jnp.array([255.0, 0.0, 0.0])
BLUE = jnp.array([0.0, 0.0, 255.0])
PATCH = ((2, 5), (3, 6))  # (rows, columns) of the models' weak spot, unless told otherwise


def closeness(images, patch, color):
    """[B]: max over the patch's pixels of 1 - distance to `color` / 200, floored at 0."""
    (r0, r1), (c0, c1) = patch
    pixels = images[:, r0:r1, c0:c1, :]
    distance = jnp.sqrt(jnp.sum((pixels - color) ** 2, axis=-1))
    return jnp.max(jnp.maximum(0.0, 1.0 - distance / 200.0), axis=(1, 2))


def one_pixel_model(patch=PATCH, color=RED):
    """Two classes: 1 once a patch pixel is within 50 of `color`, else 0."""

    def predict(images):
        z = 20.0 * (closeness(images, patch, color) - 0.75)
        return jax.nn.softmax(jnp.stack([jnp.zeros_like(z), z], axis=-1), axis=-1)

    return predict


def three_class_model(patch=PATCH):
    """Class 0 by default, 1 for a red patch pixel, 2 for a blue one."""

    def predict(images):
        red = 20.0 * (closeness(images, patch, RED) - 0.75)
        blue = 20.0 * (closeness(images, patch, BLUE) - 0.75)
        return jax.nn.softmax(jnp.stack([jnp.zeros_like(red), red, blue], axis=-1), axis=-1)

    return predict


def two_pixel_model(patch_a=((0, 3), (0, 3)), patch_b=((5, 8), (5, 8))):
    """Class 1 only when a pixel of patch A is red AND a pixel of patch B is blue."""

    def predict(images):
        both = closeness(images, patch_a, RED) + closeness(images, patch_b, BLUE)
        z = 20.0 * (both - 1.5)
        return jax.nn.softmax(jnp.stack([jnp.zeros_like(z), z], axis=-1), axis=-1)

    return predict


def grey_images(n, h=8, w=8, seed=0, dtype=np.uint8):
    """[N, H, W, 3] mid-grey images with a little noise: far from RED and BLUE."""
    rng = np.random.default_rng(seed)
    return (120 + rng.integers(0, 16, (n, h, w, 3))).astype(dtype)


def patch_mask(h, w, patch):
    (r0, r1), (c0, c1) = patch
    mask = np.zeros((h, w), bool)
    mask[r0:r1, c0:c1] = True
    return mask


def in_patch(positions, patch=PATCH):
    """[...] bool: whether each (row, col) of `positions` [..., 2] lies inside `patch`."""
    (r0, r1), (c0, c1) = patch
    r, c = positions[..., 0], positions[..., 1]
    return (r >= r0) & (r < r1) & (c >= c0) & (c < c1)


def nan_model(patch=PATCH, color=RED):
    """Class 1 on every image, except NaN probabilities once a patch pixel is within 50
    of `color`: a model whose only "weak spot" is broken output, never a real success."""

    def predict(images):
        near = closeness(images, patch, color) > 0.75
        probs = jnp.broadcast_to(jnp.array([0.2, 0.8]), (images.shape[0], 2))
        return jnp.where(near[:, None], jnp.nan, probs)

    return predict


def hidden_color_model(pixel=(3, 4), color=(100.0, 60.0, 200.0), reach=24.0, offset=1.0):
    """Two classes: 1 only when `pixel` lies within L1 distance reach - 2 * offset of
    `color`, a colour far from every corner of the cube (which `rpx.pixel_map` tries),
    so only a search over all colours finds it; class 1's logit rises towards `color`
    within `reach`. Written with ReLUs, slices and sums only, ops `rpx.certify` bounds."""
    r, c = pixel
    color = jnp.asarray(color, jnp.float32)

    def predict(images):
        x = jax.lax.slice(images, (0, r, c, 0), (images.shape[0], r + 1, c + 1, 3))
        x = x.reshape(-1, 3)
        distance = (jax.nn.relu(x - color) + jax.nn.relu(color - x)).sum(-1)
        z = 0.5 * jax.nn.relu(reach - distance) - offset
        return jax.nn.softmax(jnp.stack([jnp.zeros_like(z), z], axis=-1), axis=-1)

    return predict
