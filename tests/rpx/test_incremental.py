"""rpx.incremental: one-pixel probabilities from cached clean activations equal a full
forward pass on the changed images, computed here independently, for the CIFAR nets,
a shipped checkpoint and random CNNs; the window tables contain every changed position;
bad input raises ValueError."""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rpx
import train
from rpx import incremental
from rpx.incremental import windows

ATOL = 1e-5
ASSETS = os.path.join(os.path.dirname(train.__file__), "assets")


def reference(predict, images, positions, colors, params=None):
    """float32 [N, M, K]: predict on every changed image, built one at a time in numpy
    (`predict(params, x)` when params are given)."""
    images = np.asarray(images)
    changed = []
    for n in range(images.shape[0]):
        for m in range(positions.shape[1]):
            image = images[n].copy()
            row, col = positions[n, m]
            image[row, col] = np.asarray(colors[n, m]).astype(images.dtype)
            changed.append(image.astype(np.float32))
    changed = jnp.asarray(np.stack(changed))
    if params is None:
        probs = jax.jit(predict)(changed)
    else:
        probs = jax.jit(predict)(params, changed)
    probs = np.asarray(probs)
    return probs.reshape(images.shape[0], positions.shape[1], -1)


def border_positions(h, w, extra, rng):
    """The four corners, a pixel inside each border, then `extra` random pixels."""
    fixed = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]
    fixed += [(0, w // 2), (h - 1, w // 3), (h // 2, 0), (h // 3, w - 1), (1, 1), (h - 2, w - 2)]
    rand = np.stack([rng.integers(0, h, extra), rng.integers(0, w, extra)], -1)
    return np.concatenate([np.array(fixed), rand]).astype(np.int32)


def candidates(images, extra, rng, uint8=True):
    n, h, w, c = images.shape
    positions = np.stack([border_positions(h, w, extra, rng) for _ in range(n)])
    m = positions.shape[1]
    if uint8:
        colors = rng.integers(0, 256, (n, m, c)).astype(np.float32)
    else:
        colors = rng.uniform(0, 255, (n, m, c)).astype(np.float32)
    return positions, colors


def check_equal(
    predict, images, positions, colors, evaluation="incremental", params=None, require=None
):
    """one_pixel_probs == reference within ATOL; `require` (default: assert) is given
    whether the changed pixel moves the probabilities at all (else equality is vacuous)."""
    got = incremental.one_pixel_probs(
        predict, images, positions, colors, evaluation=evaluation, params=params
    )
    got = np.asarray(got)
    want = reference(predict, images, positions, colors, params)
    informative = bool(np.ptp(want, axis=1).max() > 10 * ATOL)
    if require is None:
        assert informative
    else:
        require(informative)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    return got


def cifar_predict(name):
    apply, variables = train.models.init(name, jax.random.key(1))
    return lambda x: jax.nn.softmax(apply(variables, x))


def cifar_images(n):
    return np.load(os.path.join(ASSETS, "cifar10_test_sample100.npz"))["image"][:n]


@pytest.mark.parametrize(
    "name, extra, least_ratio",
    [("compact", 6, 2.0), ("compact_fast", 6, 1.2), ("allconv", 6, 4.0), ("nin", 6, 3.0)],
)
def test_cifar_nets_equal_full_pass(name, extra, least_ratio):
    predict = cifar_predict(name)
    images = cifar_images(2)
    positions, colors = candidates(images, extra, np.random.default_rng(0))
    check_equal(predict, images, positions, colors)
    plan = incremental.analyse(predict, images.shape[1:])
    assert plan.windowed_ops > 10 and plan.saves_work and plan.flop_ratio > least_ratio
    assert 0 < plan.cache_bytes < 8 << 20


@pytest.mark.slow
def test_vgg16_cifar_equal_full_pass():
    # Weights as an argument: XLA compiles the 15M parameters much faster than as constants.
    model = train.models.module("vgg16_cifar")
    variables = train.models.init_variables(model, jax.random.key(1), 32)

    def predict(params, x):
        return jax.nn.softmax(model.apply(params, x, train=False))

    images = cifar_images(1)
    positions = np.array([[(0, 0), (31, 31), (0, 31), (17, 5)]], np.int32)
    colors = np.array([[(255, 0, 0), (0, 0, 0), (255, 255, 255), (3, 200, 77)]], np.float32)
    got = incremental.one_pixel_probs(
        predict, images, positions, colors, params=variables, evaluation="incremental"
    )
    want = reference(predict, images, positions, colors, variables)
    np.testing.assert_allclose(got, want, atol=ATOL)


@pytest.mark.parametrize("flip_tta", [False, True])
def test_shipped_checkpoint_equal_full_pass(flip_tta):
    # flip_tta mirrors the image (a `rev` of the width axis) for a second forward pass.
    predict, _ = train.load_classifier(
        os.path.join(ASSETS, "cifar10_compact_fast"), flip_tta=flip_tta
    )
    images = cifar_images(2)
    positions, colors = candidates(images, 4, np.random.default_rng(1))
    check_equal(predict, images, positions, colors)
    check_equal(predict, images, positions, colors, evaluation="auto")


def test_clean_cache_is_read():
    # The window path must take the unchanged pixels from the clean cache: the cache of
    # other images gives other probabilities (so equality above is not vacuous).
    predict = cifar_predict("allconv")
    images = cifar_images(3).astype(np.float32)
    plan = incremental.analyse(predict, images.shape[1:])
    positions = jnp.array([[4, 5], [31, 0]])
    colors = jnp.array([[255.0, 0, 0], [0, 0, 255]])

    @jax.jit
    def probs(images):
        cache = incremental.clean_cache(plan, images)
        return incremental.window_probs(plan, cache, jnp.array([0, 1]), positions, colors)

    own, other = probs(images[:2]), probs(images[1:])
    want = reference(
        predict, images[:2], np.asarray(positions)[:, None], np.asarray(colors)[:, None]
    )
    np.testing.assert_allclose(own, want[:, 0], atol=ATOL)
    assert np.abs(np.asarray(other) - want[:, 0]).max() > 1e-3


def test_building_blocks_compose_under_jit_and_fori_loop():
    predict = cifar_predict("compact_fast")
    images = cifar_images(2)
    positions, colors = candidates(images, 2, np.random.default_rng(2))
    plan = incremental.analyse(predict, images.shape[1:])
    m = positions.shape[1]

    @jax.jit
    def scan(images, positions, colors):
        cache = incremental.clean_cache(plan, images)

        def body(j, out):
            probs = incremental.window_probs(
                plan, cache, jnp.arange(2), positions[:, j], colors[:, j].astype(jnp.uint8)
            )
            return out.at[:, j].set(probs)

        return jax.lax.fori_loop(0, m, body, jnp.zeros((2, m, plan.num_classes)))

    got = scan(images, positions, colors)
    np.testing.assert_allclose(got, reference(predict, images, positions, colors), atol=ATOL)


def test_uint8_and_float_images_fractional_colors():
    predict = cifar_predict("compact")
    images = cifar_images(2)
    positions, colors = candidates(images, 3, np.random.default_rng(3), uint8=False)
    # uint8 images: the fractional colour is cast to uint8 first, as a changed uint8 image.
    got = check_equal(predict, images, positions, colors)
    floats = check_equal(predict, images.astype(np.float32), positions, colors)
    assert np.abs(got - floats).max() > 0  # the cast matters, and both match the full pass


def test_params_argument_and_groups_and_chunks(monkeypatch):
    model = train.models.module("compact_fast")
    variables = train.models.init_variables(model, jax.random.key(4), 32)

    def predict(params, x):
        return jax.nn.softmax(model.apply(params, x, train=False))

    images = cifar_images(3)
    positions, colors = candidates(images, 1, np.random.default_rng(4))
    # Force several groups of images (tiny cache budget) and a padded last chunk.
    monkeypatch.setattr(rpx.evaluate, "CACHE_BUDGET_BYTES", 1)
    got = incremental.one_pixel_probs(
        predict, images, positions, colors, params=variables, chunk_size=7, evaluation="incremental"
    )
    want = reference(predict, images, positions, colors, variables)
    np.testing.assert_allclose(got, want, atol=ATOL)
    full = incremental.one_pixel_probs(
        predict, images, positions, colors, params=variables, evaluation="full"
    )
    np.testing.assert_allclose(full, want, atol=ATOL)
    # A numpy integer is a chunk size like any int (it was refused).
    numpy_chunk = incremental.one_pixel_probs(
        predict, images, positions, colors, params=variables, chunk_size=np.int64(7),
        evaluation="incremental",
    )  # fmt: skip
    np.testing.assert_array_equal(numpy_chunk, got)


def test_spatial_transpose_and_unfollowable_model_stay_exact():
    rng = np.random.default_rng(5)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 4)) * 0.1, jnp.float32)
    dense = jnp.asarray(rng.normal(size=(8 * 8 * 3, 5)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)

    def transposed(x):  # rows and columns swapped before a strided convolution
        y = jax.lax.conv_general_dilated(
            x.transpose(0, 2, 1, 3) / 64.0,
            kernel,
            (2, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return jax.nn.softmax(jnp.mean(jax.nn.relu(y), (1, 2)) @ head)

    def flattened(x):  # the first op mixes the spatial axes: nothing to follow
        return jax.nn.softmax(x.reshape(x.shape[0], -1) / 255.0 @ dense)

    images = rng.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    positions, colors = candidates(images, 4, rng)
    for predict in (transposed, flattened):
        for evaluation in ("incremental", "auto", "full"):
            check_equal(predict, images, positions, colors, evaluation=evaluation)
    assert not incremental.analyse(flattened, (8, 8, 3)).saves_work


def test_global_max_and_dense_heads_fall_back_exactly():
    rng = np.random.default_rng(6)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 4)) * 0.1, jnp.float32)

    def head(kind):
        def predict(x):
            y = jax.lax.conv_general_dilated(
                x / 255.0, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            y = jax.nn.relu(y)
            z = jnp.max(y, (1, 2)) if kind == "max" else y.reshape(y.shape[0], -1)[:, :5]
            return jax.nn.softmax(z[:, :4])

        return predict

    images = rng.uniform(0, 255, (2, 12, 12, 3)).astype(np.float32)
    positions, colors = candidates(images, 2, rng, uint8=False)
    for kind in ("max", "flatten"):
        check_equal(head(kind), images, positions, colors)


def test_op_zoo_windowed_and_exact():
    # NCHW dilated convolution with uneven explicit padding, a depthwise convolution, a
    # per-pixel dense layer, a channel concatenation, max/min/average pooling over negative
    # activations with padding (their pad values differ), a positional constant added and
    # padding left out of the average (constants that vary over the map): all windowed.
    rng = np.random.default_rng(7)

    def weights(*shape):
        return jnp.asarray(rng.normal(size=shape) / np.sqrt(np.prod(shape[1:])), jnp.float32)

    k_nchw, k_depth, dense, head = (
        weights(4, 3, 3, 3),
        weights(3, 3, 1, 4),
        weights(4, 6),
        weights(10, 5),
    )
    position = weights(1, 24, 24, 3)

    def predict(x):
        x = (x - 128.0) / 64.0 + position
        y = jax.lax.conv_general_dilated(
            x.transpose(0, 3, 1, 2),
            k_nchw,
            (1, 1),
            ((2, 1), (0, 3)),
            rhs_dilation=(2, 1),
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        ).transpose(0, 2, 3, 1)
        y = jax.lax.conv_general_dilated(
            y,
            k_depth,
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=4,
        )
        y = jnp.concatenate([y, y @ dense], axis=-1)
        y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
        y = jax.lax.reduce_window(
            y, jnp.inf, jax.lax.min, (1, 2, 2, 1), (1, 1, 1, 1), ((0, 0), (1, 0), (0, 1), (0, 0))
        )
        y = nn.avg_pool(y, (2, 2), padding="SAME", count_include_pad=False)
        return jax.nn.softmax(jnp.mean(y, (1, 2)) @ head)

    images = rng.integers(0, 256, (2, 24, 24, 3)).astype(np.uint8)
    positions, colors = candidates(images, 4, rng)
    check_equal(predict, images, positions, colors)
    plan = incremental.analyse(predict, (24, 24, 3))
    decided = {}
    for name, what in plan.steps:  # the first decision per primitive: the spatial ones
        decided.setdefault(name, what.split()[0])
    for name in (
        "conv_general_dilated",
        "dot_general",
        "concatenate",
        "transpose",
        "reduce_window_max",
        "reduce_window_min",
        "reduce_window_sum",
    ):
        assert decided[name] == "window", plan.describe()
    assert all(what != "materialize" for _, what in plan.steps), plan.describe()


@jax.custom_vjp
def _sine(x):
    return jnp.sin(x)


_sine.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x),))


class NormsAndCalls(nn.Module):
    """LayerNorm (per-pixel statistics: windowed), GELU and a custom_vjp function under
    jax.checkpoint (inlined calls), swish, and GroupNorm (statistics over the whole map:
    the window is written back and the rest runs in full)."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (3, 3))(x / 255.0)
        x = jax.checkpoint(lambda y: nn.gelu(y) + _sine(y))(x)
        x = nn.swish(nn.Conv(8, (3, 3), strides=2)(nn.LayerNorm()(x)))
        x = nn.GroupNorm(num_groups=2)(x)
        return nn.Dense(5)(x.mean((1, 2)))


def test_norms_activations_and_calls():
    model = NormsAndCalls()
    variables = model.init(jax.random.key(8), jnp.zeros((1, 16, 16, 3)))

    def predict(x):
        return jax.nn.softmax(model.apply(variables, x))

    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    positions, colors = candidates(images, 4, rng)
    check_equal(predict, images, positions, colors)
    steps = incremental.analyse(predict, (16, 16, 3)).steps
    assert ("tanh", "window 3x3 of 16x16") in steps and ("sin", "window 3x3 of 16x16") in steps
    assert ("sub", "materialize") in steps  # GroupNorm's centring


class RandomCNN(nn.Module):
    """A small CNN from a list of layer specs (see `layers`)."""

    specs: tuple
    head: str
    classes: int

    @nn.compact
    def __call__(self, x):
        x = (x - 120.0) / 60.0
        for spec in self.specs:
            kind = spec[0]
            if kind == "conv":
                _, features, kernel, stride, padding = spec
                x = nn.Conv(features, (kernel, kernel), (stride, stride), padding)(x)
            elif kind == "bn":
                x = nn.relu(nn.BatchNorm(use_running_average=True)(x))
            elif kind in ("max", "avg"):
                _, window, stride, padding = spec
                pool = nn.max_pool if kind == "max" else nn.avg_pool
                x = pool(x, (window, window), (stride, stride), padding)
            elif kind == "res":
                _, kernel = spec
                y = nn.relu(nn.Conv(x.shape[-1], (kernel, kernel))(x))
                x = nn.relu(x + nn.Conv(x.shape[-1], (kernel, kernel))(y))
        if self.head == "mean":
            x = jnp.mean(x, (1, 2))
        elif self.head == "max":
            x = jnp.max(x, (1, 2))
        else:
            x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.classes)(x)


@st.composite
def random_cnns(draw):
    image_size = size = draw(st.sampled_from([8, 12]))
    specs = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "conv", "bn", "max", "avg", "res"]))
        padding = draw(st.sampled_from(["SAME", "VALID"]))
        if kind == "conv":
            kernel, stride = draw(st.integers(1, 5)), draw(st.integers(1, 2))
            if padding == "VALID" and kernel > size:
                padding = "SAME"
            features = draw(st.integers(2, 6))
            specs.append(("conv", features, kernel, stride, padding))
            size = -(-size // stride) if padding == "SAME" else (size - kernel) // stride + 1
        elif kind in ("max", "avg"):
            window, stride = draw(st.integers(2, 3)), draw(st.integers(1, 2))
            if padding == "VALID" and window > size:
                padding = "SAME"
            specs.append((kind, window, stride, padding))
            size = -(-size // stride) if padding == "SAME" else (size - window) // stride + 1
        elif kind == "res":
            specs.append(("res", draw(st.sampled_from([1, 3]))))
        else:
            specs.append(("bn",))
    head = draw(st.sampled_from(["mean", "max", "flatten"]))
    return tuple(specs), head, draw(st.integers(0, 10**6)), image_size


@settings(max_examples=6, deadline=None)
@given(random_cnns(), st.booleans())
def test_random_cnns_equal_full_pass(net, uint8):
    specs, head, seed, size = net
    model = RandomCNN(specs, head, 4)
    x = jnp.zeros((1, size, size, 3))
    variables = model.init(jax.random.key(seed), x)
    # Non-trivial BatchNorm statistics, so the inference-mode affine map matters.
    rng = np.random.default_rng(seed)
    if "batch_stats" in variables:
        stats = {
            name: {
                "mean": jnp.asarray(rng.normal(0.0, 0.5, bn["mean"].shape), jnp.float32),
                "var": jnp.asarray(rng.uniform(0.5, 1.5, bn["var"].shape), jnp.float32),
            }
            for name, bn in variables["batch_stats"].items()
        }
        variables = {**variables, "batch_stats": stats}

    def predict(x):
        return jax.nn.softmax(model.apply(variables, x))

    images = rng.integers(0, 256, (2, size, size, 3))
    images = images.astype(np.uint8 if uint8 else np.float32)
    positions, colors = candidates(images, 2, rng, uint8=uint8)
    # Rarely a random net ignores its input (all ReLUs dead): nothing to compare then.
    check_equal(predict, images, positions, colors, require=assume)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 20),
    st.integers(1, 6),
    st.integers(1, 3),
    st.integers(1, 2),
    st.integers(-1, 4),
    st.integers(-1, 4),
    st.integers(1, 4),
)
def test_window_tables_contain_every_changed_position(
    size, kernel, stride, dilation, lo, hi, width
):
    # Start from an input whose changed interval is `width` wide around each coordinate,
    # then check the sliding-window op's table against brute force.
    reach = (kernel - 1) * dilation
    out_size = (size + lo + hi - reach - 1) // stride + 1
    if out_size < 1:
        return
    p = np.arange(size)
    ax = windows.fit(1, 0, size, p - width // 2, p - width // 2 + width)
    out = windows.through_window(ax, kernel, stride, dilation, lo, out_size)
    assert 1 <= out.window <= out_size
    for q in range(size):
        changed = set(range(max(0, ax.lo[q]), min(size, ax.hi[q])))
        affected = [
            o
            for o in range(out_size)
            if any(o * stride - lo + k * dilation in changed for k in range(kernel))
        ]
        for o in affected:
            assert out.lo[q] <= o < out.hi[q]
            assert out.origin[q] <= o < out.origin[q] + out.window
        assert 0 <= out.origin[q] <= out_size - out.window


def test_bad_inputs_raise_value_errors():
    predict = cifar_predict("compact_fast")
    images = cifar_images(2)
    positions = np.zeros((2, 3, 2), np.int32)
    colors = np.zeros((2, 3, 3), np.float32)
    cases = [
        (dict(images=images[0]), "images"),
        (dict(positions=positions[:, :, :1]), "positions"),
        (dict(positions=positions[:1]), "positions"),
        (dict(positions=positions.astype(np.float32)), "positions"),
        (dict(positions=positions + np.array([32, 0])), "positions"),
        (dict(positions=positions - np.array([0, 1])), "positions"),
        (dict(colors=colors[:, :2]), "colors"),
        (dict(colors=colors[..., :1]), "colors"),
        (dict(evaluation="fast"), "evaluation"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(chunk_size=True), "chunk_size"),  # a bool is no size (was taken as 1)
        (dict(predict=42), "predict"),
        # Colours the uint8 images cannot hold (cast, 300 became 255 and NaN 0).
        (dict(colors=colors + 300), "colors must be finite and lie in"),
        (dict(colors=colors - 1), "colors must be finite and lie in"),
        (dict(colors=np.full_like(colors, np.nan)), "colors must be finite"),
        (dict(colors=np.full_like(colors, np.nan), evaluation="full"), "colors must be finite"),
        (dict(colors=colors.astype(bool)), "colors must be numbers"),
        # float16 images: a colour past float16's largest value would become inf.
        (dict(images=images.astype(np.float16), colors=colors + 7e4), "colors"),
    ]
    # A predict that fails on the images (here: C = 3 into a 2-row matrix) is a
    # ValueError naming predict, whatever the evaluation (it was JAX's raw TypeError).
    for evaluation in incremental.EVALUATIONS:
        cases.append(
            (dict(predict=lambda x: x @ jnp.ones((2, 2)), evaluation=evaluation), "predict")
        )
    for change, name in cases:
        args = dict(predict=predict, images=images, positions=positions, colors=colors)
        args.update(change)
        evaluation = args.pop("evaluation", "auto")
        chunk = args.pop("chunk_size", None)
        with pytest.raises(ValueError, match=name):
            incremental.one_pixel_probs(**args, evaluation=evaluation, chunk_size=chunk)
    with pytest.raises(ValueError, match="image_shape"):
        incremental.analyse(predict, (32, 32))
    with pytest.raises(ValueError, match="predict"):
        incremental.analyse(lambda x: x, (8, 8, 3))


def test_exported_from_rpx():
    assert rpx.one_pixel_probs is incremental.one_pixel_probs


def test_auto_takes_the_full_pass_when_the_analysis_fails(monkeypatch):
    predict = cifar_predict("allconv")
    assert incremental.choose(predict, (32, 32, 3), "auto") is not None
    assert incremental.choose(predict, (32, 32, 3), "full") is None

    def broken(*args, **kwargs):
        raise RuntimeError("an op the analysis trips over")

    monkeypatch.setattr(incremental.plan, "analyse", broken)
    assert incremental.choose(predict, (32, 32, 3), "auto") is None
    with pytest.raises(RuntimeError, match="trips over"):
        incremental.choose(predict, (32, 32, 3), "incremental")
