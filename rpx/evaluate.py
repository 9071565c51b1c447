"""The one evaluator: apply candidates to their images and classify them, in chunks.

`rpx.slots` (the attack's populations), `rpx.pixel_map` (the exhaustive scan) and
`rpx.one_pixel_probs` all score candidates here. An `Evaluator` holds the static facts
(the classifier, whether it takes weights, the chunk size, and the `rpx.incremental`
plan when one-pixel candidates are scored from cached clean activations); `choose`
decides between the full pass and the incremental one, once per call, and
`cache_group` how many images' clean activations are held at once; `chunk_size`,
`over_chunks` and `classify_in_chunks` run a dynamic or static number of candidates
through the classifier in fixed-size chunks; `score_and_hit`, `rank` and `value` say
what makes one candidate better than another.

    evaluator = Evaluator(predict, chunk, with_params, choose(predict, (H, W, C), "auto"))
    cache = evaluator.cache(pixels, params)         # None for the full pass
    # images in groups of cache_group(N, plan) whose caches fit: by_groups(N, group, run)
    probs = evaluator.probs(params, pixels, cache, image, flat, colors, changed)   # [B, K]
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rpx import encoding, incremental

EVALUATIONS = ("auto", "full", "incremental")

# Clean activations held at once: images are processed in groups whose caches fit.
CACHE_BUDGET_BYTES = 1 << 28


# Candidates in fixed-size chunks. A fused program evaluates a dynamic number of
# candidates (only live images, only region pixels) with static shapes: full chunks of
# `chunk` candidates, then chunks of `tail` for the remainder, so padding wastes fewer
# than `tail` evaluations.


def chunk_size(requested: int | None, image_shape, total: int) -> int:
    """Candidates per classifier call: `requested`, else a backend default, at most `total`.

    On CPU a small CNN runs fastest at batches of 128-256 (benchmarks/README.md);
    accelerators want large batches, capped so the candidate images stay near 1 GiB.
    """
    if requested is not None:
        size = requested
    elif jax.default_backend() == "cpu":
        size = 256
    else:
        size = max(64, min(8192, (1 << 30) // (4 * math.prod(image_shape[1:]))))
    return max(1, min(size, total))


def tail(chunk: int) -> int:
    """The size of the small chunks that cover the remainder after the full ones."""
    return max(1, chunk // 8)


def padded_rows(total: int, chunk: int) -> int:
    """Rows an output needs for `total` (static) candidates: the last tail may overrun."""
    return -(-total // chunk) * chunk + tail(chunk)


def over_chunks(total, chunk: int, body, out):
    """Apply `body(size)(at, out) -> out` to [at, at + size) for every chunk of the
    `total` (traced) candidates: full chunks of `chunk`, then chunks of `tail(chunk)`."""
    small = tail(chunk)
    full = total // chunk
    out = jax.lax.fori_loop(0, full, lambda i, o: body(chunk)(i * chunk, o), out)
    rest = -(-(total - full * chunk) // small)
    return jax.lax.fori_loop(0, rest, lambda i, o: body(small)(full * chunk + i * small, o), out)


def classify_in_chunks(classify_fn, pixels, chunk: int):
    """classify_fn(x) [S, K] float32 of pixels [S, H, W, C] in chunks of at most `chunk`."""
    s = pixels.shape[0]
    chunk = min(chunk, s)
    padded = -(-s // chunk) * chunk
    batches = jnp.pad(pixels, ((0, padded - s), (0, 0), (0, 0), (0, 0)))
    batches = batches.reshape(padded // chunk, chunk, *pixels.shape[1:])
    probs = jax.lax.map(lambda x: classify_fn(x).astype(jnp.float32), batches)
    return probs.reshape(padded, -1)[:s]


def choose(predict, image_shape, evaluation: str, params=None, slots: int | None = None):
    """The `rpx.incremental.Plan` one-pixel candidates are scored with, or None for the
    full pass.

    "full": None. "incremental": the plan (ops the analysis cannot follow run in full);
    NotImplementedError naming the cause if its program cannot be built. "auto": the
    plan where it predicts a saving, else None, and None whenever the analysis or the
    incremental program fails to build (trace or lower: e.g. a `jax.pure_callback`
    that cannot be vmapped), so an exotic model still runs in full. `slots`: images
    whose caches are held at once (the attack's slots); "auto" takes the full pass when
    they exceed CACHE_BUDGET_BYTES together (callers that group images pass None).
    params: the weights predict takes first, or None (only their shapes are used).
    """
    plan = incremental.choose(predict, tuple(image_shape), evaluation, params)
    if plan is None:
        return None
    auto = evaluation == "auto"
    if auto and slots is not None and slots * plan.cache_bytes > CACHE_BUDGET_BYTES:
        return None
    error = _build_error(plan, _spec(params))
    if error is None:
        return plan
    if auto:
        return None
    raise NotImplementedError(
        "evaluation='incremental' cannot build the incremental program for this predict "
        f"({type(error).__name__}: {error}); use evaluation='full' or 'auto'"
    ) from error


def cache_group(n: int, plan, *, even: bool = True) -> int:
    """Images per group (>= 1) so that a group's clean activations (`plan.cache_bytes`
    each) fit CACHE_BUDGET_BYTES; all n at once without a plan. even: the fewest groups
    that fit, as even as possible; else as many images as fit, the rest in the last."""
    most = max(1, n if plan is None else min(n, CACHE_BUDGET_BYTES // max(1, plan.cache_bytes)))
    groups = -(-n // most)
    return -(-n // groups) if even and groups else most


def by_groups(n: int, group: int, run):
    """run(take int [group], live bool [group]) on n images in consecutive groups of
    `group` (the last padded with image n - 1, not live, so every group reuses one
    compiled program), each result pytree's rows trimmed to the group's images and
    concatenated: n rows."""
    parts = []
    for start in range(0, n, group):
        at = np.arange(start, start + group)
        part = run(np.minimum(at, n - 1), at < n)
        keep = min(group, n - start)
        parts.append(jax.tree.map(lambda a, keep=keep: a[:keep], part))
    return jax.tree.map(lambda *a: jnp.concatenate(a), *parts) if len(parts) > 1 else parts[0]


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """Static facts of an evaluation (hashable: part of jit cache keys).

    predict: float32 [B, H, W, C] -> probabilities [B, K], called as predict(params, x)
    when with_params. chunk: candidates per classifier call. plan: the
    `rpx.incremental` plan one-pixel candidates are scored with, else None (full pass).
    """

    predict: Callable
    chunk: int
    with_params: bool = False
    plan: incremental.Plan | None = None

    def classify(self, params, x):
        """predict's probabilities for images x [B, H, W, C] float32."""
        return self.predict(params, x) if self.with_params else self.predict(x)

    def cache(self, pixels, params=None):
        """The clean activations of pixels [N, H, W, C] float32 (None for the full pass)."""
        return None if self.plan is None else incremental.clean_cache(self.plan, pixels, params)

    def probs(self, params, pixels, cache, image, flat, colors, changed):
        """float32 [B, K] of B candidates: image int [B] into pixels [N, H, W, C] float32
        (and `cache`, its clean activations), their pixels flat int [B, k] set to colors
        [B, k, C] where changed bool [B, k]. With a plan (k = 1) only the changed pixel's
        receptive field is recomputed."""
        if self.plan is None:
            candidates = jax.vmap(encoding.apply)(pixels[image], flat, colors, changed)
            return self.classify(params, candidates).astype(jnp.float32)
        # An unchanged pixel ("restore", outside the region) keeps its own value.
        n, _, w, c = pixels.shape
        own = pixels.reshape(n, -1, c)[image, flat[:, 0]]
        color = jnp.where(changed, colors[:, 0], own)
        positions = jnp.stack([flat[:, 0] // w, flat[:, 0] % w], axis=-1)
        return incremental.window_probs(self.plan, cache, image, positions, color, params)


def _spec(params):
    """A hashable description of params' structure, shapes and dtypes (None: no params)."""
    if params is None:
        return None
    leaves, tree = jax.tree.flatten(params)
    return tree, tuple((tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves)


@functools.lru_cache(maxsize=16)
def _build_error(plan, spec):
    """None if the incremental evaluation of `plan` traces and lowers (two candidates of
    two images), else the exception it raised."""
    h, w, c = plan.image_shape
    params = None
    if spec is not None:
        tree, leaves = spec
        params = jax.tree.unflatten(tree, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])

    def probe(params, images):  # the building blocks themselves, whatever wraps them
        cache = incremental.plan.clean_cache(plan, images, params)
        index, positions = jnp.arange(2), jnp.zeros((2, 2), jnp.int32)
        colors = images[:, 0, 0]
        return incremental.plan.window_probs(plan, cache, index, positions, colors, params)

    try:
        jax.jit(probe).lower(params, jax.ShapeDtypeStruct((2, h, w, c), jnp.float32))
    except Exception as error:  # whatever fails to build means: run in full
        return error
    return None


# What makes one candidate better than another: the fitness, success, and their order.
#
# Untargeted attacks drive p[label] down and succeed when argmax != label; targeted ones
# drive p[target] up and succeed when argmax == target. Scores are minimised: p[label],
# or -p[target]. A success always beats a failure, then the lower score wins. A candidate
# whose probabilities are not all finite is neither a success nor comparable (score inf):
# argmax of a NaN row is 0, which would pass for a success.


def score_and_hit(probs, label, goal, targeted: bool):
    """(score float32 [...], hit bool [...]) of probs [..., K] against int label and goal
    [...] (goal: the target when targeted, else the label); score inf where non-finite."""
    p_goal = jnp.take_along_axis(probs, goal[..., None], axis=-1)[..., 0]
    predicted = jnp.argmax(probs, axis=-1)
    if targeted:
        score, hit = -p_goal, predicted == goal
    else:
        score, hit = p_goal, predicted != label
    finite = jnp.isfinite(probs).all(-1)
    return jnp.where(finite, score, jnp.inf), hit & finite


def rank(score, hit) -> jax.Array:
    """A key to minimise: successes first (scores lie in [-1, 1]), then the lower score."""
    return jnp.where(hit, score - 4.0, score)


def value(score, targeted: bool) -> jax.Array:
    """The reported fitness of a score: p[label], or p[target] when targeted; NaN for inf."""
    return jnp.where(jnp.isinf(score), jnp.nan, -score if targeted else score)
