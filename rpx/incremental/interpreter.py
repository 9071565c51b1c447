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
The rule for each primitive is in `rules`; values and window moves are in `walk`.
"""

from __future__ import annotations

import math

import numpy as np
from jax.extend import core as jcore

from rpx.incremental.rules import POOLS, rule_for
from rpx.incremental.walk import Abs, Ref, Walk, bind, dtype_of, materialize, sub_jaxpr


def run(walk: Walk, jaxpr, refs: list[Ref], path: tuple = (), apply=None) -> list[Ref]:
    """Walk `jaxpr` (constvars then invars bound to `refs`) and return its outputs.

    apply(walk, eqn, ins, keys, path) -> output Refs takes one op; None: the windowed
    evaluation's. Another walk (`rpx.certify`'s bounds) passes its own and inlines calls
    with `inline`."""
    apply = apply or _apply
    env = dict(zip(list(jaxpr.constvars) + list(jaxpr.invars), refs, strict=True))

    def read(v):
        if isinstance(v, jcore.Literal):
            return Ref(None, Abs("const", np.shape(v.val), v.aval.dtype), v.val)
        return env[v]

    for i, eqn in enumerate(jaxpr.eqns):
        ins = [read(v) for v in eqn.invars]
        outs = apply(walk, eqn, ins, [(path, v) for v in eqn.outvars], path + (i,))
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def _apply(walk: Walk, eqn, ins: list[Ref], keys: list, path: tuple) -> list[Ref]:
    kinds = {r.abs.kind for r in ins}
    name = eqn.primitive.name
    if kinds <= {"const"}:
        return const_outs(walk, eqn, ins, keys)
    if "window" in kinds:
        outs = inline(walk, eqn, ins, path, _apply)
        if outs is not None:
            return outs
        rule = rule_for(name)
        outs = rule(walk, eqn, ins, keys) if rule is not None else None
        if outs is not None:
            return outs
        ins = [materialize(walk, r, name) if r.abs.kind == "window" else r for r in ins]
    walk.note(name, "full", eqn_flops(eqn))
    vals = None if walk.analysis else bind(eqn, [r.val for r in ins])
    return _outs(eqn, keys, "full", vals)


def const_outs(walk: Walk, eqn, ins: list[Ref], keys) -> list[Ref]:
    """An op on values that do not depend on the image: evaluated as it is."""
    vals = None if walk.analysis else bind(eqn, [r.val for r in ins])
    return _outs(eqn, keys, "const", vals)


def inline(walk: Walk, eqn, ins: list[Ref], path: tuple, apply) -> list[Ref] | None:
    """The outputs of a call-like op walked through its body, or None for other ops."""
    sub = sub_jaxpr(eqn)
    if sub is None:
        return None
    jaxpr, consts = sub
    const_refs = [Ref(None, Abs("const", np.shape(c), dtype_of(c)), c) for c in consts]
    return run(walk, jaxpr, const_refs + ins, path, apply)


def _outs(eqn, keys, kind, vals) -> list[Ref]:
    if vals is not None and not eqn.primitive.multiple_results:
        vals = [vals]
    refs = []
    for i, (v, key) in enumerate(zip(eqn.outvars, keys, strict=True)):
        refs.append(Ref(key, Abs(kind, tuple(v.aval.shape), v.aval.dtype), vals and vals[i]))
    return refs


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
            outs = bind(eqn, ins)
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
    if name in POOLS or name == "reduce_window":
        return float(out * math.prod(p["window_dimensions"]))
    ins = sum(math.prod(getattr(v.aval, "shape", ())) for v in eqn.invars)
    return float(max(out, ins))
