"""Bounds on the decision of a classifier over one pixel's colour box.

    bplan = analyse(predict, (H, W, C))                  # static, cached
    cache = clean_cache(bplan, images)                   # per image, as rpx.incremental
    lower, worst = margins(bplan, cache, n, pos, mid, rad, goal, targeted)   # [B, K], [B, C]

For a box `mid +- rad` of colours at pixel `pos` of image n, `lower[b, j]` bounds from
below, over every colour of the box, the margin that keeps the attack from succeeding
through class j: z_goal - z_j untargeted (goal = label), z_j - z_goal targeted (goal =
target), z the logits. The box is proved safe when every margin (untargeted) or some
margin (targeted) exceeds `proof_margin`. `worst` is the colour of the box at which the
weakest margin's lower form is least: the first colour to try as a witness.

Each margin's bound is the better of two sound ones: the forward forms' (`rules`), and
back-substitution's (`crown`, `use_crown=True`), which carries the margin's weights back
through predict's ops with every nonlinear step relaxed on the forward forms' bounds.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from rpx import incremental
from rpx.certification import crown, forms, layout, rules
from rpx.incremental import interpreter
from rpx.incremental.plan import _refs

# A margin proves a box safe only above PROOF_RTOL * (1 + the largest |logit| bound):
# this covers the float32 rounding of both the bounds and predict's own forward pass
# (orders of magnitude above it for nets of this size), and the softmax's rounding.
PROOF_RTOL = 1e-3


@dataclasses.dataclass(frozen=True, eq=False)
class BoundPlan:
    """What `analyse` found: the walk's clean activations (`plan.entries`, as an
    `rpx.incremental.Plan` so `incremental.clean_cache` fills them) and the ops the
    bounds follow. Static: hashed by identity."""

    plan: incremental.Plan
    steps: tuple[tuple[str, str], ...]
    flops: float

    @property
    def num_classes(self) -> int:
        return self.plan.num_classes


def analyse(predict, image_shape, params=None) -> BoundPlan:
    """Trace `predict` on one image and plan the bound walk; ValueError naming the first
    op (primitive) whose bounds it cannot follow."""
    base = incremental.analyse(predict, image_shape, params)
    return _analyse(base)


@functools.lru_cache(maxsize=8)
def _analyse(base: incremental.Plan) -> BoundPlan:
    if base.num_classes < 2:
        raise ValueError(f"predict must give at least 2 classes to certify, got {base.num_classes}")
    c = base.image_shape[2]
    walk = layout.BoundWalk({}, c + 1, (1, base.num_classes))
    leaves = [None] * (len(base.jaxpr.jaxpr.invars) - 1)
    refs = _refs(base.jaxpr, leaves, None)
    (out,) = interpreter.run(walk, base.jaxpr.jaxpr, refs, (), rules.apply)
    _logits(walk, out)
    walk.need(refs[-1], 0, {})  # the clean image, for back-substitution
    plan = dataclasses.replace(base, entries=dict(walk.entries), steps=tuple(walk.steps))
    return BoundPlan(plan, tuple(walk.steps), walk.flops)


def _logits(walk, out):
    """The Ref whose forms order the classes as predict's output does."""
    if out.abs.kind.startswith("order"):
        out = out.val
    if out.abs.kind not in layout.FORMS:
        raise ValueError(
            "rpx.certify cannot bound predict's output: it is "
            + ("independent of the image" if out.abs.kind == "const" else "not followed by bounds")
        )
    return layout.full_forms(walk, out)


def clean_cache(bplan: BoundPlan, images, params=None) -> tuple:
    """The clean activations the bound walk reads, [N, ...] each (see analyse)."""
    return incremental.clean_cache(bplan.plan, images, params)


def margins(
    bplan: BoundPlan, cache, image_index, positions, mid, rad, goal, targeted, params=None,
    use_crown=True,
):  # fmt: skip
    """Lower bounds of the margins over B colour boxes (traceable; vmapped over boxes).

    Args:
      image_index: int [B]; positions: int [B, 2] (row, col); mid, rad: float32 [B, C],
        the box mid +- rad (rad >= 0); goal: int [B], label (untargeted) or target;
      targeted: static bool.

    Returns:
      (lower float32 [B, K], worst float32 [B, C], proved bool [B]): lower[b, goal] is
      +inf untargeted, -inf targeted, so min / max over classes skip it.
    """
    plan = bplan.plan
    leaves = incremental.plan._param_leaves(plan, params)
    cache = dict(zip(plan.entries, cache, strict=True))
    c = plan.image_shape[2]
    p = c + 1

    def one(n, position, m, r, g):
        walk = layout.BoundWalk(plan.entries, p, (1, plan.num_classes), cache, n, position)
        eye = jnp.eye(c, dtype=jnp.float32) * r[None, :]
        slices = jnp.concatenate([eye, m[None, :]], 0).reshape(p, 1, 1, 1, c)
        x = jnp.stack([slices, slices])
        refs = _refs(plan.jaxpr, leaves, x)
        (out,) = interpreter.run(walk, plan.jaxpr.jaxpr, refs, (), rules.apply)
        logits = _logits(walk, out)
        sign = -1.0 if targeted else 1.0
        z = logits.val.reshape(2, p, plan.num_classes)
        if logits.key in walk.dense:
            # Through the last dense layer: the margin's weights w_goal - w_j before the
            # bound, so the weights shared by both classes cancel.
            v, weights, bias = walk.dense[logits.key]
            sign = -1.0 if targeted else 1.0
            spec = sign * (weights[:, g][:, None] - weights)
            offset = sign * (bias[g] - bias)
            v = v.val.reshape(2, p, -1)
            margin = forms.signed_linear(jnp.matmul, spec, v)[0]
            margin = margin.at[-1].add(offset)
        elif targeted:
            margin = z[0] - z[1][:, g][:, None]  # z_j - z_goal, from below
        else:
            margin = z[0][:, g][:, None] - z[1]  # z_goal - z_j, from below
        lower = margin[-1] - jnp.abs(margin[:-1]).sum(0)
        worst = m[None] - r[None] * jnp.sign(margin[:-1].T)  # [K, C]
        if use_crown:
            # Back-substitution's bounds where they are better (both are sound).
            eye = jnp.eye(plan.num_classes, dtype=jnp.float32)
            specs = sign * (eye[g][None] - eye)
            image = walk.read(refs[-1], 0, {}, {})
            consts = list(plan.jaxpr.consts) + list(leaves)
            try:
                back, back_worst = crown.margins(
                    walk.relax, logits.key, plan.jaxpr, consts, image, position, m, r, specs
                )
            except crown.Unavailable:
                back, back_worst = jnp.full_like(lower, -jnp.inf), worst
            better = back > lower
            lower = jnp.where(better, back, lower)
            worst = jnp.where(better[:, None], back_worst, worst)
        skip = jnp.arange(plan.num_classes) == g
        lower = jnp.where(skip, -jnp.inf if targeted else jnp.inf, lower)
        weakest = jnp.argmax(lower) if targeted else jnp.argmin(lower)
        worst = worst[weakest]
        scale = jnp.max(jnp.abs(forms.concrete(z[:, :, None])[0]))
        scale = jnp.maximum(scale, jnp.max(jnp.abs(forms.concrete(z[:, :, None])[1])))
        threshold = PROOF_RTOL * (1.0 + scale)
        best = lower.max() if targeted else lower.min()
        proved = jnp.isfinite(scale) & (best > threshold)
        return lower, worst, proved

    args = [jnp.asarray(a) for a in (image_index, positions, mid, rad, goal)]
    args[0], args[1], args[4] = (a.astype(jnp.int32) for a in (args[0], args[1], args[4]))
    args[2], args[3] = args[2].astype(jnp.float32), args[3].astype(jnp.float32)
    return jax.vmap(one)(*args)


def describe(bplan: BoundPlan) -> str:
    """One line per op the bounds pass, with the decision (window or full)."""
    lines = [f"bound walk: {bplan.flops:.4g} FLOPs per box"]
    return "\n".join(lines + [f"  {name}: {what}" for name, what in bplan.steps])


def program(bplan: BoundPlan, targeted: bool, with_params: bool, use_crown: bool = True):
    """`margins` jitted for one image's cache (tuple of [1, ...]) and B boxes."""
    return _program(bplan, targeted, with_params, use_crown)


@functools.lru_cache(maxsize=16)
def _program(bplan, targeted, with_params, use_crown):
    def run(cache, positions, mid, rad, goal, params):
        index = jnp.zeros(positions.shape[0], jnp.int32)
        return margins(
            bplan, cache, index, positions, mid, rad, goal, targeted,
            params if with_params else None, use_crown,
        )  # fmt: skip

    return jax.jit(run)


__all__ = ["PROOF_RTOL", "BoundPlan", "analyse", "clean_cache", "margins", "program"]
