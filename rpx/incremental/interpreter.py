"""A jaxpr interpreter that follows one changed pixel through a classifier.

Every value of the traced `predict` (batch of one image) is one of three kinds:

- "const": does not depend on the image (weights, BatchNorm statistics, their products);
- "window": depends on the image, and differs from the clean image's activation only
  inside a box of static size along the two spatial axes (`windows.Axis`); the value
  held is that box;
- "full": depends on the image and is held whole.

The same walk over the jaxpr serves two purposes. At analysis time (no values) it
decides, op by op, whether the window can be carried on, records which clean activations
a candidate needs (and with what padding) and counts FLOPs. At evaluation time (one
candidate, vmapped over candidates by the caller) it computes the values, reading clean
activations of the candidate's image from the cache. Both walks take the same decisions
because the decisions depend only on static shapes. Whatever it does not understand it
evaluates in full on the window written into the clean activation: slower, never wrong.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from rpx.incremental import windows
from rpx.incremental.windows import Axis

# A windowed sliding-window op is only worth it while its output window is at most this
# share of the output map: beyond, gathering the receptive field costs about as much as
# the full op, and every later op would run on nearly full maps anyway.
MAX_WINDOW_SHARE = 0.5

# Whether windowed convolutions compute one padded extra output row (see `_conv`);
# None: on the CPU backend only (looked up when tracing, so importing rpx starts no backend).
PAD_FIRST_ROW: bool | None = None

# Gathering and overlaying a box costs a few memory passes per element (FLOP estimate).
_REGION_COST = 3.0

ELEMENTWISE = frozenset(
    """abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp
    convert_element_type copy copy_p cos cosh div eq erf erf_inv erfc exp exp2 expm1 floor
    ge gt imag integer_pow is_finite le lgamma digamma log log1p logistic lt max min mul ne
    neg nextafter not or pow real reduce_precision rem round rsqrt select_n sign sin sinh
    sqrt square stop_gradient sub tan tanh xor concatenate""".split()
)
CALLS = frozenset(
    "jit pjit closed_call core_call custom_jvp_call custom_vjp_call custom_vjp_call_jaxpr "
    "checkpoint remat remat2".split()
)
_REDUCTIONS = frozenset(
    "reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor argmax "
    "argmin".split()
)
_CUMULATIVE = frozenset("cumsum cumprod cummax cummin cumlogsumexp".split())
_POOLS = {"reduce_window_sum": "sum", "reduce_window_max": "max", "reduce_window_min": "min"}


@dataclasses.dataclass(frozen=True)
class Abs:
    """Static description of a value: its kind, full shape and dtype, and (kind "window")
    one Axis per pixel coordinate, axes[c].coord == c."""

    kind: str
    shape: tuple[int, ...]
    dtype: Any
    axes: tuple[Axis, ...] = ()

    @property
    def window_shape(self) -> tuple[int, ...]:
        shape = list(self.shape)
        for ax in self.axes:
            shape[ax.axis] = ax.window
        return tuple(shape)

    def by_axis(self) -> dict[int, Axis]:
        return {ax.axis: ax for ax in self.axes}


@dataclasses.dataclass(frozen=True)
class Ref:
    """A value in the walk: `key` names the clean activation it is a version of (None for
    literals), `val` is None at analysis time."""

    key: Any
    abs: Abs
    val: Any = None


@dataclasses.dataclass(frozen=True)
class Entry:
    """A clean activation cached per image, padded along the spatial axes."""

    shape: tuple[int, ...]
    dtype: Any
    pad_value: float
    pads: tuple[tuple[int, int], ...]

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return tuple(s + lo + hi for s, (lo, hi) in zip(self.shape, self.pads, strict=True))

    @property
    def nbytes(self) -> int:
        return math.prod(self.padded_shape) * np.dtype(self.dtype).itemsize


class Walk:
    """State of one walk: analysis (cache is None) or one candidate's evaluation."""

    def __init__(self, entries: dict, cache: dict | None = None, image=None, position=None):
        self.analysis = cache is None
        self.entries = entries  # (key, pad_value) -> Entry; grows only during analysis
        self.cache, self.image, self.position = cache, image, position
        self.flops = 0.0
        self.steps: list[tuple[str, str]] = []
        self.full: dict = {}  # key -> materialized Ref, so a window is written back once

    def note(self, name: str, what: str, flops: float, axes: tuple[Axis, ...] = ()) -> None:
        """Count FLOPs and log the decision taken for one op (analysis only)."""
        if self.analysis:
            if axes:
                what += " " + "x".join(str(ax.window) for ax in axes)
                what += " of " + "x".join(str(ax.size) for ax in axes)
            self.flops += flops
            self.steps.append((name, what))

    def need(self, ref: Ref, pad_value, pads: dict[int, tuple[int, int]]) -> None:
        """Ask for ref's clean activation padded by at least `pads` {axis: (lo, hi)}."""
        shape = ref.abs.shape
        want = tuple(pads.get(a, (0, 0)) for a in range(len(shape)))
        name = (ref.key, pad_value)
        old = self.entries.get(name)
        if not self.analysis:
            assert old is not None and all(
                o[0] >= w[0] and o[1] >= w[1] for o, w in zip(old.pads, want, strict=True)
            ), f"clean activation {name} missing from the plan"
            return
        if old is not None:
            want = tuple(
                (max(o[0], w[0]), max(o[1], w[1])) for o, w in zip(old.pads, want, strict=True)
            )
        self.entries[name] = Entry(shape, ref.abs.dtype, pad_value, want)

    def read(self, ref: Ref, pad_value, starts: dict, sizes: dict[int, int]):
        """The candidate's image's clean activation over a box: `starts` {axis: traced
        start in unpadded coordinates}, `sizes` {axis: length}; other axes whole."""
        entry = self.entries[(ref.key, pad_value)]
        array = self.cache[(ref.key, pad_value)]
        index = [self.image]
        for a, (lo, _) in enumerate(entry.pads):
            index.append(starts[a] + lo if a in starts else lo)
        size = [1] + [sizes.get(a, s) for a, s in enumerate(entry.shape)]
        return lax.dynamic_slice(array, index, size)[0]

    def origin(self, ax: Axis):
        """The window start of `ax` for this candidate's pixel (traced int32)."""
        table = jnp.asarray(np.asarray(ax.origin, np.int32))
        return table[self.position[ax.coord]]


# ---------------------------------------------------------------------------------------
# The walk.


def run(walk: Walk, jaxpr, refs: list[Ref], path: tuple = ()) -> list[Ref]:
    """Walk `jaxpr` (constvars then invars bound to `refs`) and return its outputs."""
    env = dict(zip(list(jaxpr.constvars) + list(jaxpr.invars), refs, strict=True))

    def read(v):
        if isinstance(v, jcore.Literal):
            return Ref(None, Abs("const", np.shape(v.val), v.aval.dtype), v.val)
        return env[v]

    for i, eqn in enumerate(jaxpr.eqns):
        ins = [read(v) for v in eqn.invars]
        outs = _apply(walk, eqn, ins, [(path, v) for v in eqn.outvars], path + (i,))
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def _apply(walk: Walk, eqn, ins: list[Ref], keys: list, path: tuple) -> list[Ref]:
    kinds = {r.abs.kind for r in ins}
    name = eqn.primitive.name
    if kinds <= {"const"}:
        vals = None if walk.analysis else _bind(eqn, [r.val for r in ins])
        return _outs(eqn, keys, "const", vals)
    if "window" in kinds:
        sub = sub_jaxpr(eqn)
        if sub is not None:
            jaxpr, consts = sub
            const_refs = [Ref(None, Abs("const", np.shape(c), _dtype(c)), c) for c in consts]
            return run(walk, jaxpr, const_refs + ins, path)
        rule = _RULES.get(name)
        if rule is None and name in ELEMENTWISE:
            rule = _elementwise
        if rule is None and name in _REDUCTIONS:
            rule = _reduce
        if rule is None and name in _CUMULATIVE:
            rule = _cumulative
        outs = rule(walk, eqn, ins, keys) if rule is not None else None
        if outs is not None:
            return outs
        ins = [materialize(walk, r, name) if r.abs.kind == "window" else r for r in ins]
    walk.note(name, "full", eqn_flops(eqn))
    vals = None if walk.analysis else _bind(eqn, [r.val for r in ins])
    return _outs(eqn, keys, "full", vals)


def _outs(eqn, keys, kind, vals) -> list[Ref]:
    if vals is not None and not eqn.primitive.multiple_results:
        vals = [vals]
    refs = []
    for i, (v, key) in enumerate(zip(eqn.outvars, keys, strict=True)):
        refs.append(Ref(key, Abs(kind, tuple(v.aval.shape), v.aval.dtype), vals and vals[i]))
    return refs


def _bind(eqn, vals, **overrides):
    params = eqn.primitive.get_bind_params({**eqn.params, **overrides})
    return eqn.primitive.bind(*vals, **params)


def _window_out(eqn, keys, axes, val) -> list[Ref]:
    aval = eqn.outvars[0].aval
    return [Ref(keys[0], Abs("window", tuple(aval.shape), aval.dtype, tuple(axes)), val)]


def _dtype(x):
    return jnp.result_type(x)


def sub_jaxpr(eqn):
    """(jaxpr, consts) of a call-like primitive to inline, or None."""
    if eqn.primitive.name not in CALLS:
        return None
    for name in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(name)
        if isinstance(sub, jcore.ClosedJaxpr):
            jaxpr, consts = sub.jaxpr, list(sub.consts)
        elif isinstance(sub, jcore.Jaxpr):
            jaxpr, consts = sub, []
        else:
            continue
        if len(jaxpr.constvars) == len(consts) and len(jaxpr.invars) == len(eqn.invars):
            if len(jaxpr.outvars) == len(eqn.outvars):
                return jaxpr, consts
    return None


# ---------------------------------------------------------------------------------------
# Moving between windows and full maps.


def materialize(walk: Walk, ref: Ref, why: str) -> Ref:
    """ref as a full map: its window written into the clean activation (once per walk)."""
    if ref.key in walk.full:
        return walk.full[ref.key]
    walk.full[ref.key] = _materialize(walk, ref, why)
    return walk.full[ref.key]


def _materialize(walk: Walk, ref: Ref, why: str) -> Ref:
    walk.need(ref, 0, {})
    walk.note(why, "materialize", 2.0 * math.prod(ref.abs.shape))
    full = Abs("full", ref.abs.shape, ref.abs.dtype)
    if walk.analysis:
        return Ref(ref.key, full)
    by_axis = ref.abs.by_axis()
    clean = walk.read(ref, 0, {a: 0 for a in by_axis}, {a: ax.size for a, ax in by_axis.items()})
    starts = [walk.origin(by_axis[a]) if a in by_axis else 0 for a in range(len(ref.abs.shape))]
    return Ref(ref.key, full, lax.dynamic_update_slice(clean, ref.val, starts))


def region(walk: Walk, ref: Ref, pad_value, starts: dict, sizes: dict, bounds: dict):
    """ref's activation over a box of static `sizes` at traced `starts` {axis: start}
    (unpadded coordinates, `bounds` {axis: (least, greatest) start}): the clean values,
    `pad_value` outside the map, and ref's window laid over them."""
    shape = ref.abs.shape
    pads = {a: (max(0, -lo), max(0, hi + sizes[a] - shape[a])) for a, (lo, hi) in bounds.items()}
    walk.need(ref, pad_value, pads)
    if walk.analysis:
        return None
    clean = walk.read(ref, pad_value, starts, sizes)
    by_axis = ref.abs.by_axis()
    # Shift the window into the box: pad it by the box size on both sides so the slice
    # never clamps while they overlap; where they do not, the mask is all False.
    config = [(sizes[a], sizes[a], 0) if a in sizes else (0, 0, 0) for a in range(len(shape))]
    padded = lax.pad(ref.val, jnp.zeros((), ref.val.dtype), config)
    mask = jnp.ones((), bool)
    slice_starts = []
    for a in range(len(shape)):
        if a not in sizes:
            slice_starts.append(0)
            continue
        offset = walk.origin(by_axis[a]) - starts[a]
        slice_starts.append(sizes[a] - offset)
        index = lax.iota(jnp.int32, sizes[a]) - offset
        inside = (index >= 0) & (index < by_axis[a].window)
        mask = mask & inside.reshape([-1 if b == a else 1 for b in range(len(shape))])
    shifted = lax.dynamic_slice(padded, slice_starts, clean.shape)
    return jnp.where(mask, shifted, clean)


def expand(walk: Walk, ref: Ref, axes: tuple[Axis, ...]):
    """ref's window moved to the (larger) windows `axes` of the same map."""
    if ref.abs.axes == axes:
        return ref.val
    sizes = {ax.axis: ax.window for ax in axes}
    walk.note("expand", "window", _REGION_COST * _box(ref.abs.shape, sizes), axes)
    starts = {} if walk.analysis else {ax.axis: walk.origin(ax) for ax in axes}
    return region(walk, ref, 0, starts, sizes, {ax.axis: ax.span for ax in axes})


def _box(shape, sizes: dict) -> int:
    return math.prod(sizes.get(a, s) for a, s in enumerate(shape))


def _worth(axes) -> bool:
    return math.prod(ax.window for ax in axes) <= MAX_WINDOW_SHARE * math.prod(
        ax.size for ax in axes
    )


# ---------------------------------------------------------------------------------------
# Rules: each returns the outputs, or None to have the op evaluated in full.


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
        if r.abs.kind == "const" and not _const_fits(r.abs.shape, out_shape, axes):
            return None
    flops = math.prod(Abs("", out_shape, None, axes).window_shape)
    walk.note(eqn.primitive.name, "window", flops, axes)
    vals = []
    for r in ins:
        if r.abs.kind == "window":
            vals.append(expand(walk, r, axes))
        elif not walk.analysis:
            vals.append(_const_window(walk, r.val, axes))
    return _window_out(eqn, keys, axes, None if walk.analysis else _bind(eqn, vals))


def _const_fits(shape, out_shape, axes) -> bool:
    if len(shape) == 0:
        return True
    if len(shape) != len(out_shape):
        return False
    return all(shape[ax.axis] in (1, ax.size) for ax in axes)


def _const_window(walk, val, axes):
    """A constant operand cut to the window where it varies along a spatial axis."""
    shape = np.shape(val)
    if len(shape) == 0 or all(shape[ax.axis] == 1 for ax in axes):
        return val
    val = jnp.asarray(val)
    for ax in axes:
        if shape[ax.axis] != 1:
            val = lax.dynamic_slice_in_dim(val, walk.origin(ax), ax.window, ax.axis)
    return val


def _sliding(walk, eqn, x, spatial, out_spatial, kernels, strides, dilations, padding):
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
    found = _sliding(
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
    flops += _REGION_COST * _box(x.abs.shape, sizes)
    walk.note("conv_general_dilated", "window", flops, axes)
    box = region(walk, x, 0, starts, sizes, bounds)
    if walk.analysis:
        return _window_out(eqn, keys, axes, None)
    valid = [(0, 0) for _ in kernels]
    if not _pad_first_row():
        return _window_out(eqn, keys, axes, _bind(eqn, [box, w.val], padding=tuple(valid)))
    # XLA's CPU backend runs unpadded convolutions 3-5x slower than padded ones (measured
    # on 2-core x86, jax 0.10): pad one stride of zeros on top, drop the extra first row.
    stride = p["window_strides"][0]
    valid[0] = (stride, 0)
    out = _bind(eqn, [box, w.val], padding=tuple(valid))
    return _window_out(eqn, keys, axes, lax.slice_in_dim(out, 1, None, axis=dn.out_spec[2]))


def _pad_first_row() -> bool:
    return jax.default_backend() == "cpu" if PAD_FIRST_ROW is None else PAD_FIRST_ROW


def _pool(walk, eqn, ins, keys):
    (x,) = ins
    p = eqn.params
    spatial = [ax.axis for ax in x.abs.axes]
    if any(p["base_dilation"][a] != 1 for a in spatial):
        return None
    found = _sliding(
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
    walk.note(eqn.primitive.name, "window", flops + _REGION_COST * _box(x.abs.shape, sizes), axes)
    box = region(
        walk, x, _pad_value(_POOLS[eqn.primitive.name], x.abs.dtype), starts, sizes, bounds
    )
    if walk.analysis:
        return _window_out(eqn, keys, axes, None)
    padding = tuple((0, 0) if a in sizes else pad for a, pad in enumerate(p["padding"]))
    return _window_out(eqn, keys, axes, _bind(eqn, [box], padding=padding))


def _pad_value(kind: str, dtype):
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
        return _window_out(eqn, keys, moved, None if walk.analysis else _bind(eqn, [x.val]))
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
    return [dataclasses.replace(total, val=clean_total + _bind(eqn, [x.val - clean]))]


def _cumulative(walk, eqn, ins, keys):
    (x,) = ins
    if eqn.params["axis"] in {ax.axis for ax in x.abs.axes}:
        return None
    walk.note(eqn.primitive.name, "window", math.prod(x.abs.window_shape))
    return _window_out(eqn, keys, x.abs.axes, None if walk.analysis else _bind(eqn, [x.val]))


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
    val = None if walk.analysis else _bind(eqn, [x.val], shape=out)
    return _window_out(eqn, keys, axes, val)


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
    val = None if walk.analysis else _bind(eqn, [x.val], new_sizes=out)
    return _window_out(eqn, keys, axes, val)


def _squeeze(walk, eqn, ins, keys):
    (x,) = ins
    dims = set(eqn.params["dimensions"])
    if dims & {ax.axis for ax in x.abs.axes}:
        return None
    axes = tuple(ax.moved(ax.axis - sum(d < ax.axis for d in dims)) for ax in x.abs.axes)
    walk.note("squeeze", "window", 0.0)
    return _window_out(eqn, keys, axes, None if walk.analysis else _bind(eqn, [x.val]))


def _transpose(walk, eqn, ins, keys):
    (x,) = ins
    perm = list(eqn.params["permutation"])
    axes = tuple(ax.moved(perm.index(ax.axis)) for ax in x.abs.axes)
    walk.note("transpose", "window", math.prod(x.abs.window_shape))
    return _window_out(eqn, keys, axes, None if walk.analysis else _bind(eqn, [x.val]))


def _rev(walk, eqn, ins, keys):
    (x,) = ins
    dims = set(eqn.params["dimensions"])
    axes = tuple(windows.reversed_axis(ax) if ax.axis in dims else ax for ax in x.abs.axes)
    walk.note("rev", "window", math.prod(x.abs.window_shape))
    return _window_out(eqn, keys, axes, None if walk.analysis else _bind(eqn, [x.val]))


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
        return _window_out(eqn, keys, axes, None)
    vals = [x.val, other.val] if on_left else [other.val, x.val]
    return _window_out(eqn, keys, axes, _bind(eqn, vals))


_RULES = {
    "conv_general_dilated": _conv,
    **{name: _pool for name in _POOLS},
    "broadcast_in_dim": _broadcast_in_dim,
    "reshape": _reshape,
    "squeeze": _squeeze,
    "transpose": _transpose,
    "rev": _rev,
    "dot_general": _dot_general,
}


# ---------------------------------------------------------------------------------------
# The clean pass and FLOP counts.


def run_clean(jaxpr, vals: list, wanted: dict, found: dict, path: tuple = ()) -> list:
    """Evaluate `jaxpr` on clean values, inlining calls exactly as `run` names them, and
    store in `found` the value of every key in `wanted`."""
    env = dict(zip(list(jaxpr.constvars) + list(jaxpr.invars), vals, strict=True))
    for var in jaxpr.invars:
        if (path, var) in wanted:
            found[(path, var)] = env[var]

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for i, eqn in enumerate(jaxpr.eqns):
        ins = [read(v) for v in eqn.invars]
        sub = sub_jaxpr(eqn)
        if sub is not None:
            outs = run_clean(sub[0], list(sub[1]) + ins, wanted, found, path + (i,))
        else:
            outs = _bind(eqn, ins)
            outs = outs if eqn.primitive.multiple_results else [outs]
        for v, val in zip(eqn.outvars, outs, strict=True):
            env[v] = val
            if (path, v) in wanted:
                found[(path, v)] = val
    return [read(v) for v in jaxpr.outvars]


def jaxpr_flops(jaxpr, dependent: list[bool]) -> tuple[float, list[bool]]:
    """FLOPs of the ops of `jaxpr` that depend on inputs marked `dependent` (constvars
    then invars), and which outputs depend on them."""
    dep = {
        v for v, d in zip(list(jaxpr.constvars) + list(jaxpr.invars), dependent, strict=True) if d
    }
    total = 0.0
    for eqn in jaxpr.eqns:
        ins = [not isinstance(v, jcore.Literal) and v in dep for v in eqn.invars]
        if not any(ins):
            continue
        sub = sub_jaxpr(eqn)
        if sub is not None:
            flops, outs = jaxpr_flops(sub[0], [False] * len(sub[1]) + ins)
            total += flops
            dep.update(v for v, d in zip(eqn.outvars, outs, strict=True) if d)
        else:
            total += eqn_flops(eqn)
            dep.update(eqn.outvars)
    return total, [not isinstance(v, jcore.Literal) and v in dep for v in jaxpr.outvars]


def eqn_flops(eqn) -> float:
    """A FLOP estimate of one op on full shapes (elementwise ops: one per element)."""
    name, p = eqn.primitive.name, eqn.params
    out = sum(math.prod(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
    sub = sub_jaxpr(eqn)
    if sub is not None:
        return jaxpr_flops(sub[0], [False] * len(sub[1]) + [True] * len(eqn.invars))[0]
    if name == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape
        dn = p["dimension_numbers"]
        return 2.0 * out * math.prod(rhs[a] for a in dn.rhs_spec[1:])
    if name == "dot_general":
        lhs = eqn.invars[0].aval.shape
        return 2.0 * out * math.prod(lhs[a] for a in p["dimension_numbers"][0][0])
    if name in _POOLS or name == "reduce_window":
        return float(out * math.prod(p["window_dimensions"]))
    ins = sum(math.prod(getattr(v.aval, "shape", ())) for v in eqn.invars)
    return float(max(out, ins))
