"""rpx.certify on a net whose logits end in a global mean (sum, then division by the
map's area) before the softmax, as the paper's AllConv and NiN do: the division already
reads as the softmax head, and the head's max over classes must still be followed."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

import rpx


def _net(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    w1 = jax.random.normal(k1, (3, 3, 3, 6)) * 0.02
    w2 = jax.random.normal(k2, (1, 1, 6, 4)) * 0.5
    dn = ("NHWC", "HWIO", "NHWC")

    def predict(x):
        h = jax.nn.relu(
            jax.lax.conv_general_dilated(x / 255.0 * 40, w1, (1, 1), "SAME", dimension_numbers=dn)
        )
        z = jax.lax.conv_general_dilated(h, w2, (1, 1), "SAME", dimension_numbers=dn)
        return jax.nn.softmax(z.sum((1, 2)) / (z.shape[1] * z.shape[2]), axis=-1)

    return predict


def test_certify_follows_a_global_mean_into_the_softmax():
    predict = _net()
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3)).astype(np.uint8)
    labels = np.asarray(predict(jnp.asarray(images, jnp.float32))).argmax(1).astype(np.int32)
    cert = rpx.certify(predict, images, labels, max_boxes=16, progress=False)
    safe, fooled = np.asarray(cert.safe), np.asarray(cert.fooled)
    assert (safe | fooled | np.asarray(cert.undecided)).all()
    grid = np.array(list(itertools.product((0, 51, 102, 153, 204, 255), repeat=3)), np.uint8)
    for n, i, j in zip(*np.nonzero(safe | fooled), strict=True):
        x = np.repeat(images[n : n + 1], len(grid), 0)
        x[:, i, j] = grid
        wrong = np.asarray(predict(jnp.asarray(x, jnp.float32))).argmax(1) != labels[n]
        assert not (safe[n, i, j] and wrong.any())  # no grid colour fools a safe pixel
        if fooled[n, i, j]:
            x = images[n : n + 1].astype(np.float32).copy()
            x[0, i, j] = np.asarray(cert.witness)[n, i, j]
            assert np.asarray(predict(jnp.asarray(x))).argmax(1)[0] != labels[n]
