"""Official U^2-Net state dicts onto the Flax U2NET / U2NETP variables, by name.

The official PyTorch module names are kept by rpx.segment.u2net, so a torch name maps to
a Flax path by its leaf alone (conv weight -> kernel transposed to HWIO, batch-norm weight
-> scale, running stats -> batch_stats); the file itself is read by rpx.segment.pth.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from rpx.segment.pth import load_state_dict
from rpx.segment.u2net import U2NET, U2NETP, U2Net


def _flax_path(name: str, array: np.ndarray):
    """Torch state-dict name -> (Flax variable path, array in Flax layout), or None to skip."""
    *module, leaf = name.split(".")
    if leaf == "num_batches_tracked":
        return None
    if leaf == "weight" and array.ndim == 4:  # conv: [out, in, kh, kw] -> [kh, kw, in, out]
        return ("params", *module, "kernel"), array.transpose(2, 3, 1, 0)
    if leaf == "weight" and array.ndim == 1:  # batch norm gamma
        return ("params", *module, "scale"), array
    if leaf == "bias":
        return ("params", *module, "bias"), array
    if leaf == "running_mean":
        return ("batch_stats", *module, "mean"), array
    if leaf == "running_var":
        return ("batch_stats", *module, "var"), array
    return ("unknown", name), array


def _torch_name(path: tuple) -> str:
    """Flax variable path -> the official state-dict name it is loaded from."""
    leaf = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}
    return ".".join([*path[1:-1], leaf.get(path[-1], path[-1])])


@functools.cache
def _variable_shapes(model: U2Net) -> dict:
    """{Flax variable path: shape} of `model` (a frozen, hashable module), traced once per
    model: the trace of U^2-Net's init took 0.6 to 1.2 s of every load (CPU, 2026-12-04)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return traverse_util.flatten_dict(jax.tree.map(lambda a: a.shape, shapes))


def to_variables(state_dict: dict, model: U2Net) -> dict:
    """Map an official U^2-Net state dict onto `model`'s Flax variables.

    Every Flax parameter and batch statistic must be found with the right shape and every
    tensor of the state dict (except num_batches_tracked) must be used; otherwise
    ValueError naming the offending entries.

    Returns {"params": ..., "batch_stats": ...} of float32 jax arrays.
    """
    expected = _variable_shapes(model)
    flat, unknown, wrong, seen = {}, [], [], set()
    for name, array in state_dict.items():
        mapped = _flax_path(name, np.asarray(array))
        if mapped is None:
            continue
        path, value = mapped
        if path not in expected:
            unknown.append(name)
        elif value.shape != expected[path]:
            wrong.append(f"{name} {np.shape(array)} (Flax {expected[path]})")
            seen.add(path)
        else:
            flat[path] = jnp.asarray(value, jnp.float32)
    missing = [_torch_name(p) for p in expected if p not in flat and p not in seen]
    if unknown or wrong or missing:
        raise ValueError(
            "state_dict does not match the model: "
            f"unexpected {unknown[:5]} ({len(unknown)}), wrong shapes {wrong[:5]} "
            f"({len(wrong)}), missing {missing[:5]} ({len(missing)})"
        )
    return traverse_util.unflatten_dict(flat)


def load_u2net(path: str, variant: str | None = None) -> tuple[U2Net, dict]:
    """Load an official checkpoint (`u2net.pth` or `u2netp.pth`) into Flax, no torch needed.

    Args:
      path: the .pth file.
      variant: "u2net" or "u2netp"; None infers it from the first stage's width.

    Returns:
      (model, variables) for `model.apply(variables, x)` and rpx.segment.u2net.masks.
    """
    state = load_state_dict(path)
    if variant is None:
        key = "stage1.rebnconv1.conv_s1.weight"
        if key not in state:
            raise ValueError(f"path: {path} has no {key}; is it a U^2-Net checkpoint?")
        variant = "u2net" if state[key].shape[0] == 32 else "u2netp"
    models = {"u2net": U2NET, "u2netp": U2NETP}
    if variant not in models:
        raise ValueError(f"variant must be 'u2net' or 'u2netp', got {variant!r}")
    model = models[variant]()
    return model, to_variables(state, model)
