"""The classifier's head: softmax and log-softmax followed as order-preserving steps.

A value of the output's shape [1, K] is "order" when its classes are in the same order as
the logits it came from (the logits minus a per-row value, then exp, then divided by a
positive per-row sum: softmax and log-softmax), and "opaque" for colour-dependent values
no bound follows (that per-row sum; "+": known positive). argmax is invariant to these
steps, so margins are bounded on the logits. An opaque value may only feed such per-row
steps; anything else is refused.
"""

from __future__ import annotations

import numpy as np

from rpx.certification.layout import FORMS, BoundWalk, output_abs
from rpx.incremental.walk import Ref

HEAD = ("order", "order+", "opaque", "opaque+")
IDENTITY = frozenset("convert_element_type copy copy_p stop_gradient".split())
# Steps of a softmax-like head (see the module docstring): ops whose output is positive,
# ops that keep positive inputs positive, ops that keep the order of classes.
POSITIVE_OUT = frozenset("exp exp2 logistic".split())
POSITIVE_KEEPING = IDENTITY | frozenset(
    "reduce_sum broadcast_in_dim reshape add mul div max".split()
)
# (not tanh or logistic: they saturate, and two saturated classes tie in float32)
ORDER_KEEPING = IDENTITY | frozenset("exp exp2 log log1p reshape broadcast_in_dim".split())


def row_step(walk: BoundWalk, eqn, ins) -> bool:
    """Whether an op on forms of the output's shape starts an order-preserving head."""
    name = eqn.primitive.name
    if eqn.outvars[0].aval.shape != walk.out_shape:
        return False
    if name in ("exp", "exp2", "log", "log1p"):
        return ins[0].abs.kind in FORMS and ins[0].abs.shape == walk.out_shape
    if name in ("sub", "add", "mul", "div") and len(ins) == 2:
        x, y = ins
        # (a constant per-row step is followed exactly by the linear rules instead)
        logits = x.abs.kind in FORMS and x.abs.shape == walk.out_shape
        return logits and y.abs.kind != "const" and _per_row(walk, y, name)
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


def head(walk: BoundWalk, eqn, ins, keys) -> Ref:
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
            return Ref(keys[0], output_abs(eqn, kind), z)
    # A sum or maximum over the classes (softmax's normaliser and its max shift) is one
    # opaque value per row.
    reduces_classes = name in ("reduce_sum", "reduce_max") and tuple(eqn.params["axes"]) == (
        len(shape),
    )
    if ordered and not reduces_classes:
        raise ValueError(
            f"rpx.certify cannot bound {name!r} after the softmax-like head of predict (it "
            "follows logits through per-row shifts, positive per-row scales and exp)"
        )
    return Ref(keys[0], output_abs(eqn, "opaque+" if _positive(name, ins) else "opaque"))


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
