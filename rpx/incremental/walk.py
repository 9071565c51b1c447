"""The state of a walk over a jaxpr, and moving values between windows and full maps.

A value in the walk is a `Ref`: the clean activation it is a version of (its key), an
`Abs` describing it statically, and (when evaluating) the array. An activation of kind
"window" differs from the clean one only inside a box of static size along the two
spatial axes; merging a box into the clean activation is a gather of the clean values
and a `where`, and writing it back whole is a `dynamic_update_slice`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from rpx.incremental.windows import Axis

# Gathering and overlaying a box costs a few memory passes per element (FLOP estimate).
REGION_COST = 3.0

# Call-like primitives whose body the walk inlines (their names across JAX versions).
CALLS = frozenset(
    "jit pjit closed_call core_call custom_jvp_call custom_vjp_call custom_vjp_call_jaxpr "
    "checkpoint remat remat2".split()
)


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


def bind(eqn, vals, **overrides):
    params = eqn.primitive.get_bind_params({**eqn.params, **overrides})
    return eqn.primitive.bind(*vals, **params)


def window_out(eqn, keys, axes, val) -> list[Ref]:
    aval = eqn.outvars[0].aval
    return [Ref(keys[0], Abs("window", tuple(aval.shape), aval.dtype, tuple(axes)), val)]


def dtype_of(x):
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
    clean = read_box(walk, ref, pad_value, starts, sizes, bounds)
    if walk.analysis:
        return None
    return overlay(walk, ref.abs, ref.val, clean, starts, sizes)


def read_box(walk: Walk, ref: Ref, pad_value, starts: dict, sizes: dict, bounds: dict):
    """The clean activation of ref over the box `region` describes (None when analysing)."""
    shape = ref.abs.shape
    pads = {a: (max(0, -lo), max(0, hi + sizes[a] - shape[a])) for a, (lo, hi) in bounds.items()}
    walk.need(ref, pad_value, pads)
    if walk.analysis:
        return None
    return walk.read(ref, pad_value, starts, sizes)


def overlay(walk: Walk, abs_: Abs, window, clean, starts: dict, sizes: dict):
    """The window values `window` (of a value described by `abs_`) laid over `clean`, a
    box of static `sizes` at traced `starts`."""
    shape = abs_.shape
    by_axis = abs_.by_axis()
    # Shift the window into the box: pad it by the box size on both sides so the slice
    # never clamps while they overlap; where they do not, the mask is all False.
    config = [(sizes[a], sizes[a], 0) if a in sizes else (0, 0, 0) for a in range(len(shape))]
    padded = lax.pad(window, jnp.zeros((), window.dtype), config)
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
    walk.note("expand", "window", REGION_COST * box_size(ref.abs.shape, sizes), axes)
    starts = {} if walk.analysis else {ax.axis: walk.origin(ax) for ax in axes}
    return region(walk, ref, 0, starts, sizes, {ax.axis: ax.span for ax in axes})


def box_size(shape, sizes: dict) -> int:
    return math.prod(sizes.get(a, s) for a, s in enumerate(shape))
