"""rpx.certify: proofs and witnesses against answers known exactly (planted nets, brute
force over every colour of a small colour set), invariants and bad input."""

import itertools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rpx
from rpx.certification import bounds
from tests.rpx import planted

ASSETS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "train", "assets"
)
COLORS_0_7 = np.array(list(itertools.product(range(8), repeat=3)), np.uint8)


class SmallNet(nn.Module):
    """Strided, dilated and grouped convs, max and average pools, a residual add, a
    per-channel affine map, a monotone activation, mean and max over the map, a
    transpose and a flatten, concatenation, a dense head."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(6, (3, 3))(x * 1.5 - 5.0))
        x = x + jnp.tanh(nn.Conv(6, (3, 3), kernel_dilation=(2, 2), padding="SAME")(x))
        y = nn.max_pool(x, (2, 2), (2, 2))
        y = nn.relu(nn.Conv(6, (3, 3), padding="SAME", feature_group_count=2)(y)) + y
        y = nn.avg_pool(y, (2, 2), (1, 1), padding="SAME")
        y = y * jnp.linspace(0.5, 1.5, 6) - 0.1
        y = nn.relu(nn.Conv(6, (2, 2), strides=(2, 2))(y))
        flat = jnp.transpose(y, (0, 3, 1, 2)).reshape(y.shape[0], -1)
        z = jnp.concatenate([y.mean((1, 2)), y.max((1, 2)), 0.1 * flat], -1)
        return nn.Dense(4)(z)


def near_boundary_net():
    """A SmallNet whose clean base image sits close to a 4-way tie, and images near it,
    so that about half the pixels can be fooled by some colour of 0..7."""
    model = SmallNet()
    variables = model.init(jax.random.key(1), jnp.zeros((1, 8, 8, 3)))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 8, (1, 8, 8, 3)).astype(np.uint8)
    shift = -np.asarray(model.apply(variables, jnp.asarray(base, jnp.float32)))[0]
    shift = shift + np.array([0.0, 0.05, 0.1, 0.15], np.float32)

    def predict(x):
        return jax.nn.softmax(model.apply(variables, x) + shift)

    images = np.repeat(base, 3, 0)
    for i in range(1, 3):
        images[i, rng.integers(0, 8, 3), rng.integers(0, 8, 3)] = rng.integers(0, 8, (3, 3))
    return predict, images


def brute_force(predict, images, labels, target):
    """bool [N, H, W]: some colour of 0..7 at that pixel makes the attack succeed."""
    run = jax.jit(predict)
    n, h, w, _ = images.shape
    truth = np.zeros((n, h, w), bool)
    for i, r, c in itertools.product(range(n), range(h), range(w)):
        x = np.repeat(images[i : i + 1], len(COLORS_0_7), 0)
        x[:, r, c] = COLORS_0_7
        predicted = np.asarray(run(jnp.asarray(x, jnp.float32))).argmax(1)
        hit = predicted == target[i] if target is not None else predicted != labels[i]
        truth[i, r, c] = hit.any()
    return truth


def check_invariants(cert, region, predict, images, labels, target=None):
    safe, fooled = np.asarray(cert.safe), np.asarray(cert.fooled)
    undecided, witness = np.asarray(cert.undecided), np.asarray(cert.witness)
    assert not (safe & fooled).any() and not (safe & undecided).any()
    assert not (fooled & undecided).any()
    assert not ((safe | fooled | undecided) & ~region).any()
    assert ((safe | fooled | undecided) == region).all()
    assert np.isnan(witness[~fooled]).all() and np.isfinite(witness[fooled]).all()
    assert (np.asarray(cert.robust) == (safe | ~region).all((1, 2))).all()
    assert (np.asarray(cert.vulnerable) == fooled.any((1, 2))).all()
    # Every witness fools predict's own forward pass (all of them in one batch).
    at = np.argwhere(fooled)
    if len(at):
        i, r, c = at.T
        x = images[i].copy()
        x[np.arange(len(at)), r, c] = witness[i, r, c].astype(images.dtype)
        predicted = np.asarray(predict(jnp.asarray(x, jnp.float32))).argmax(1)
        if target is not None:
            assert (predicted == np.asarray(target)[i]).all()
        else:
            assert (predicted != np.asarray(labels)[i]).all()


@pytest.mark.parametrize("targeted", [False, True])
def test_every_pixel_matches_brute_force_over_all_colours(targeted):
    predict, images = near_boundary_net()
    labels = np.asarray(predict(jnp.asarray(images, jnp.float32))).argmax(1)
    target = (labels + 1) % 4 if targeted else None
    region = np.zeros((3, 8, 8), bool)
    region[:, 1:7, 2:8] = True
    region[2, :, :4] = True
    cert = rpx.certify(
        predict, images, labels, region, target=target, value_range=(0, 7),
        max_boxes=10_000, search_steps=0, chunk_size=32, progress=False,
    )  # fmt: skip
    truth = brute_force(predict, images, labels, target) & region
    assert (np.asarray(cert.fooled) == truth).all()
    assert (np.asarray(cert.safe) == (region & ~truth)).all()
    assert not np.asarray(cert.undecided).any()
    assert truth.any() and (region & ~truth).any()  # both answers occur
    check_invariants(cert, region, predict, images, labels, target)


def test_a_colour_far_from_every_corner_is_found_and_everything_else_proved():
    predict = planted.hidden_color_model(pixel=(3, 4), color=(100.0, 60.0, 200.0))
    images = planted.grey_images(2)
    labels = np.zeros(2, np.int32)
    scan = rpx.pixel_map(predict, images, labels)
    assert not np.asarray(scan.fooled).any()  # the corners miss it
    cert = rpx.certify(predict, images, labels, max_boxes=400, progress=False)
    fooled = np.zeros((2, 8, 8), bool)
    fooled[:, 3, 4] = True
    assert (np.asarray(cert.fooled) == fooled).all()
    assert (np.asarray(cert.safe) == ~fooled).all()
    witness = np.asarray(cert.witness)[:, 3, 4]
    assert (np.abs(witness - [100, 60, 200]).sum(1) < 24).all()
    assert not np.asarray(cert.robust).any() and np.asarray(cert.vulnerable).all()
    check_invariants(cert, np.ones((2, 8, 8), bool), predict, images, labels)


def test_a_region_without_the_weak_pixel_is_proved_robust():
    predict = planted.hidden_color_model(pixel=(3, 4))
    images = planted.grey_images(1)
    region = np.ones((8, 8), bool)
    region[3, 4] = False
    cert = rpx.certify(predict, images, np.zeros(1, np.int32), region, progress=False)
    assert np.asarray(cert.robust).all() and not np.asarray(cert.vulnerable).any()
    assert (np.asarray(cert.safe)[0] == region).all()


def test_float_images_search_the_whole_colour_box():
    predict = planted.hidden_color_model(pixel=(3, 4), color=(100.5, 60.25, 200.0), reach=3.0)
    images = planted.grey_images(1).astype(np.float32)
    cert = rpx.certify(predict, images, np.zeros(1, np.int32), max_boxes=600, progress=False)
    assert bool(cert.fooled[0, 3, 4])
    assert np.abs(np.asarray(cert.witness)[0, 3, 4] - [100.5, 60.25, 200.0]).sum() < 3.0
    others = np.ones((8, 8), bool)
    others[3, 4] = False
    assert np.asarray(cert.safe)[0][others].all()


def test_every_pixel_the_corner_scan_fools_is_fooled():
    predict, images = near_boundary_net()
    labels = np.asarray(predict(jnp.asarray(images, jnp.float32))).argmax(1)
    scan = rpx.pixel_map(predict, images, labels, value_range=(0, 7))
    cert = rpx.certify(
        predict, images, labels, value_range=(0, 7), max_boxes=1, search_steps=2, progress=False
    )
    assert np.asarray(scan.fooled).any()
    assert not (np.asarray(scan.fooled) & ~np.asarray(cert.fooled)).any()


def test_radius_limits_the_colours_to_the_clean_colour_plus_minus_radius():
    predict = planted.hidden_color_model(pixel=(3, 4), color=(130.0, 130.0, 130.0), reach=10)
    images = planted.grey_images(1)  # values 120..135: the hidden colour is within 20
    near = rpx.certify(predict, images, np.zeros(1, np.int32), radius=40, progress=False)
    far = rpx.certify(
        predict, np.full_like(images, 255), np.zeros(1, np.int32), radius=40, progress=False
    )
    assert bool(near.fooled[0, 3, 4]) and not np.asarray(far.fooled).any()
    assert np.asarray(far.robust).all()


def test_margins_bound_every_sampled_colour():
    predict, images = near_boundary_net()
    bplan = bounds.analyse(predict, (8, 8, 3))
    cache = bounds.clean_cache(bplan, jnp.asarray(images[:1], jnp.float32))
    rng = np.random.default_rng(1)
    b = 12
    positions = rng.integers(0, 8, (b, 2))
    mid = rng.uniform(1, 6, (b, 3)).astype(np.float32)
    rad = rng.uniform(0, 1.5, (b, 1)).astype(np.float32) * np.ones((1, 3), np.float32)
    logits = np.asarray(jnp.log(predict(jnp.asarray(images[:1], jnp.float32))))[0]
    goal = np.full(b, logits.argmax())
    lower, _, _ = bounds.program(bplan, False, False)(cache, positions, mid, rad, goal, None)
    for k in range(b):
        colors = mid[k] + rad[k] * rng.uniform(-1, 1, (300, 3))
        x = np.repeat(images[:1].astype(np.float32), 300, 0)
        x[:, positions[k, 0], positions[k, 1]] = colors
        z = np.log(np.asarray(predict(jnp.asarray(x))))
        margin = z[:, goal[k]][:, None] - z
        margin[:, goal[k]] = np.inf
        assert (np.asarray(lower[k]) <= margin.min(0) + 1e-3).all()


def test_an_opaque_primitive_is_refused_by_name():
    def predict(x):
        y = jax.pure_callback(
            lambda a: np.asarray(a), jax.ShapeDtypeStruct(x.shape, x.dtype), x,
            vmap_method="sequential",
        )  # fmt: skip
        return jax.nn.softmax(jnp.stack([y.mean((1, 2, 3)), -y.mean((1, 2, 3))], -1))

    images = planted.grey_images(1)
    with pytest.raises(ValueError, match="pure_callback"):
        rpx.certify(predict, images, np.zeros(1, np.int32), progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_boxes": 0}, "max_boxes"),
        ({"radius": -1}, "radius"),
        ({"evaluation": "fast"}, "evaluation"),
        ({"labels": np.zeros(3, np.int32)}, "labels"),
        ({"region": np.ones((8, 8), np.int32)}, "region"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, match):
    predict = planted.one_pixel_model()
    args = {"labels": np.zeros(1, np.int32), **kwargs}
    labels = args.pop("labels")
    with pytest.raises(ValueError, match=match):
        rpx.certify(predict, planted.grey_images(1), labels, progress=False, **args)


def test_the_gradient_search_finds_a_colour_inside_the_corners_hull():
    # Class 1 within L1 40 of a colour far from the corners, with a slope towards it
    # from everywhere within 600: one bound pass cannot decide, and neither the corners
    # nor the centre fool; the search from the clean colour must.
    predict = planted.hidden_color_model((2, 2), (40.0, 200.0, 90.0), reach=600, offset=280)
    images = planted.grey_images(1)
    labels = np.zeros(1, np.int32)
    cert = rpx.certify(predict, images, labels, max_boxes=1, search_steps=16, progress=False)
    assert bool(cert.fooled[0, 2, 2])
    assert np.abs(np.asarray(cert.witness)[0, 2, 2] - [40, 200, 90]).sum() < 40
    blind = rpx.certify(predict, images, labels, max_boxes=1, search_steps=0, progress=False)
    assert not bool(blind.fooled[0, 2, 2]) and bool(blind.undecided[0, 2, 2])


# The paper's two CIFAR nets (strided convolutions; max and average pools). compact_fast's
# BatchNorm and dense head are bounded against sampled colours in test_crown.py: its proofs
# here took 12 s of the suite (2026-12-04) for no layer kind that test leaves out.
@pytest.mark.slow
@pytest.mark.parametrize("net", ["allconv", "nin"])
def test_on_the_shipped_nets_no_safe_pixel_falls_to_a_colour_within_the_radius(net):
    from train.checkpoint import load_parts

    apply, variables, _ = load_parts(os.path.join(ASSETS, f"cifar10_{net}"))
    data = np.load(os.path.join(ASSETS, "cifar10_test_sample100.npz"))
    images, labels = data["image"][:1], data["label"][:1].astype(np.int32)
    # Two pixels, both proved on both nets. Chunks of 4 boxes: the default 256 (at
    # least 64 per call) would spend most of the time bounding padding (allconv, second
    # call: 4.1 s in chunks of 8, 1.7 s in chunks of 4, 2026-12-04).
    region = np.zeros((32, 32), bool)
    region[12, 12:14] = True
    cert = rpx.certify(
        apply, images, labels, region, params=variables, radius=2, max_boxes=64,
        search_steps=4, chunk_size=4, progress=False,
    )  # fmt: skip
    safe = np.argwhere(np.asarray(cert.safe)[0])
    assert len(safe), "nothing proved: the test would check nothing"
    run = jax.jit(apply)
    offsets = np.array(list(itertools.product(range(-2, 3), repeat=3)))  # all 125 colours
    for r, c in safe:
        clean = images[0, r, c].astype(np.int32)
        colors = np.clip(clean + offsets, 0, 255)
        x = np.repeat(images, len(colors), 0)
        x[:, r, c] = colors
        predicted = np.asarray(run(variables, jnp.asarray(x, jnp.float32))).argmax(1)
        assert (predicted == labels[0]).all()
    check_invariants(cert, np.broadcast_to(region, (1, 32, 32)), lambda x: apply(variables, x),
                     images, labels)  # fmt: skip


def test_bfloat16_compute_is_refused():
    def predict(x):
        y = x.astype(jnp.bfloat16).astype(jnp.float32).mean((1, 2, 3))
        return jax.nn.softmax(jnp.stack([y, -y], -1))

    with pytest.raises(ValueError, match="float32"):
        rpx.certify(predict, planted.grey_images(1), np.zeros(1, np.int32), progress=False)
