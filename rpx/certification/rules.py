"""Per-primitive bound rules: how the colour forms of one pixel pass through one op.

The walk is `rpx.incremental`'s (same jaxpr interpreter, same window arithmetic, same
clean-activation cache); only the values differ: a "window" or "full" value holds forms
(`rpx.certification.forms`, [2, C + 1, *window or full shape]) instead of numbers. Values
outside the changed window are the clean activations, exactly, as constant forms.

Values moved between windows and full maps: `layout`; the softmax head: `head`.

Every op on a colour-dependent value has a rule here or is refused with a ValueError
naming it: no op is ever passed through unbounded.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from rpx.certification import forms
from rpx.certification.head import HEAD, IDENTITY, head, row_step
from rpx.certification.layout import (
    FORMS,
    BoundWalk,
    aligned,
    form_box,
    full_forms,
    output_abs,
    relax,
)
from rpx.incremental import interpreter
from rpx.incremental.rules import pad_value, sliding
from rpx.incremental.walk import Abs, Ref, bind

INCREASING = {
    "exp": jnp.exp, "exp2": jnp.exp2, "expm1": jnp.expm1, "log": jnp.log, "log1p": jnp.log1p,
    "tanh": jnp.tanh, "logistic": lambda x: 1 / (1 + jnp.exp(-x)), "sqrt": jnp.sqrt,
    "cbrt": jnp.cbrt, "erf": lax.erf, "atan": jnp.arctan, "asinh": jnp.arcsinh,
    "sinh": jnp.sinh, "floor": jnp.floor, "ceil": jnp.ceil, "round": jnp.round,
    "sign": jnp.sign,
}  # fmt: skip
DECREASING = {"rsqrt": lax.rsqrt, "erfc": lax.erfc}
# Linear with non-negative coefficients in their float operands (jointly): forms map
# slice by slice.
POSITIVE_LINEAR = frozenset(
    """reshape transpose broadcast_in_dim squeeze expand_dims rev slice concatenate
    reduce_sum cumsum dynamic_slice dynamic_update_slice gather select_n stack""".split()
)


def apply(walk: BoundWalk, eqn, ins: list[Ref], keys, path) -> list[Ref]:
    """The output Refs of one op (the `apply` of `interpreter.run`)."""
    kinds = {r.abs.kind for r in ins}
    if kinds <= {"const"}:
        return interpreter.const_outs(walk, eqn, ins, keys)
    outs = interpreter.inline(walk, eqn, ins, path, apply)
    if outs is not None:
        return outs
    name = eqn.primitive.name
    if kinds & set(HEAD) or row_step(walk, eqn, ins):
        return [head(walk, eqn, ins, keys)]
    rule = _rule_for(name)
    if rule is None:
        raise ValueError(
            f"rpx.certify cannot bound the primitive {name!r} on a value that depends on "
            "the pixel's colour (see rpx.certification.rules for the ops it follows)"
        )
    return [rule(walk, eqn, ins, keys)]


def _rule_for(name):
    if name in _RULES:
        return _RULES[name]
    if name in INCREASING or name in DECREASING or name in IDENTITY or name == "abs":
        return _unary
    if name in POSITIVE_LINEAR:
        return _positive_linear
    return None


# ---- elementwise ops ----------------------------------------------------------------


def _elementwise(walk: BoundWalk, eqn, ins, keys):
    name = eqn.primitive.name
    out_shape = tuple(eqn.outvars[0].aval.shape)
    kind, axes, vals = aligned(walk, ins, out_shape)
    is_form = [r.abs.kind in FORMS for r in ins]
    if name in ("mul", "div") and all(is_form):
        raise ValueError(f"rpx.certify cannot bound {name!r} of two colour-dependent values")
    if name == "div" and not is_form[0]:
        raise ValueError("rpx.certify cannot bound a division by a colour-dependent value")
    walk.note(name, kind, 4.0 * walk.p * math.prod(Abs("", out_shape, None, axes).window_shape))
    if walk.analysis:
        return Ref(keys[0], output_abs(eqn, kind, axes))
    p = walk.p
    window_shape = Abs("", out_shape, None, axes).window_shape

    def as_form(i):
        return vals[i] if is_form[i] else forms.const(jnp.broadcast_to(vals[i], window_shape), p)

    if name == "add":
        val = forms.add(as_form(0), as_form(1))
        dense = [walk.dense.get(r.key) for r in ins if r.abs.kind in FORMS]
        if not all(is_form) and dense[0] is not None and out_shape == walk.out_shape:
            v, weights, bias = dense[0]
            extra = jnp.broadcast_to(vals[1 - is_form.index(True)], out_shape)[0]
            walk.dense[keys[0]] = (v, weights, bias + extra)
    elif name == "sub":
        val = forms.add(as_form(0), forms.negate(as_form(1)))
    elif name == "mul":
        f, w = (vals[0], vals[1]) if is_form[0] else (vals[1], vals[0])
        val = forms.signed_linear(jnp.multiply, jnp.asarray(w, jnp.float32), f)
    elif name == "div":
        val = forms.signed_linear(jnp.multiply, 1.0 / jnp.asarray(vals[1], jnp.float32), vals[0])
    elif name in ("max", "min"):
        sign = 1.0 if name == "max" else -1.0
        a, b = (vals[0], vals[1]) if is_form[0] else (vals[1], vals[0])
        a = a if sign > 0 else forms.negate(a)
        if is_form[0] and is_form[1]:
            b = b if sign > 0 else forms.negate(b)
            relax(walk, keys[0], 0, "max2", kind, axes, forms.add(a, forms.negate(b)), (sign,))
            val = forms.maximum(a, b)
        else:
            info = (sign, is_form.index(True))
            relax(walk, keys[0], 0, "max_const", kind, axes, a, info)
            val = forms.maximum_const(a, sign * jnp.asarray(b, jnp.float32))
        val = val if sign > 0 else forms.negate(val)
    elif name == "neg":
        val = forms.negate(vals[0])
    elif name == "clamp":
        lo, x, hi = vals
        if is_form[0] or is_form[2]:
            raise ValueError("rpx.certify cannot bound a clamp with colour-dependent limits")
        relax(walk, keys[0], 0, "clamp", kind, axes, x)
        low = forms.negate(forms.maximum_const(x, lo))
        relax(walk, keys[0], 1, "clamp", kind, axes, low)
        val = forms.negate(forms.maximum_const(low, -hi))
    else:
        raise ValueError(f"rpx.certify cannot bound the primitive {name!r}")
    val = jnp.broadcast_to(val, (2, p, *window_shape))
    return Ref(keys[0], output_abs(eqn, kind, axes), val)


def _unary(walk: BoundWalk, eqn, ins, keys):
    (x,) = ins
    name = eqn.primitive.name
    if name == "convert_element_type" and eqn.params["new_dtype"] not in (jnp.float32, jnp.float64):
        # A narrower float (bfloat16 compute) rounds far more than the proof margin covers.
        raise ValueError(
            f"rpx.certify needs float32 compute; predict converts to {eqn.params['new_dtype']}"
        )
    walk.note(name, x.abs.kind, 2.0 * walk.p * math.prod(x.abs.window_shape))
    abs_ = output_abs(eqn, x.abs.kind, x.abs.axes)
    if walk.analysis:
        return Ref(keys[0], abs_)
    if name in IDENTITY:
        return Ref(keys[0], abs_, x.val)
    if name == "abs":
        relax(walk, keys[0], 0, "abs", x.abs.kind, x.abs.axes, x.val)
        lo, hi = forms.concrete(x.val)
        least = jnp.where(lo >= 0, lo, jnp.where(hi <= 0, -hi, 0.0))
        most = jnp.maximum(-lo, hi)
        val = jnp.stack([forms.const(least, walk.p)[0], forms.const(most, walk.p)[1]])
        val = jnp.where(lo >= 0, x.val, jnp.where(hi <= 0, forms.negate(x.val), val))
        return Ref(keys[0], abs_, val)
    increasing = name in INCREASING
    fn = INCREASING[name] if increasing else DECREASING[name]
    relax(walk, keys[0], 0, "monotone", x.abs.kind, x.abs.axes, x.val, (name,))
    return Ref(keys[0], abs_, forms.monotone(fn, x.val, increasing))


# ---- linear ops ---------------------------------------------------------------------


def _conv(walk: BoundWalk, eqn, ins, keys):
    x, w = ins
    p = eqn.params
    if w.abs.kind != "const" or x.abs.kind not in FORMS:
        raise ValueError("rpx.certify cannot bound a convolution with colour-dependent weights")
    if p["batch_group_count"] != 1:
        raise ValueError("rpx.certify cannot bound a convolution with batch_group_count > 1")
    dn = p["dimension_numbers"]
    kernels = [w.abs.shape[a] for a in dn.rhs_spec[2:]]
    found = None
    if x.abs.kind == "window" and all(d == 1 for d in p["lhs_dilation"]):
        spatial, out_spatial = dn.lhs_spec[2:], dn.out_spec[2:]
        found = sliding(
            walk, eqn, x, spatial, out_spatial, kernels,
            p["window_strides"], p["rhs_dilation"], p["padding"],
        )  # fmt: skip
    depth = 2.0 * math.prod(kernels) * w.abs.shape[dn.rhs_spec[1]] * 2 * walk.p
    if found is None:
        x = full_forms(walk, x)
        walk.note("conv_general_dilated", "full", depth * math.prod(eqn.outvars[0].aval.shape))
        if walk.analysis:
            return Ref(keys[0], output_abs(eqn, "full"))
        val = forms.signed_linear(lambda s, k: bind(eqn, [s, k]), w.val, x.val)
        return Ref(keys[0], output_abs(eqn, "full"), val)
    axes, starts, sizes, bounds = found
    out_abs = output_abs(eqn, "window", axes)
    walk.note("conv_general_dilated", "window", depth * math.prod(out_abs.window_shape), axes)
    box = form_box(walk, x, 0, starts, sizes, bounds)
    if walk.analysis:
        return Ref(keys[0], out_abs)
    valid = tuple((0, 0) for _ in kernels)
    val = forms.signed_linear(lambda s, k: bind(eqn, [s, k], padding=valid), w.val, box)
    return Ref(keys[0], out_abs, val)


def _dot_general(walk: BoundWalk, eqn, ins, keys):
    lhs, rhs = ins
    if {lhs.abs.kind, rhs.abs.kind} & {"const"} != {"const"}:
        raise ValueError("rpx.certify cannot bound a product of two colour-dependent values")
    on_left = lhs.abs.kind != "const"
    x, w = (lhs, rhs) if on_left else (rhs, lhs)
    x = full_forms(walk, x)
    walk.note("dot_general", "full", 4.0 * walk.p * math.prod(eqn.outvars[0].aval.shape))
    if walk.analysis:
        return Ref(keys[0], output_abs(eqn, "full"))

    def product(s, k):
        return bind(eqn, [s, k] if on_left else [k, s])

    (contract, _), (batch, _) = eqn.params["dimension_numbers"]
    out_shape = tuple(eqn.outvars[0].aval.shape)
    if on_left and out_shape == walk.out_shape and tuple(contract) == (1,) and not batch:
        if len(w.abs.shape) == 2 and tuple(eqn.params["dimension_numbers"][0][1]) == (0,):
            walk.dense[keys[0]] = (x, w.val, jnp.zeros(out_shape[1], jnp.float32))
    return Ref(keys[0], output_abs(eqn, "full"), forms.signed_linear(product, w.val, x.val))


def _positive_linear(walk: BoundWalk, eqn, ins, keys):
    """Reshapes, transposes, sums, slices, concatenations, selects with a constant
    predicate: linear with non-negative coefficients in the float operands, so forms
    map slice by slice (on full maps)."""
    name = eqn.primitive.name
    floating = [jnp.issubdtype(r.abs.dtype, jnp.floating) for r in ins]
    if any(r.abs.kind in FORMS and not f for r, f in zip(ins, floating, strict=True)):
        raise ValueError(f"rpx.certify cannot bound {name!r} on a colour-dependent index")
    if name == "select_n" and ins[0].abs.kind != "const":
        raise ValueError("rpx.certify cannot bound a select whose choice depends on the colour")
    if name == "reduce_sum" and ins[0].abs.kind == "window":
        reduced = set(eqn.params["axes"])
        if not reduced & {ax.axis for ax in ins[0].abs.axes}:
            return _window_reduce_sum(walk, eqn, ins[0], keys)
    full = [full_forms(walk, r) if r.abs.kind in FORMS else r for r in ins]
    walk.note(name, "full", 2.0 * walk.p * math.prod(eqn.outvars[0].aval.shape))
    if walk.analysis:
        return Ref(keys[0], output_abs(eqn, "full"))
    lifted = [
        forms.const(r.val, walk.p) if r.abs.kind == "const" and f else r.val
        for r, f in zip(full, floating, strict=True)
    ]
    tracked = [i for i, f in enumerate(floating) if f]

    def one(*slices):
        args = list(lifted)
        for i, s in zip(tracked, slices, strict=True):
            args[i] = s
        return bind(eqn, args)

    val = forms.per_slice(one, *[lifted[i] for i in tracked])
    return Ref(keys[0], output_abs(eqn, "full"), val)


def _window_reduce_sum(walk, eqn, x, keys):
    axes_reduced = set(eqn.params["axes"])
    moved = tuple(ax.moved(ax.axis - sum(r < ax.axis for r in axes_reduced)) for ax in x.abs.axes)
    walk.note("reduce_sum", "window", 2.0 * walk.p * math.prod(x.abs.window_shape))
    abs_ = output_abs(eqn, "window", moved)
    if walk.analysis:
        return Ref(keys[0], abs_)
    return Ref(keys[0], abs_, forms.positive_linear(lambda s: bind(eqn, [s]), x.val))


def _pad(walk: BoundWalk, eqn, ins, keys):
    x, fill = ins
    if fill.abs.kind != "const":
        raise ValueError("rpx.certify cannot bound a pad whose value depends on the colour")
    x = full_forms(walk, x)
    walk.note("pad", "full", 2.0 * walk.p * math.prod(eqn.outvars[0].aval.shape))
    if walk.analysis:
        return Ref(keys[0], output_abs(eqn, "full"))
    zero = jnp.zeros((), jnp.float32)
    val = forms.positive_linear(lambda s: bind(eqn, [s, zero]), x.val)
    filled = bind(eqn, [jnp.zeros(x.abs.shape, jnp.float32), jnp.ones((), jnp.float32)])
    return Ref(keys[0], output_abs(eqn, "full"), forms.shift(val, filled * fill.val))


# ---- pools and maxima ---------------------------------------------------------------


def _pool(walk: BoundWalk, eqn, ins, keys):
    (x,) = ins
    name, p = eqn.primitive.name, eqn.params
    if name == "reduce_window_min":
        raise ValueError("rpx.certify cannot bound reduce_window_min (a min pool)")
    kind = "sum" if name == "reduce_window_sum" else "max"
    pad = pad_value(kind, jnp.float32)
    ndim = len(x.abs.shape)
    found = None
    if x.abs.kind == "window" and all(p["base_dilation"][a] == 1 for a in range(ndim)):
        spatial = [ax.axis for ax in x.abs.axes]
        found = sliding(
            walk, eqn, x, spatial, spatial,
            [p["window_dimensions"][a] for a in spatial], [p["window_strides"][a] for a in spatial],
            [p["window_dilation"][a] for a in spatial], [p["padding"][a] for a in spatial],
        )  # fmt: skip
    cost = 2.0 * walk.p * math.prod(p["window_dimensions"])
    if kind == "max":
        relax(walk, keys[0], 0, "pool_max", x.abs.kind, x.abs.axes, x.val)
    if found is None:
        x = full_forms(walk, x)
        out_abs = output_abs(eqn, "full")
        padding = tuple(p["padding"])
        box = x.val
    else:
        axes, starts, sizes, bounds = found
        out_abs = output_abs(eqn, "window", axes)
        padding = tuple((0, 0) if a in sizes else pad for a, pad in enumerate(p["padding"]))
        box = form_box(walk, x, pad, starts, sizes, bounds)
    walk.note(name, out_abs.kind, cost * math.prod(out_abs.window_shape), out_abs.axes)
    if walk.analysis:
        return Ref(keys[0], out_abs)
    if kind == "sum":
        val = forms.positive_linear(lambda s: bind(eqn, [s], padding=padding), box)
        return Ref(keys[0], out_abs, val)
    if any(d != 1 for d in p["base_dilation"]):
        raise ValueError("rpx.certify cannot bound a max pool with base dilation")
    # The pool's candidates, one strided slice per kernel offset, then their maximum.
    config = [(0, 0, 0), (0, 0, 0)] + [(lo, hi, 0) for lo, hi in padding]
    coefficients = lax.pad(box[:, :-1], jnp.zeros((), box.dtype), config)
    constants = lax.pad(box[:, -1:], jnp.asarray(-jnp.inf, box.dtype), config)
    padded = jnp.concatenate([coefficients, constants], 1)
    out_shape = out_abs.window_shape
    candidates = []
    dims, strides, dilation = p["window_dimensions"], p["window_strides"], p["window_dilation"]
    for offset in np.ndindex(*dims):
        start = [0, 0] + [o * d for o, d in zip(offset, dilation, strict=True)]
        limit = [
            s + (n - 1) * st + 1 for s, n, st in zip(start[2:], out_shape, strides, strict=True)
        ]
        candidates.append(lax.slice(padded, start, [2, padded.shape[1], *limit], [1, 1, *strides]))
    return Ref(keys[0], out_abs, forms.max_over(jnp.stack(candidates, 2), 0))


def _reduce_max(walk: BoundWalk, eqn, ins, keys):
    (x,) = ins
    name = eqn.primitive.name
    x = full_forms(walk, x)
    walk.note(name, "full", 4.0 * walk.p * math.prod(x.abs.shape))
    if walk.analysis:
        return Ref(keys[0], output_abs(eqn, "full"))
    reduced = tuple(eqn.params["axes"])
    kept = [a for a in range(len(x.abs.shape)) if a not in reduced]
    out_shape = tuple(eqn.outvars[0].aval.shape)
    sign = 1.0 if name == "reduce_max" else -1.0
    f = x.val if sign > 0 else forms.negate(x.val)
    relax(walk, keys[0], 0, "reduce_max", "full", (), f, (sign,))

    def gather(s):
        return jnp.transpose(s, (*reduced, *kept)).reshape(-1, *out_shape)

    f = forms.positive_linear(gather, f)
    val = forms.max_over(f, 0)
    return Ref(keys[0], output_abs(eqn, "full"), val if sign > 0 else forms.negate(val))


_RULES = {
    "conv_general_dilated": _conv,
    "dot_general": _dot_general,
    "pad": _pad,
    "reduce_window_sum": _pool,
    "reduce_window_max": _pool,
    "reduce_window_min": _pool,
    "reduce_max": _reduce_max,
    "reduce_min": _reduce_max,
    **{name: _elementwise for name in "add add_any sub mul div max min neg clamp".split()},
}
