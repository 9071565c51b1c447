"""rpx.certify's back-substitution (CROWN) bounds: never above a margin reached by a
sampled colour of the box (random nets covering every relaxed step, and the compact
CIFAR net at small radii), at least the forward bound, and `rpx.certify` with them agrees
pixel by pixel with brute force over every colour of small integer colour sets."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import rpx
import train
from rpx.certification import bounds, crown

ASSETS = os.path.join(os.path.dirname(train.__file__), "assets")
DN = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, stride=1, padding="SAME"):
    return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=DN)


def random_logits(seed, kind, k=4, channels=3, shift=None, high=255.0):
    """A small random CNN's logits: x [B, H, W, C] in 0..high -> [B, k].

    kind "pool": convolutions (SAME, strided with explicit padding), ReLU, a residual
    add, a max pool, a BatchNorm-like affine, a maximum of two colour-dependent values,
    mean and max over the spatial axes concatenated, a dense layer. kind "avg": an
    average pool, a valid strided convolution, clamp and abs, flatten, dense."""
    rng = np.random.default_rng(seed)

    def normal(scale, *shape):
        return jnp.asarray(rng.normal(0.0, scale, shape), jnp.float32)

    w1, w2 = normal(0.5, 3, 3, channels, 6), normal(0.4, 3, 3, 6, 6)
    w3 = normal(0.4, 2, 2, 6, 8)
    gain = jnp.asarray(rng.uniform(0.5, 1.5, 8), jnp.float32)
    mean, var, beta = (
        normal(0.2, 8),
        jnp.asarray(rng.uniform(0.5, 1.5, 8), jnp.float32),
        normal(0.2, 8),
    )
    dense = normal(0.5, 16, k)
    shift = jnp.zeros(k) if shift is None else jnp.asarray(shift, jnp.float32)

    def pool_net(x):
        x = x / high - 0.5
        a = jax.nn.relu(_conv(x, w1))
        a = jax.nn.relu(a + _conv(a, w2))
        a = lax.reduce_window(a, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        c = _conv(a, w3, 2, ((1, 0), (1, 0)))
        c = (c - mean) * gain / jnp.sqrt(var + 1e-5) + beta
        c = jnp.maximum(c, 0.1 * _conv(a, w3, 2, ((1, 0), (1, 0))))
        m = jnp.concatenate([c.mean((1, 2)), c.max((1, 2))], -1)
        return m @ dense + shift

    def avg_net(x):
        x = x / high - 0.5
        a = jax.nn.relu(_conv(x, w1))
        a = lax.reduce_window(a, 0.0, lax.add, (1, 2, 2, 1), (1, 1, 1, 1), "SAME") / 4.0
        c = _conv(a, w3, 2, "VALID") * gain + beta
        c = jnp.clip(c, -1.0, 1.0) + 0.3 * jnp.abs(c)
        flat = c.reshape(c.shape[0], -1)
        return flat[:, :16] @ dense + shift

    return pool_net if kind == "pool" else avg_net


def _sampled_margins(logits, image, pixels, mid, rad, goal, targeted, rng, samples):
    """[S, B, K] margins at uniform colours of each box (its corners first)."""
    b, c = mid.shape
    t = rng.uniform(-1.0, 1.0, (samples, b, c))
    t[: 2**c] = np.array(np.meshgrid(*[[-1.0, 1.0]] * c, indexing="ij")).reshape(c, -1).T[:, None]
    colours = mid[None] + rad[None] * t
    images = np.repeat(image[None], samples * b, 0).reshape(samples, b, *image.shape).copy()
    for i, (row, col) in enumerate(pixels):
        images[:, i, row, col] = colours[:, i]
    z = np.asarray(jax.jit(logits)(jnp.asarray(images.reshape(-1, *image.shape))))
    z = z.reshape(samples, b, -1).astype(np.float64)
    zg = np.take_along_axis(z, goal[None, :, None], 2)
    return (z - zg) if targeted else (zg - z)


def _check_margins(predict, logits, image, params, pixels, radii, targeted, rng, samples):
    """Every bound at or below every sampled margin; CROWN's at least the forward one.
    Returns {radius: (forward median, crown median, crown better somewhere)} of the
    weakest margin."""
    h, w, c = image.shape
    bplan = bounds.analyse(predict, (h, w, c), params)
    cache = bounds.clean_cache(bplan, jnp.asarray(image[None], jnp.float32), params)
    k = bplan.num_classes
    b = len(pixels)
    clean = image[pixels[:, 0], pixels[:, 1]].astype(np.float32)
    goal = rng.integers(0, k, b) if targeted else np.full(b, int(np.argmax(logits(image[None]))))
    found = {}
    for r in radii:
        mid = np.clip(clean, r, 255 - r) if r < 127.5 else np.full_like(clean, 127.5)
        rad = np.full_like(clean, r)
        got = {}
        for use in (False, True):
            run = bounds.program(bplan, targeted, params is not None, use)
            lo, worst, _ = run(cache, pixels, mid, rad, goal.astype(np.int32), params)
            got[use] = np.asarray(lo, np.float64), np.asarray(worst)
        sampled = _sampled_margins(logits, image, pixels, mid, rad, goal, targeted, rng, samples)
        least = sampled.min(0)
        for use in (False, True):
            lo = got[use][0]
            finite = np.isfinite(lo)
            slack = 1e-4 * (1.0 + np.abs(least))
            assert np.all(lo[finite] <= least[finite] + slack[finite]), (use, r)
            # The worst colour lies in the box.
            assert np.all(np.abs(got[use][1] - mid) <= rad + 1e-3)
        fin = np.isfinite(got[False][0])
        assert np.all(got[True][0][fin] >= got[False][0][fin] - 1e-6)
        pick = np.max if targeted else np.min
        weakest = [pick(got[u][0], 1) for u in (False, True)]
        found[r] = (*(float(np.median(x)) for x in weakest), bool((weakest[1] > weakest[0]).any()))
    return found


@pytest.mark.parametrize("kind", ["pool", "avg"])
@pytest.mark.parametrize("targeted", [False, True])
def test_crown_margins_below_sampled_margins_random_nets(kind, targeted):
    rng = np.random.default_rng(3)
    logits = random_logits(11, kind)

    def predict(x):
        return jax.nn.softmax(logits(x))

    image = rng.integers(0, 256, (8, 8, 3)).astype(np.float32)
    pixels = rng.integers(0, 8, (24, 2)).astype(np.int32)
    found = _check_margins(predict, logits, image, None, pixels, [0, 4, 32, 127.5], targeted,
                           rng, 200)  # fmt: skip
    # Back-substitution tightens the wide boxes.
    assert found[127.5][2]


@functools.cache
def compact_fast():
    """The shipped compact_fast classifier, one `predict` for the module: its bound
    programs, compiled for chunks of 16 boxes, serve both tests that use it."""
    return train.load_classifier(os.path.join(ASSETS, "cifar10_compact_fast"))[0]


def test_crown_margins_below_sampled_margins_compact_fast():
    predict = compact_fast()

    def logits(x):
        return jnp.log(predict(jnp.asarray(x, jnp.float32)))

    image = np.load(os.path.join(ASSETS, "cifar10_test_sample100.npz"))["image"][0]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 32, (16, 2)).astype(np.int32)
    found = _check_margins(predict, logits, image.astype(np.float32), None, pixels,
                           [0, 1, 4], False, rng, 32)  # fmt: skip
    assert found[1][1] > found[1][0] and found[4][1] > found[4][0]


def _truth(predict, images, goals, targeted, high):
    """bool [N, H, W]: some colour of 0..high per channel at that pixel succeeds."""
    n, h, w, c = images.shape
    grid = np.stack(np.meshgrid(*[np.arange(high + 1)] * c, indexing="ij"), -1).reshape(-1, c)
    fooled = np.zeros((n, h, w), bool)
    run = jax.jit(predict)
    for i in range(n):
        batch = np.repeat(images[i][None], h * w * len(grid), 0).reshape(h, w, len(grid), h, w, c)
        for row in range(h):
            for col in range(w):
                batch[row, col, :, row, col] = grid
        probs = np.asarray(run(jnp.asarray(batch.reshape(-1, h, w, c), jnp.float32)))
        top = probs.argmax(-1).reshape(h, w, -1)
        hit = (top == goals[i]) if targeted else (top != goals[i])
        fooled[i] = hit.any(-1)
    return fooled


@pytest.mark.parametrize("kind", ["pool", "avg"])
@pytest.mark.parametrize("targeted", [False, True])
def test_certify_with_crown_matches_brute_force(kind, targeted, monkeypatch):
    """Planted near-boundary images (the clean logits shifted to 0, .05, .1, .15): every
    pixel of every image is proved safe exactly when no colour of 0..7 fools it, fooled
    exactly when one does."""
    size, high = 6, 7
    rng = np.random.default_rng(7 + targeted)
    base = rng.integers(0, high + 1, (size, size, 3)).astype(np.uint8)
    plain = random_logits(5, kind, high=high)
    shift = -np.asarray(plain(jnp.asarray(base[None], jnp.float32)))[0] + [0, 0.05, 0.1, 0.15]
    logits = random_logits(5, kind, shift=shift, high=high)

    def predict(x):
        return jax.nn.softmax(logits(x))

    images = np.repeat(base[None], 3, 0)
    for i in range(1, 3):
        for row, col in rng.integers(0, size, (2, 2)):
            images[i, row, col] = rng.integers(0, high + 1, 3)
    labels = np.asarray(predict(jnp.asarray(images, jnp.float32))).argmax(-1)
    target = np.array([(lab + 1 + i) % 4 for i, lab in enumerate(labels)]) if targeted else None
    calls = []
    program = bounds.program

    def counted(bplan, targeted, with_params, use_crown=True):
        run = program(bplan, targeted, with_params, use_crown)

        def counting(*args):
            out = run(*args)
            calls.append((use_crown, int(np.asarray(out[2]).sum())))
            return out

        return counting

    monkeypatch.setattr(bounds, "program", counted)
    cert = rpx.certify(predict, images, labels, target=target, value_range=(0, high),
                       max_boxes=4096, search_steps=0, chunk_size=32, progress=False)  # fmt: skip
    truth = _truth(predict, images, target if targeted else labels, targeted, high)
    assert not np.asarray(cert.undecided).any()
    np.testing.assert_array_equal(np.asarray(cert.fooled), truth)
    np.testing.assert_array_equal(np.asarray(cert.safe), ~truth)
    assert truth.any() and (~truth).any()
    assert any(use for use, _ in calls)  # the boxes the forward bounds left open


def test_relaxation_pieces_enclose_their_functions():
    """Every lower piece below and every upper piece above its function on [lo, hi]
    (random intervals straddling, above and below the kink; constants c = -inf too)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 2, (2, 4000)).astype(np.float32)
    lo, hi = jnp.asarray(np.minimum(a, b)), jnp.asarray(np.maximum(a, b))
    x = lo + (hi - lo) * jnp.asarray(rng.uniform(0, 1, (64, 4000)), jnp.float32)
    c = jnp.asarray(np.where(rng.uniform(size=4000) < 0.1, -np.inf, rng.normal(0, 1, 4000)),
                    jnp.float32)  # fmt: skip
    cases = [
        (crown.relu_pieces(lo, hi), jnp.maximum(x, 0.0)),
        (crown.max_const_pieces(lo, hi, c), jnp.maximum(x, c)),
        (crown.abs_pieces(lo, hi), jnp.abs(x)),
        (crown.monotone_pieces("tanh", lo, hi), jnp.tanh(x)),
        (crown.monotone_pieces("rsqrt", jnp.abs(lo) + 0.1, jnp.abs(lo) + 1.0),
         None),
    ]  # fmt: skip
    for (a_l, b_l, a_u, b_u), y in cases[:4]:
        assert np.all(np.asarray(a_l * x + b_l) <= np.asarray(y) + 1e-5)
        assert np.all(np.asarray(a_u * x + b_u) >= np.asarray(y) - 1e-5)
    (a_l, b_l, a_u, b_u), _ = cases[4]
    z = jnp.abs(lo) + 0.1 + 0.9 * jnp.asarray(rng.uniform(0, 1, (64, 4000)), jnp.float32)
    y = 1.0 / jnp.sqrt(z)
    assert np.all(np.asarray(b_l) <= np.asarray(y) + 1e-5) and np.all(a_l == 0)
    assert np.all(np.asarray(b_u) >= np.asarray(y) - 1e-5) and np.all(a_u == 0)


def test_mean_pooled_head_is_bounded():
    """Logits as a spatial mean (a sum, then a division: the head of AllConv and NiN)
    under softmax: analysed (the max over classes after the division is an opaque per-row
    value), and its bounds hold."""
    rng = np.random.default_rng(1)
    w1 = jnp.asarray(rng.normal(0, 0.5, (3, 3, 3, 6)), jnp.float32)
    w2 = jnp.asarray(rng.normal(0, 0.5, (1, 1, 6, 4)), jnp.float32)

    def summed(x):
        a = jax.nn.relu(_conv(x / 255.0 - 0.5, w1))
        return _conv(a, w2).sum((1, 2))

    def predict(x):
        return jax.nn.softmax(summed(x) / 36.0)

    image = rng.integers(0, 256, (6, 6, 3)).astype(np.float32)
    pixels = rng.integers(0, 6, (12, 2)).astype(np.int32)
    # The margins are bounded on the values before the head's positive scale: the sums.
    _check_margins(predict, summed, image, None, pixels, [0, 8, 127.5], False, rng, 100)


def test_back_substitution_skipped_only_far_from_a_proof(monkeypatch):
    """compact_fast: over the whole colour cube the forward margins lie orders of
    magnitude beyond CROWN's reach, so back-substitution is skipped (the pixels stay
    undecided); at radius 1 around the clean colours it runs and proves pixels."""
    predict = compact_fast()
    data = np.load(os.path.join(ASSETS, "cifar10_test_sample100.npz"))
    images, labels = data["image"][:1], data["label"][:1].astype(np.int32)
    region = np.zeros((1, 32, 32), bool)
    region[0, 10:14, 10:14] = True
    program = bounds.program
    calls = []

    def counted(bplan, targeted, with_params, use_crown=True):
        run = program(bplan, targeted, with_params, use_crown)

        def counting(*args):
            out = run(*args)
            calls.append((use_crown, len(args[1])))
            return out

        return counting

    monkeypatch.setattr(bounds, "program", counted)
    whole = rpx.certify(predict, images, labels, region, max_boxes=1, search_steps=0,
                        chunk_size=16, progress=False)  # fmt: skip
    assert calls and not any(use for use, _ in calls)
    assert not np.asarray(whole.safe).any()
    calls.clear()
    near = rpx.certify(predict, images, labels, region, radius=1, max_boxes=1, search_steps=0,
                       chunk_size=16, progress=False)  # fmt: skip
    assert any(use for use, _ in calls)
    assert np.asarray(near.safe).any()
