"""The building blocks: analyse a classifier once, cache clean activations per image,
evaluate one-pixel candidates from the cache.

    plan = analyse(predict, (32, 32, 3))        # static; plan.saves_work, plan.flop_ratio
    cache = clean_cache(plan, images)           # pytree, leaves [N, ...]
    probs = window_probs(plan, cache, image_index, positions, colors)   # [B, K]

`clean_cache` and `window_probs` are plain traceable functions: they compose under the
caller's jit, vmap, lax.map and fori_loop.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rpx.incremental import interpreter, windows
from rpx.incremental.walk import Abs, Ref, Walk, materialize

# "auto" takes the incremental path when the analysis predicts at least this FLOP saving:
# below it, gathers and bookkeeping eat the gain.
MIN_FLOP_RATIO = 1.2


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """What `analyse` found: static (hashed by identity, usable as a jit static argument).

    image_shape: (H, W, C); num_classes: K.
    flops_full / flops_incremental: estimated FLOPs per candidate of the full forward
      pass and of the windowed evaluation (gathers and merges included).
    steps: (primitive, decision) per op the window reached, in order: "window", "full",
      "materialize" (window written into the clean map, full from there on), ...
    entries: the clean activations cached per image, in cache order.
    """

    image_shape: tuple[int, int, int]
    num_classes: int
    jaxpr: Any  # ClosedJaxpr of predict on one image: invars are params' leaves, then x
    params_tree: Any  # treedef of params, None when predict takes only x
    entries: dict
    flops_full: float
    flops_incremental: float
    steps: tuple[tuple[str, str], ...]

    @property
    def flop_ratio(self) -> float:
        """Predicted speed-up in FLOPs of the windowed evaluation over the full pass."""
        return self.flops_full / max(self.flops_incremental, 1.0)

    @property
    def saves_work(self) -> bool:
        """Whether the windowed evaluation is predicted to pay off (what "auto" uses)."""
        return self.flop_ratio > MIN_FLOP_RATIO

    @property
    def cache_bytes(self) -> int:
        """Bytes of clean activations `clean_cache` keeps per image."""
        return sum(entry.nbytes for entry in self.entries.values())

    @property
    def windowed_ops(self) -> int:
        """How many ops run on windows instead of full maps."""
        return sum(what != "full" and what != "materialize" for _, what in self.steps)

    def describe(self) -> str:
        """One line per op the changed pixel reaches, with the decision taken."""
        lines = [
            f"FLOPs per candidate: full {self.flops_full:.4g}, incremental "
            f"{self.flops_incremental:.4g} (ratio {self.flop_ratio:.2f}); cache "
            f"{self.cache_bytes / 2**20:.2f} MiB per image in {len(self.entries)} arrays"
        ]
        lines += [f"  {name}: {what}" for name, what in self.steps]
        return "\n".join(lines)


def analyse(predict: Callable, image_shape, params=None) -> Plan:
    """Trace `predict` on one image and plan the windowed evaluation of 1-pixel changes.

    Args:
      predict: float32 [B, H, W, C] -> probabilities [B, K] (or `predict(params, x)` when
        `params` is given); traceable, each row depending only on its own image.
      image_shape: (H, W, C).
      params: None, or a pytree of weights passed to predict (only shapes are used).

    Returns:
      A Plan; analyses are cached per (predict, image_shape, params' shapes). As under
      `jax.jit`, weights closed over by `predict` are read when it is first analysed:
      pass weights that change as `params`.
    """
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W, C) of positive sizes, got {image_shape}")
    if not callable(predict):
        raise ValueError(f"predict must be callable, got {type(predict).__name__}")
    leaves, tree = jax.tree.flatten(params)
    spec = None
    if params is not None:
        spec = (tree, tuple((tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves))
    try:
        return _analyse(predict, shape, spec)
    except TypeError as error:  # an unhashable predict: analyse without the cache
        if "unhashable" not in str(error):
            raise
        return _analyse.__wrapped__(predict, shape, spec)


def choose(predict, image_shape, evaluation: str, params=None) -> Plan | None:
    """The plan an `evaluation` setting uses for one-pixel candidates, or None for the
    full pass: "full" never analyses; "incremental" always uses the plan (exact, ops it
    cannot follow run in full); "auto" uses it where it predicts a saving, and takes the
    full pass if the analysis itself fails (an exotic model must not break an attack
    that runs in full)."""
    if evaluation == "full":
        return None
    if evaluation == "incremental":
        return analyse(predict, image_shape, params)
    try:
        plan = analyse(predict, image_shape, params)
    except Exception:  # any failure of the analysis means: run in full
        return None
    return plan if plan.saves_work else None


@functools.lru_cache(maxsize=8)
def _analyse(predict, shape, spec) -> Plan:
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    if spec is None:
        closed, tree, num_params = jax.make_jaxpr(predict)(x), None, 0
    else:
        tree, leaves = spec
        specs = [jax.ShapeDtypeStruct(s, d) for s, d in leaves]
        closed = jax.make_jaxpr(lambda p, x: predict(jax.tree.unflatten(tree, p), x))(specs, x)
        num_params = len(leaves)
    outs = closed.jaxpr.outvars
    if len(outs) != 1 or len(outs[0].aval.shape) != 2 or outs[0].aval.shape[0] != 1:
        got = [tuple(v.aval.shape) for v in outs]
        raise ValueError(f"predict must map [B, H, W, C] to one array [B, K], got {got}")
    walk = Walk({})
    (out,) = interpreter.run(walk, closed.jaxpr, _refs(closed, [None] * num_params, None))
    if out.abs.kind == "window":
        materialize(walk, out, "output")
    dependent = [False] * (len(closed.consts) + num_params) + [True]
    flops_full, _ = interpreter.jaxpr_flops(closed.jaxpr, dependent)
    return Plan(
        image_shape=shape,
        num_classes=int(outs[0].aval.shape[1]),
        jaxpr=closed,
        params_tree=tree,
        entries=dict(walk.entries),
        flops_full=flops_full,
        flops_incremental=walk.flops,
        steps=tuple(walk.steps),
    )


def _refs(closed, param_vals, x_val) -> list[Ref]:
    """Refs for the jaxpr's constvars, params' leaves and the image."""
    jaxpr = closed.jaxpr
    refs = [
        Ref(None, _const_abs(v), c) for v, c in zip(jaxpr.constvars, closed.consts, strict=True)
    ]
    params = jaxpr.invars[:-1]
    refs += [Ref(None, _const_abs(v), val) for v, val in zip(params, param_vals, strict=True)]
    x = jaxpr.invars[-1]
    _, h, w, _ = x.aval.shape
    axes = (windows.pixel(1, 0, h), windows.pixel(2, 1, w))
    refs.append(Ref(((), x), Abs("window", tuple(x.aval.shape), x.aval.dtype, axes), x_val))
    return refs


def _const_abs(var) -> Abs:
    return Abs("const", tuple(var.aval.shape), var.aval.dtype)


def _param_leaves(plan: Plan, params) -> list:
    if (params is None) != (plan.params_tree is None):
        raise ValueError("params must be given exactly when the plan was analysed with params")
    if params is None:
        return []
    leaves, tree = jax.tree.flatten(params)
    if tree != plan.params_tree:
        raise ValueError(f"params must have the analysed structure {plan.params_tree}, got {tree}")
    return leaves


def clean_cache(plan: Plan, images, params=None) -> tuple:
    """The clean activations a candidate of each image needs.

    Args:
      plan: from `analyse`.
      images: [N, H, W, C], any real dtype (converted to float32 as predict sees it).
      params: the weights, when the plan was analysed with params.

    Returns:
      A tuple of arrays [N, ...], one per `plan.entries` (plan.cache_bytes per image).
    """
    images = jnp.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != plan.image_shape:
        raise ValueError(f"images must be [N, *{plan.image_shape}], got shape {images.shape}")
    return _clean_cache(plan, list(plan.jaxpr.consts), _param_leaves(plan, params), images)


@functools.partial(jax.jit, static_argnums=0)
def _clean_cache(plan: Plan, consts: list, leaves: list, images) -> tuple:
    """clean_cache as one program per plan and shape (op by op, the interpreter under vmap
    dispatched dozens of tiny programs per call)."""
    wanted = {key for key, _ in plan.entries}

    def one(image):
        found: dict = {}
        interpreter.run_clean(plan.jaxpr.jaxpr, consts + leaves + [image[None]], wanted, found)
        return tuple(
            jnp.pad(found[key], entry.pads, constant_values=entry.pad_value)
            for (key, _), entry in plan.entries.items()
        )

    return jax.vmap(one)(images.astype(jnp.float32))


def window_probs(plan: Plan, cache, image_index, positions, colors, params=None) -> jax.Array:
    """Probabilities of B one-pixel candidates, each from its image's cached activations.

    Args:
      plan: from `analyse`; cache: `clean_cache(plan, images)` of N images.
      image_index: int [B], the image of each candidate, in [0, N).
      positions: int [B, 2], (row, col) of the changed pixel, inside the image (neither
        is checked here: out-of-range values are clamped, as by any XLA gather).
      colors: [B, C], the pixel's new value as predict sees it (float32; for uint8
        images cast to uint8 first, as `rpx.encoding.apply` does).
      params: the weights, when the plan was analysed with params.

    Returns:
      float32 [B, K], equal within float tolerance to predict on the changed images.
    """
    leaves = _param_leaves(plan, params)
    cache = dict(zip(plan.entries, cache, strict=True))
    c = plan.image_shape[2]

    def one(n, position, color):
        walk = Walk(plan.entries, cache, n, position)
        x = jnp.asarray(color, jnp.float32).reshape(1, 1, 1, c)
        (out,) = interpreter.run(walk, plan.jaxpr.jaxpr, _refs(plan.jaxpr, leaves, x))
        if out.abs.kind == "window":
            out = materialize(walk, out, "output")
        return jnp.reshape(out.val, (plan.num_classes,))

    image_index = jnp.asarray(image_index, jnp.int32)
    positions = jnp.asarray(positions, jnp.int32)
    probs = jax.vmap(one)(image_index, positions, jnp.asarray(colors))
    return probs.astype(jnp.float32)


__all__ = ["MIN_FLOP_RATIO", "Plan", "analyse", "clean_cache", "window_probs"]
