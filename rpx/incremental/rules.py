"""Per-primitive rules: how a window passes through one op.

Each rule takes the walk, the equation, its input Refs and output keys, and returns the
output Refs, or None to have the op evaluated in full on the windows written back.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rpx.incremental import windows
from rpx.incremental.walk import REGION_COST, Abs, Ref, bind, box_size, expand, region, window_out

# A windowed sliding-window op is only worth it while its output window is at most this
# share of the output map: beyond, gathering the receptive field costs about as much as
# the full op, and every later op would run on nearly full maps anyway.
MAX_WINDOW_SHARE = 0.5

# Whether windowed convolutions compute one padded extra output row (see `_conv`);
# None: on the CPU backend only (looked up when tracing, so importing rpx starts no backend).
PAD_FIRST_ROW: bool | None = None

ELEMENTWISE = frozenset(
    """abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp
    convert_element_type copy copy_p cos cosh div eq erf erf_inv erfc exp exp2 expm1 floor
    ge gt imag integer_pow is_finite le lgamma digamma log log1p logistic lt max min mul ne
    neg nextafter not or pow real reduce_precision rem round rsqrt select_n sign sin sinh
    sqrt square stop_gradient sub tan tanh xor concatenate""".split()
)
REDUCTIONS = frozenset(
    "reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor argmax "
    "argmin".split()
)
CUMULATIVE = frozenset("cumsum cumprod cummax cummin cumlogsumexp".split())
POOLS = {"reduce_window_sum": "sum", "reduce_window_max": "max", "reduce_window_min": "min"}


def rule_for(name: str):
    """The rule for primitive `name`, or None (the op then runs in full)."""
    if name in _RULES:
        return _RULES[name]
    if name in ELEMENTWISE:
        return _elementwise
    if name in REDUCTIONS:
        return _reduce
    if name in CUMULATIVE:
        return _cumulative
    return None


def _worth(axes) -> bool:
    return math.prod(ax.window for ax in axes) <= MAX_WINDOW_SHARE * math.prod(
        ax.size for ax in axes
    )


def _elementwise(walk, eqn, ins, keys):
    if any(r.abs.kind == "full" for r in ins) or len(eqn.outvars) != 1:
        return None
    out_shape = tuple(eqn.outvars[0].aval.shape)
    wins = [r for r in ins if r.abs.kind == "window"]
    first = wins[0].abs.axes
    for r in wins:
        if len(r.abs.shape) != len(out_shape):
            return None
        if not all(windows.same_map(a, b) for a, b in zip(r.abs.axes, first, strict=True)):
            return None
    if eqn.primitive.name == "concatenate" and eqn.params["dimension"] in {a.axis for a in first}:
        return None
    axes = tuple(functools.reduce(windows.union, [r.abs.axes[c] for r in wins]) for c in (0, 1))
    for r in ins:
        if r.abs.kind == "const" and not const_fits(r.abs.shape, out_shape, axes):
            return None
    flops = math.prod(Abs("", out_shape, None, axes).window_shape)
    walk.note(eqn.primitive.name, "window", flops, axes)
    vals = []
    for r in ins:
        if r.abs.kind == "window":
            vals.append(expand(walk, r, axes))
        elif not walk.analysis:
            vals.append(const_window(walk, r.val, axes))
    return window_out(eqn, keys, axes, None if walk.analysis else bind(eqn, vals))


def const_fits(shape, out_shape, axes) -> bool:
    if len(shape) == 0:
        return True
    if len(shape) != len(out_shape):
        return False
    return all(shape[ax.axis] in (1, ax.size) for ax in axes)


def const_window(walk, val, axes):
    """A constant operand cut to the window where it varies along a spatial axis."""
    shape = np.shape(val)
    if len(shape) == 0 or all(shape[ax.axis] == 1 for ax in axes):
        return val
    val = jnp.asarray(val)
    for ax in axes:
        if shape[ax.axis] != 1:
            val = lax.dynamic_slice_in_dim(val, walk.origin(ax), ax.window, ax.axis)
    return val


def sliding(walk, eqn, x, spatial, out_spatial, kernels, strides, dilations, padding):
    """Output Axes and receptive-field box of a sliding-window op over x's windows.

    spatial/out_spatial: the input/output array axis of each of the op's spatial dims.
    Returns (axes, starts, sizes, bounds) or None when the window is not worth it."""
    by_axis = x.abs.by_axis()
    out_shape = eqn.outvars[0].aval.shape
    if sorted(by_axis) != sorted(spatial) or 0 in out_shape:
        return None
    axes: list = [None, None]
    starts, sizes, bounds = {}, {}, {}
    for ia, oa, k, s, d, (lo, _) in zip(
        spatial, out_spatial, kernels, strides, dilations, padding, strict=True
    ):
        out = windows.through_window(by_axis[ia], k, s, d, lo, out_shape[oa]).moved(oa)
        axes[out.coord] = out
        sizes[ia] = (out.window - 1) * s + (k - 1) * d + 1
        first, last = out.span
        bounds[ia] = (first * s - lo, last * s - lo)
        if not walk.analysis:
            starts[ia] = walk.origin(out) * s - lo
    if not _worth(axes):
        return None
    return tuple(axes), starts, sizes, bounds


def _conv(walk, eqn, ins, keys):
    x, w = ins
    p = eqn.params
    if x.abs.kind != "window" or w.abs.kind != "const" or p["batch_group_count"] != 1:
        return None
    if any(d != 1 for d in p["lhs_dilation"]):
        return None
    dn = p["dimension_numbers"]
    kernels = [w.abs.shape[a] for a in dn.rhs_spec[2:]]
    found = sliding(
        walk,
        eqn,
        x,
        dn.lhs_spec[2:],
        dn.out_spec[2:],
        kernels,
        p["window_strides"],
        p["rhs_dilation"],
        p["padding"],
    )
    if found is None:
        return None
    axes, starts, sizes, bounds = found
    out_window = Abs("", eqn.outvars[0].aval.shape, None, axes).window_shape
    flops = 2.0 * math.prod(out_window) * math.prod(kernels) * w.abs.shape[dn.rhs_spec[1]]
    if _pad_first_row():
        flops *= (axes[0].window + 1) / axes[0].window
    flops += REGION_COST * box_size(x.abs.shape, sizes)
    walk.note("conv_general_dilated", "window", flops, axes)
    box = region(walk, x, 0, starts, sizes, bounds)
    if walk.analysis:
        return window_out(eqn, keys, axes, None)
    valid = [(0, 0) for _ in kernels]
    if not _pad_first_row():
        return window_out(eqn, keys, axes, bind(eqn, [box, w.val], padding=tuple(valid)))
    # XLA's CPU backend runs unpadded convolutions 3-5x slower than padded ones (measured
    # on 2-core x86, jax 0.10): pad one stride of zeros on top, drop the extra first row.
    stride = p["window_strides"][0]
    valid[0] = (stride, 0)
    out = bind(eqn, [box, w.val], padding=tuple(valid))
    return window_out(eqn, keys, axes, lax.slice_in_dim(out, 1, None, axis=dn.out_spec[2]))


def _pad_first_row() -> bool:
    return jax.default_backend() == "cpu" if PAD_FIRST_ROW is None else PAD_FIRST_ROW


def _pool(walk, eqn, ins, keys):
    (x,) = ins
    p = eqn.params
    spatial = [ax.axis for ax in x.abs.axes]
    if any(p["base_dilation"][a] != 1 for a in spatial):
        return None
    found = sliding(
        walk,
        eqn,
        x,
        spatial,
        spatial,
        [p["window_dimensions"][a] for a in spatial],
        [p["window_strides"][a] for a in spatial],
        [p["window_dilation"][a] for a in spatial],
        [p["padding"][a] for a in spatial],
    )
    if found is None:
        return None
    axes, starts, sizes, bounds = found
    out_window = Abs("", eqn.outvars[0].aval.shape, None, axes).window_shape
    flops = math.prod(out_window) * math.prod(p["window_dimensions"])
    walk.note(
        eqn.primitive.name, "window", flops + REGION_COST * box_size(x.abs.shape, sizes), axes
    )
    box = region(walk, x, pad_value(POOLS[eqn.primitive.name], x.abs.dtype), starts, sizes, bounds)
    if walk.analysis:
        return window_out(eqn, keys, axes, None)
    padding = tuple((0, 0) if a in sizes else pad for a, pad in enumerate(p["padding"]))
    return window_out(eqn, keys, axes, bind(eqn, [box], padding=padding))


def pad_value(kind: str, dtype):
    """The identity XLA pads a sum/max/min pooling with."""
    if kind == "sum":
        return 0
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return kind == "min"
    if np.issubdtype(dtype, np.floating):
        return -math.inf if kind == "max" else math.inf
    info = np.iinfo(dtype)
    return int(info.min if kind == "max" else info.max)


def _reduce(walk, eqn, ins, keys):
    (x,) = ins
    axes_reduced = set(eqn.params["axes"])
    tracked = {ax.axis for ax in x.abs.axes}
    if not tracked & axes_reduced:
        moved = tuple(
            ax.moved(ax.axis - sum(r < ax.axis for r in axes_reduced)) for ax in x.abs.axes
        )
        walk.note(eqn.primitive.name, "window", math.prod(x.abs.window_shape))
        return window_out(eqn, keys, moved, None if walk.analysis else bind(eqn, [x.val]))
    if eqn.primitive.name != "reduce_sum" or not tracked <= axes_reduced:
        return None
    # A global sum is the clean sum plus what the window changed.
    total = Ref(keys[0], Abs("full", tuple(eqn.outvars[0].aval.shape), eqn.outvars[0].aval.dtype))
    walk.need(total, 0, {})
    walk.need(x, 0, {})
    walk.note("reduce_sum", "clean sum + window change", 2.0 * math.prod(x.abs.window_shape))
    if walk.analysis:
        return [total]
    by_axis = x.abs.by_axis()
    starts = {a: walk.origin(ax) for a, ax in by_axis.items()}
    clean = walk.read(x, 0, starts, {a: ax.window for a, ax in by_axis.items()})
    clean_total = walk.read(total, 0, {}, {})
    return [dataclasses.replace(total, val=clean_total + bind(eqn, [x.val - clean]))]


def _cumulative(walk, eqn, ins, keys):
    (x,) = ins
    if eqn.params["axis"] in {ax.axis for ax in x.abs.axes}:
        return None
    walk.note(eqn.primitive.name, "window", math.prod(x.abs.window_shape))
    return window_out(eqn, keys, x.abs.axes, None if walk.analysis else bind(eqn, [x.val]))


def _broadcast_in_dim(walk, eqn, ins, keys):
    if len(ins) != 1:
        return None
    (x,) = ins
    shape, dims = eqn.params["shape"], eqn.params["broadcast_dimensions"]
    axes = tuple(ax.moved(dims[ax.axis]) for ax in x.abs.axes)
    if any(shape[ax.axis] != ax.size for ax in axes):
        return None
    out = Abs("", tuple(shape), None, axes).window_shape
    walk.note("broadcast_in_dim", "window", math.prod(out))
    val = None if walk.analysis else bind(eqn, [x.val], shape=out)
    return window_out(eqn, keys, axes, val)


def _reshape(walk, eqn, ins, keys):
    if len(ins) != 1 or eqn.params.get("dimensions") is not None:
        return None
    (x,) = ins
    old, new = x.abs.shape, tuple(eqn.params["new_sizes"])
    axes = []
    for ax in x.abs.axes:
        # The axis survives as a whole iff some new axis has its size and the same
        # number of elements before it (row-major layout).
        before = math.prod(old[: ax.axis])
        match = [b for b in range(len(new)) if new[b] == ax.size and math.prod(new[:b]) == before]
        if ax.size == 1 or len(match) != 1:
            return None
        axes.append(ax.moved(match[0]))
    out = Abs("", new, None, tuple(axes)).window_shape
    walk.note("reshape", "window", math.prod(out))
    val = None if walk.analysis else bind(eqn, [x.val], new_sizes=out)
    return window_out(eqn, keys, axes, val)


def _squeeze(walk, eqn, ins, keys):
    (x,) = ins
    dims = set(eqn.params["dimensions"])
    if dims & {ax.axis for ax in x.abs.axes}:
        return None
    axes = tuple(ax.moved(ax.axis - sum(d < ax.axis for d in dims)) for ax in x.abs.axes)
    walk.note("squeeze", "window", 0.0)
    return window_out(eqn, keys, axes, None if walk.analysis else bind(eqn, [x.val]))


def _transpose(walk, eqn, ins, keys):
    (x,) = ins
    perm = list(eqn.params["permutation"])
    axes = tuple(ax.moved(perm.index(ax.axis)) for ax in x.abs.axes)
    walk.note("transpose", "window", math.prod(x.abs.window_shape))
    return window_out(eqn, keys, axes, None if walk.analysis else bind(eqn, [x.val]))


def _rev(walk, eqn, ins, keys):
    (x,) = ins
    dims = set(eqn.params["dimensions"])
    axes = tuple(windows.reversed_axis(ax) if ax.axis in dims else ax for ax in x.abs.axes)
    walk.note("rev", "window", math.prod(x.abs.window_shape))
    return window_out(eqn, keys, axes, None if walk.analysis else bind(eqn, [x.val]))


def _dot_general(walk, eqn, ins, keys):
    lhs, rhs = ins
    if {lhs.abs.kind, rhs.abs.kind} != {"window", "const"}:
        return None
    (contract_l, contract_r), (batch_l, batch_r) = eqn.params["dimension_numbers"]
    on_left = lhs.abs.kind == "window"
    x, other = (lhs, rhs) if on_left else (rhs, lhs)
    contract, batch = (contract_l, batch_l) if on_left else (contract_r, batch_r)
    free = [a for a in range(len(x.abs.shape)) if a not in contract and a not in batch]
    if not all(ax.axis in free for ax in x.abs.axes):
        return None
    lhs_free = len(lhs.abs.shape) - len(contract_l) - len(batch_l)
    first = len(batch_l) + (0 if on_left else lhs_free)
    axes = tuple(ax.moved(first + free.index(ax.axis)) for ax in x.abs.axes)
    out = Abs("", tuple(eqn.outvars[0].aval.shape), None, axes).window_shape
    depth = math.prod(x.abs.shape[a] for a in contract)
    walk.note("dot_general", "window", 2.0 * math.prod(out) * depth)
    if walk.analysis:
        return window_out(eqn, keys, axes, None)
    vals = [x.val, other.val] if on_left else [other.val, x.val]
    return window_out(eqn, keys, axes, bind(eqn, vals))


_RULES = {
    "conv_general_dilated": _conv,
    **{name: _pool for name in POOLS},
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": _reshape,
    "squeeze": _squeeze,
    "transpose": _transpose,
    "rev": _rev,
    "dot_general": _dot_general,
}
