"""Per-primitive bound rules: how the colour forms of one pixel pass through one op.

The walk is `rpx.incremental`'s (same jaxpr interpreter, same window arithmetic, same
clean-activation cache); only the values differ: a "window" or "full" value holds forms
(`rpx.certification.forms`, [2, C + 1, *window or full shape]) instead of numbers. Values
outside the changed window are the clean activations, exactly, as constant forms.

Two more kinds carry the classifier's head: a value of the output's shape [1, K] is
"order" when its classes are in the same order as the logits it came from (the logits
minus a per-row value, then exp, then divided by a positive per-row sum: softmax and
log-softmax), and "opaque" for colour-dependent values no bound follows (that per-row
sum). argmax is invariant to these steps, so margins are bounded on the logits. An
opaque value may only feed such per-row steps; anything else is refused.

Every op on a colour-dependent value has a rule here or is refused with a ValueError
naming it: no op is ever passed through unbounded.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from rpx.certification import forms
from rpx.incremental import interpreter, windows
from rpx.incremental.rules import const_fits, const_window, pad_value, sliding
from rpx.incremental.walk import Abs, Ref, Walk, bind, overlay, read_box

FORMS = ("window", "full")
HEAD = ("order", "order+", "opaque", "opaque+")

INCREASING = {
    "exp": jnp.exp, "exp2": jnp.exp2, "expm1": jnp.expm1, "log": jnp.log, "log1p": jnp.log1p,
    "tanh": jnp.tanh, "logistic": lambda x: 1 / (1 + jnp.exp(-x)), "sqrt": jnp.sqrt,
    "cbrt": jnp.cbrt, "erf": lax.erf, "atan": jnp.arctan, "asinh": jnp.arcsinh,
    "sinh": jnp.sinh, "floor": jnp.floor, "ceil": jnp.ceil, "round": jnp.round,
    "sign": jnp.sign,
}  # fmt: skip
DECREASING = {"rsqrt": lax.rsqrt, "erfc": lax.erfc}
IDENTITY = frozenset("convert_element_type copy copy_p stop_gradient reduce_precision".split())
# Linear with non-negative coefficients in their float operands (jointly): forms map
# slice by slice.
POSITIVE_LINEAR = frozenset(
    """reshape transpose broadcast_in_dim squeeze expand_dims rev slice concatenate
    reduce_sum cumsum dynamic_slice dynamic_update_slice gather select_n""".split()
)
# Steps of a softmax-like head (see the module docstring): ops whose output is positive,
# ops that keep positive inputs positive, ops that keep the order of classes.
POSITIVE_OUT = frozenset("exp exp2 logistic".split())
POSITIVE_KEEPING = IDENTITY | frozenset(
    "reduce_sum broadcast_in_dim reshape add mul div max".split()
)
# (not tanh or logistic: they saturate, and two saturated classes tie in float32)
ORDER_KEEPING = IDENTITY | frozenset("exp exp2 log log1p reshape broadcast_in_dim".split())


class BoundWalk(Walk):
    """A walk whose values are forms in p = C + 1 slices; out_shape: predict's [1, K]."""

    def __init__(self, entries, p, out_shape, cache=None, image=None, position=None):
        super().__init__(entries, cache, image, position)
        self.p, self.out_shape = p, tuple(out_shape)


def apply(walk: BoundWalk, eqn, ins: list[Ref], keys, path) -> list[Ref]:
    """The output Refs of one op (the `apply` of `interpreter.run`)."""
    kinds = {r.abs.kind for r in ins}
    if kinds <= {"const"}:
        return interpreter.const_outs(walk, eqn, ins, keys)
    outs = interpreter.inline(walk, eqn, ins, path, apply)
    if outs is not None:
        return outs
    name = eqn.primitive.name
    if kinds & set(HEAD) or _row_step(walk, eqn, ins):
        return [_head(walk, eqn, ins, keys)]
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


def _out_abs(eqn, kind, axes=()) -> Abs:
    aval = eqn.outvars[0].aval
    return Abs(kind, tuple(aval.shape), aval.dtype, tuple(axes))


# ---- moving forms between windows and full maps -------------------------------------


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


def _aligned(walk: BoundWalk, ins: list[Ref], out_shape):
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


# ---- elementwise ops ----------------------------------------------------------------


def _elementwise(walk: BoundWalk, eqn, ins, keys):
    name = eqn.primitive.name
    out_shape = tuple(eqn.outvars[0].aval.shape)
    kind, axes, vals = _aligned(walk, ins, out_shape)
    is_form = [r.abs.kind in FORMS for r in ins]
    if name in ("mul", "div") and all(is_form):
        raise ValueError(f"rpx.certify cannot bound {name!r} of two colour-dependent values")
    if name == "div" and not is_form[0]:
        raise ValueError("rpx.certify cannot bound a division by a colour-dependent value")
    walk.note(name, kind, 4.0 * walk.p * math.prod(Abs("", out_shape, None, axes).window_shape))
    if walk.analysis:
        return Ref(keys[0], _out_abs(eqn, kind, axes))
    p = walk.p
    window_shape = Abs("", out_shape, None, axes).window_shape

    def as_form(i):
        return vals[i] if is_form[i] else forms.const(jnp.broadcast_to(vals[i], window_shape), p)

    if name == "add":
        val = forms.add(as_form(0), as_form(1))
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
            val = forms.maximum(a, b if sign > 0 else forms.negate(b))
        else:
            val = forms.maximum_const(a, sign * jnp.asarray(b, jnp.float32))
        val = val if sign > 0 else forms.negate(val)
    elif name == "neg":
        val = forms.negate(vals[0])
    elif name == "clamp":
        lo, x, hi = vals
        if is_form[0] or is_form[2]:
            raise ValueError("rpx.certify cannot bound a clamp with colour-dependent limits")
        val = forms.negate(forms.maximum_const(forms.negate(forms.maximum_const(x, lo)), -hi))
    else:
        raise ValueError(f"rpx.certify cannot bound the primitive {name!r}")
    val = jnp.broadcast_to(val, (2, p, *window_shape))
    return Ref(keys[0], _out_abs(eqn, kind, axes), val)


def _unary(walk: BoundWalk, eqn, ins, keys):
    (x,) = ins
    name = eqn.primitive.name
    if name == "convert_element_type" and not jnp.issubdtype(eqn.params["new_dtype"], jnp.floating):
        raise ValueError("rpx.certify cannot bound a conversion of the colour to integers")
    walk.note(name, x.abs.kind, 2.0 * walk.p * math.prod(x.abs.window_shape))
    abs_ = _out_abs(eqn, x.abs.kind, x.abs.axes)
    if walk.analysis:
        return Ref(keys[0], abs_)
    if name in IDENTITY:
        return Ref(keys[0], abs_, x.val)
    if name == "abs":
        lo, hi = forms.concrete(x.val)
        least = jnp.where(lo >= 0, lo, jnp.where(hi <= 0, -hi, 0.0))
        most = jnp.maximum(-lo, hi)
        val = jnp.stack([forms.const(least, walk.p)[0], forms.const(most, walk.p)[1]])
        val = jnp.where(lo >= 0, x.val, jnp.where(hi <= 0, forms.negate(x.val), val))
        return Ref(keys[0], abs_, val)
    increasing = name in INCREASING
    fn = INCREASING[name] if increasing else DECREASING[name]
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
            return Ref(keys[0], _out_abs(eqn, "full"))
        val = forms.signed_linear(lambda s, k: bind(eqn, [s, k]), w.val, x.val)
        return Ref(keys[0], _out_abs(eqn, "full"), val)
    axes, starts, sizes, bounds = found
    out_abs = _out_abs(eqn, "window", axes)
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
        return Ref(keys[0], _out_abs(eqn, "full"))

    def product(s, k):
        return bind(eqn, [s, k] if on_left else [k, s])

    return Ref(keys[0], _out_abs(eqn, "full"), forms.signed_linear(product, w.val, x.val))


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
        return Ref(keys[0], _out_abs(eqn, "full"))
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
    return Ref(keys[0], _out_abs(eqn, "full"), val)


def _window_reduce_sum(walk, eqn, x, keys):
    axes_reduced = set(eqn.params["axes"])
    moved = tuple(ax.moved(ax.axis - sum(r < ax.axis for r in axes_reduced)) for ax in x.abs.axes)
    walk.note("reduce_sum", "window", 2.0 * walk.p * math.prod(x.abs.window_shape))
    abs_ = _out_abs(eqn, "window", moved)
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
        return Ref(keys[0], _out_abs(eqn, "full"))
    zero = jnp.zeros((), jnp.float32)
    val = forms.positive_linear(lambda s: bind(eqn, [s, zero]), x.val)
    filled = bind(eqn, [jnp.zeros(x.abs.shape, jnp.float32), jnp.ones((), jnp.float32)])
    return Ref(keys[0], _out_abs(eqn, "full"), forms.shift(val, filled * fill.val))


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
    if found is None:
        x = full_forms(walk, x)
        out_abs = _out_abs(eqn, "full")
        padding = tuple(p["padding"])
        box = x.val
    else:
        axes, starts, sizes, bounds = found
        out_abs = _out_abs(eqn, "window", axes)
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
        return Ref(keys[0], _out_abs(eqn, "full"))
    reduced = tuple(eqn.params["axes"])
    kept = [a for a in range(len(x.abs.shape)) if a not in reduced]
    out_shape = tuple(eqn.outvars[0].aval.shape)
    sign = 1.0 if name == "reduce_max" else -1.0
    f = x.val if sign > 0 else forms.negate(x.val)

    def gather(s):
        return jnp.transpose(s, (*reduced, *kept)).reshape(-1, *out_shape)

    f = forms.positive_linear(gather, f)
    val = forms.max_over(f, 0)
    return Ref(keys[0], _out_abs(eqn, "full"), val if sign > 0 else forms.negate(val))


# ---- the head: softmax and log-softmax ----------------------------------------------


def _row_step(walk: BoundWalk, eqn, ins) -> bool:
    """Whether an op on forms of the output's shape starts an order-preserving head."""
    name = eqn.primitive.name
    if eqn.outvars[0].aval.shape != walk.out_shape:
        return False
    if name in ("exp", "exp2", "log", "log1p"):
        return ins[0].abs.kind in FORMS and ins[0].abs.shape == walk.out_shape
    if name in ("sub", "add", "mul", "div") and len(ins) == 2:
        x, y = ins
        return x.abs.kind in FORMS and x.abs.shape == walk.out_shape and _per_row(walk, y, name)
    return False


def _per_row(walk: BoundWalk, ref: Ref, name: str) -> bool:
    """Whether ref is one value per row (shape (), (1,) or (B, 1)); for mul and div also
    known positive."""
    rows = ref.abs.shape in ((), (1,), (walk.out_shape[0], 1))
    if not rows:
        return False
    if name in ("mul", "div"):
        if ref.abs.kind == "const":
            return ref.val is not None and bool(np.all(np.asarray(ref.val) > 0))
        return ref.abs.kind.endswith("+")
    return True


def _head(walk: BoundWalk, eqn, ins, keys) -> Ref:
    """Ops of a softmax-like head: their output is "order" (classes in the logits'
    order; its value is the logits' Ref) or "opaque" (a colour-dependent value nothing
    bounds; "+": known positive); anything else on such values is refused."""
    name = eqn.primitive.name
    shape = tuple(eqn.outvars[0].aval.shape)
    ordered = [r for r in ins if r.abs.kind.startswith("order")]
    logits = [r for r in ins if r.abs.kind in FORMS and r.abs.shape == walk.out_shape]
    sources = ordered + logits
    if shape == walk.out_shape and len(sources) == 1:
        source = sources[0]
        others = [r for r in ins if r is not source]
        keeps = name in ORDER_KEEPING or name in ("add", "mul")
        keeps |= name in ("sub", "div") and ins[0] is source
        if keeps and all(_per_row(walk, r, name) for r in others):
            z = source.val if source in ordered else source
            kind = "order+" if _positive(name, ins) else "order"
            return Ref(keys[0], _out_abs(eqn, kind), z)
    # A sum or maximum over the classes is one colour-dependent value per row (softmax's
    # normaliser and its stabilising shift), also where a global mean's division by the
    # map's area already made the logits "order".
    reduces_classes = name in ("reduce_sum", "reduce_max") and tuple(eqn.params["axes"]) == (
        len(shape),
    )
    if ordered and not reduces_classes:
        raise ValueError(
            f"rpx.certify cannot bound {name!r} after the softmax-like head of predict (it "
            "follows logits through per-row shifts, positive per-row scales and exp)"
        )
    return Ref(keys[0], _out_abs(eqn, "opaque+" if _positive(name, ins) else "opaque"))


def _positive(name: str, ins: list[Ref]) -> bool:
    """Whether an op's output is known positive (in exact arithmetic)."""
    if name in POSITIVE_OUT:
        return True
    if name not in POSITIVE_KEEPING:
        return False
    for r in ins:
        if r.abs.kind == "const":
            if r.val is None or not bool(np.all(np.asarray(r.val) > 0)):
                return False
        elif not r.abs.kind.endswith("+"):
            return False
    return True


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
