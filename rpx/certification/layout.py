"""Where a bound walk's forms live: the walk's state, and forms moved between a window
and the full map (`rpx.certification.rules` takes one op; this module lays out its operands).

A "window" or "full" value holds forms (`rpx.certification.forms`, [2, C + 1, *window
or full shape]); outside its window a value is its clean activation, a constant form.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from jax import lax

from rpx.certification import forms
from rpx.incremental import windows
from rpx.incremental.rules import const_fits, const_window
from rpx.incremental.walk import Abs, Ref, Walk, overlay, read_box

FORMS = ("window", "full")


class BoundWalk(Walk):
    """A walk whose values are forms in p = C + 1 slices; out_shape: predict's [1, K]."""

    def __init__(self, entries, p, out_shape, cache=None, image=None, position=None):
        super().__init__(entries, cache, image, position)
        self.p, self.out_shape = p, tuple(out_shape)
        # key -> (v, weights [F, K], bias [K]): logits = v @ weights + bias, v [1, F] a
        # Ref with forms; margins then take the difference of weights first.
        self.dense: dict = {}
        # (key, i) -> Relax: the concrete bounds of the i-th nonlinear step of the op that
        # gives `key`, which back-substitution (`rpx.certification.crown`) relaxes.
        self.relax: dict = {}


@dataclasses.dataclass(frozen=True)
class Relax:
    """The bounds [lo, hi] over the box of the argument of one nonlinear step, in the
    walk's layout: the full map (kind "full") or a window of it at `starts` {axis:
    traced start} ("window"); outside a window the argument is its clean value. `op`
    names the step (see `crown`), `info` holds what else it needs (static)."""

    op: str
    kind: str
    starts: dict
    lo: Any
    hi: Any
    info: tuple = ()


def relax(walk: BoundWalk, key, i, op, kind, axes, f, info=()) -> None:
    """Record the bounds of forms f (on layout kind, axes) for back-substitution."""
    if walk.analysis:
        return
    lo, hi = forms.concrete(f)
    starts = {ax.axis: walk.origin(ax) for ax in axes} if kind == "window" else {}
    walk.relax[(key, i)] = Relax(op, kind, starts, lo, hi, tuple(info))


def output_abs(eqn, kind, axes=()) -> Abs:
    aval = eqn.outvars[0].aval
    return Abs(kind, tuple(aval.shape), aval.dtype, tuple(axes))


def full_forms(walk: BoundWalk, ref: Ref) -> Ref:
    """ref as forms over its whole map (a window written into the clean activation)."""
    if ref.abs.kind == "full":
        return ref
    if ref.abs.kind == "const":
        val = None if walk.analysis else forms.const(ref.val, walk.p)
        return Ref(ref.key, Abs("full", ref.abs.shape, ref.abs.dtype), val)
    if ref.key in walk.full:
        return walk.full[ref.key]
    walk.need(ref, 0, {})
    walk.note("materialize", "full", 2.0 * walk.p * math.prod(ref.abs.shape))
    abs_ = Abs("full", ref.abs.shape, ref.abs.dtype)
    val = None
    if not walk.analysis:
        by_axis = ref.abs.by_axis()
        sizes = {a: ax.size for a, ax in by_axis.items()}
        clean = walk.read(ref, 0, {a: 0 for a in by_axis}, sizes)
        starts = [walk.origin(by_axis[a]) if a in by_axis else 0 for a in range(len(clean.shape))]
        val = lax.dynamic_update_slice(forms.const(clean, walk.p), ref.val, [0, 0, *starts])
    walk.full[ref.key] = Ref(ref.key, abs_, val)
    return walk.full[ref.key]


def form_box(walk: BoundWalk, ref: Ref, pad, starts, sizes, bounds):
    """Forms of ref over a box (`incremental.walk.region`'s arguments): clean constants,
    `pad` outside the map, ref's window laid over them. None when analysing."""
    clean = read_box(walk, ref, pad, starts, sizes, bounds)
    if walk.analysis:
        return None
    clean = forms.const(clean, walk.p)
    lay = functools.partial(overlay, walk, ref.abs, starts=starts, sizes=sizes)
    return forms.per_slice(lay, ref.val, clean)


def aligned(walk: BoundWalk, ins: list[Ref], out_shape):
    """The operands of an elementwise op as forms on one common layout: (kind, axes,
    values) with values None for constants kept as arrays."""
    tracked = [r for r in ins if r.abs.kind in FORMS]
    windowed = all(r.abs.kind == "window" for r in tracked)
    if windowed:
        first = tracked[0].abs.axes
        windowed = all(len(r.abs.shape) == len(out_shape) for r in tracked) and all(
            all(windows.same_map(a, b) for a, b in zip(r.abs.axes, first, strict=True))
            for r in tracked
        )
    if windowed:
        axes = tuple(
            functools.reduce(windows.union, [r.abs.axes[c] for r in tracked]) for c in (0, 1)
        )
        windowed = all(
            r.abs.kind != "const" or const_fits(r.abs.shape, out_shape, axes) for r in ins
        )
    if not windowed:
        vals = [full_forms(walk, r).val if r.abs.kind in FORMS else r.val for r in ins]
        return "full", (), vals
    vals = []
    for r in ins:
        if r.abs.kind == "const":
            vals.append(None if walk.analysis else const_window(walk, r.val, axes))
        elif r.abs.axes == axes:
            vals.append(r.val)
        else:
            sizes = {ax.axis: ax.window for ax in axes}
            starts = {} if walk.analysis else {ax.axis: walk.origin(ax) for ax in axes}
            bounds = {ax.axis: ax.span for ax in axes}
            vals.append(form_box(walk, r, 0, starts, sizes, bounds))
    return "window", axes, vals
