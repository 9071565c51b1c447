"""U^2-Net: architecture sizes, the .pth loader on a checkpoint written here, a forward pass.

The official names and shapes are spelled out below from the official constructors
(model/u2net.py: in_ch, mid_ch, out_ch per stage), independently of rpx's stage tables,
where Flax infers input widths: a wrong width or name in rpx fails the shape checks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpx.segment import u2net
from rpx.segment.u2net_names import load_u2net, to_variables
from tests.rpx.segment.pth_writer import save_state_dict

# Official constructor arguments (in_ch, mid_ch, out_ch) of stage1..6, stage5d..1d.
OFFICIAL = {
    "u2net": [
        ("stage1", 7, 3, 32, 64),
        ("stage2", 6, 64, 32, 128),
        ("stage3", 5, 128, 64, 256),
        ("stage4", 4, 256, 128, 512),
        ("stage5", "4F", 512, 256, 512),
        ("stage6", "4F", 512, 256, 512),
        ("stage5d", "4F", 1024, 256, 512),
        ("stage4d", 4, 1024, 128, 256),
        ("stage3d", 5, 512, 64, 128),
        ("stage2d", 6, 256, 32, 64),
        ("stage1d", 7, 128, 16, 64),
    ],
    "u2netp": [
        ("stage1", 7, 3, 16, 64),
        ("stage2", 6, 64, 16, 64),
        ("stage3", 5, 64, 16, 64),
        ("stage4", 4, 64, 16, 64),
        ("stage5", "4F", 64, 16, 64),
        ("stage6", "4F", 64, 16, 64),
        ("stage5d", "4F", 128, 16, 64),
        ("stage4d", 4, 128, 16, 64),
        ("stage3d", 5, 128, 16, 64),
        ("stage2d", 6, 128, 16, 64),
        ("stage1d", 7, 128, 16, 64),
    ],
}
SIDE_IN = {"u2net": (64, 64, 128, 256, 512, 512), "u2netp": (64, 64, 64, 64, 64, 64)}


def official_shapes(variant):
    """Official state-dict names -> shapes, from the official constructors."""
    shapes = {}

    def rebnconv(prefix, cin, cout):
        shapes[f"{prefix}.conv_s1.weight"] = (cout, cin, 3, 3)
        shapes[f"{prefix}.conv_s1.bias"] = (cout,)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn_s1.{leaf}"] = (cout,)
        shapes[f"{prefix}.bn_s1.num_batches_tracked"] = ()

    for stage, height, cin, mid, out in OFFICIAL[variant]:
        levels = 4 if height == "4F" else height
        rebnconv(f"{stage}.rebnconvin", cin, out)
        rebnconv(f"{stage}.rebnconv1", out, mid)
        for i in range(2, levels + 1):
            rebnconv(f"{stage}.rebnconv{i}", mid, mid)
        for i in range(levels - 1, 1, -1):
            rebnconv(f"{stage}.rebnconv{i}d", 2 * mid, mid)
        rebnconv(f"{stage}.rebnconv1d", 2 * mid, out)
    for k, cin in enumerate(SIDE_IN[variant], start=1):
        shapes[f"side{k}.weight"] = (1, cin, 3, 3)
        shapes[f"side{k}.bias"] = (1,)
    shapes["outconv.weight"] = (1, 6, 1, 1)
    shapes["outconv.bias"] = (1,)
    return shapes


def random_state_dict(variant, seed=0):
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in official_shapes(variant).items():
        if name.endswith("num_batches_tracked"):
            state[name] = np.array(1000, np.int64)
        elif name.endswith("running_var") or name.endswith("bn_s1.weight"):
            state[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            # Small weights keep activations moderate through the 50+ layers.
            state[name] = (0.1 * rng.normal(size=shape)).astype(np.float32)
    return state


def leaf(variables, name):
    """The Flax array a torch name should land in, brought back to torch layout."""
    *module, last = name.split(".")
    if last == "running_mean":
        return np.asarray(_get(variables["batch_stats"], module)["mean"])
    if last == "running_var":
        return np.asarray(_get(variables["batch_stats"], module)["var"])
    node = _get(variables["params"], module)
    if last == "bias":
        return np.asarray(node["bias"])
    if "kernel" in node:
        return np.asarray(node["kernel"]).transpose(3, 2, 0, 1)  # [kh,kw,in,out] -> torch
    return np.asarray(node["scale"])


def _get(tree, path):
    for part in path:
        tree = tree[part]
    return tree


@pytest.mark.parametrize("make, count", [(u2net.U2NET, 44_009_869), (u2net.U2NETP, 1_131_181)])
def test_parameter_counts_match_official(make, count):
    # 44.0 M and 1.13 M parameters, as the official models (U2NET 176.3 MB, U2NETP 4.7 MB).
    shapes = jax.eval_shape(make().init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == count


def test_u2net_official_names_and_shapes_map_one_to_one():
    state = random_state_dict("u2net")
    variables = to_variables(state, u2net.U2NET())
    assert sum(x.size for x in jax.tree.leaves(variables)) == sum(
        v.size for k, v in state.items() if not k.endswith("num_batches_tracked")
    )


@pytest.mark.parametrize("legacy", [False, True])
def test_loader_every_parameter_lands_in_place_and_forward_runs(tmp_path, legacy):
    state = random_state_dict("u2netp", seed=int(legacy))
    path = str(tmp_path / "u2netp.pth")
    save_state_dict(path, state, legacy=legacy)
    model, variables = load_u2net(path)
    assert model.stages == u2net.U2NETP_STAGES
    loaded = 0
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        np.testing.assert_array_equal(leaf(variables, name), value, err_msg=name)
        loaded += value.size
    assert loaded == sum(x.size for x in jax.tree.leaves(variables))
    if legacy:
        return  # one forward pass is enough (compiling it takes seconds)
    outputs = jax.jit(model.apply)(variables, jnp.zeros((2, 40, 24, 3)))
    assert len(outputs) == 7
    for out in outputs:
        assert out.shape == (2, 40, 24, 1)
        assert bool(jnp.all((out >= 0) & (out <= 1)))
    # Two batches of two: one more compiled program than the forward above.
    images = np.random.default_rng(0).integers(0, 256, (4, 20, 28, 3), dtype=np.uint8)
    masks = u2net.masks(model, variables, images, size=32, batch_size=2)
    assert masks.shape == (4, 20, 28) and masks.dtype == bool
    assert masks.any()  # min-max normalised saliency always has pixels above 0.5


def test_rebnconv_matches_pytorch_conv_semantics():
    # A dilated 3x3 conv + eval BatchNorm + ReLU computed by hand the PyTorch way
    # (cross-correlation, weight [out, in, kh, kw], zero padding = dilation), against the
    # Flax block with converted weights: catches a kh/kw or in/out transposition.
    rng = np.random.default_rng(0)
    cin, cout, d = 3, 4, 2
    w = rng.normal(size=(cout, cin, 3, 3)).astype(np.float32)
    b, gamma, beta, mean = (rng.normal(size=cout).astype(np.float32) for _ in range(4))
    var = rng.uniform(0.5, 2, cout).astype(np.float32)
    x = rng.normal(size=(1, 6, 7, cin)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (d, d), (d, d), (0, 0)))
    ref = np.zeros((1, 6, 7, cout), np.float32)
    for kh in range(3):
        for kw in range(3):
            patch = padded[:, kh * d : kh * d + 6, kw * d : kw * d + 7, :]
            ref += np.einsum("nhwi,oi->nhwo", patch, w[:, :, kh, kw])
    ref = np.maximum((ref + b - mean) / np.sqrt(var + 1e-5) * gamma + beta, 0)
    variables = {
        "params": {
            "conv_s1": {"kernel": w.transpose(2, 3, 1, 0), "bias": b},
            "bn_s1": {"scale": gamma, "bias": beta},
        },
        "batch_stats": {"bn_s1": {"mean": mean, "var": var}},
    }
    out = u2net.REBNCONV(cout, d).apply(variables, x)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-4)


def test_resize_matrix_is_skimage_resize():
    # skimage.transform.resize(order=1, mode="constant"): half-pixel-aligned linear
    # interpolation with zeros beyond the edge (checked once against skimage 0.26: the
    # whole preprocess agreed to 1.2e-6 on 375x500, 384x512 and 32x32 images).
    np.testing.assert_allclose(
        u2net._resize_matrix(2, 4),
        [[0.75, 0], [0.75, 0.25], [0.25, 0.75], [0, 0.75]],
    )
    np.testing.assert_allclose(u2net._resize_matrix(5, 5), np.eye(5))
    # Shrinking 2x: Gaussian sigma 0.5 (radius 2) then sampling between pixel pairs.
    shrink = u2net._resize_matrix(8, 4)
    taps = np.exp(-0.5 * (np.arange(-2, 3) / 0.5) ** 2)
    taps /= taps.sum()
    smooth = sum(w * np.eye(8, k=k) for k, w in zip(range(-2, 3), taps, strict=True))
    expected = 0.5 * (smooth[0::2] + smooth[1::2])
    np.testing.assert_allclose(shrink, expected, atol=1e-6)


def test_preprocess_official_normalisation():
    images = np.zeros((1, 32, 32, 3), np.uint8)
    images[..., 0] = 100  # max of the image is 100/255: divided out before normalising
    x = np.asarray(u2net.preprocess(images, size=64))
    assert x.shape == (1, 64, 64, 3)
    # Away from the border the image is flat red; on it, the zero padding darkens it.
    np.testing.assert_allclose(x[0, 5, 5], (np.array([1.0, 0, 0]) - u2net.MEAN) / u2net.STD, 1e-5)
    assert x[0, 0, 0, 0] < x[0, 5, 5, 0]
    black = np.asarray(u2net.preprocess(np.zeros((1, 8, 8, 3), np.uint8), size=32))
    assert np.isfinite(black).all()


def test_loader_rejects_mismatches(tmp_path):
    state = random_state_dict("u2netp")
    model = u2net.U2NETP()
    missing = dict(state)
    del missing["side3.bias"]
    with pytest.raises(ValueError, match=r"missing \['side3.bias'\]"):
        to_variables(missing, model)
    extra = dict(state, **{"refconv.weight": np.zeros((1, 1, 3, 3), np.float32)})
    with pytest.raises(ValueError, match="refconv.weight"):
        to_variables(extra, model)
    with pytest.raises(ValueError, match=r"stage1.rebnconv1.conv_s1.weight \(32, 64, 3, 3\)"):
        to_variables(random_state_dict("u2net"), model)  # U2NET weights into U2NETP
    path = str(tmp_path / "x.pth")
    save_state_dict(path, {"a": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="U.2-Net checkpoint"):
        load_u2net(path)
    with pytest.raises(ValueError, match="variant"):
        load_u2net(path, variant="u2netx")


def test_masks_bad_input():
    model = u2net.U2NETP()
    with pytest.raises(ValueError, match="images"):
        u2net.masks(model, {}, np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="threshold"):
        u2net.masks(model, {}, np.zeros((2, 8, 8, 3), np.uint8), threshold=2.0)
    with pytest.raises(ValueError, match="size"):
        u2net.masks(model, {}, np.zeros((2, 8, 8, 3), np.uint8), size=100)
