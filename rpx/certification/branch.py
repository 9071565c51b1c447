"""Branch and bound over each pixel's colour box, and the witness search, for one image.

Every region pixel starts with its whole colour box. Its 2**C corners and centre are
tried first (the corner scan's colours). Then, round after round, every open box gets
one bound pass (`bounds.margins`): proved boxes close; the others have their weakest
point and centre tried, and are split in two across their widest side. Integer colour
sets end in boxes of a few colours, tried one by one, so with budget enough every pixel
is decided; a pixel whose boxes outrun the budget (bound passes per pixel) is undecided.
Undecided pixels then get a gradient search over their C colour values from several
starts. A pixel is fooled only once predict's full forward pass confirms its witness.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rpx import evaluate
from rpx.certification import bounds

# Probability margins below this are re-checked with predict's full forward pass.
BORDERLINE = 1e-4
# Float colour boxes are not split below this share of the value range.
MIN_FLOAT_SHARE = 1e-3
# Back-substitution (CROWN, several times the forward bound's cost) is tried only on boxes
# whose forward lower margin is above -CROWN_REACH * (1 + the clean image's largest
# |margin|). On the trained CIFAR nets CROWN tightened the forward margin about 2-5x and
# proved no box whose forward margin was below -21 (clean margins about 5-20), while
# whole-cube boxes sit at -1e4 to -1e6: the rule skips them and keeps every box CROWN
# proved there. Skipping only leaves a box open (it is split or undecided): never unsound.
CROWN_REACH = 64.0


@dataclasses.dataclass(frozen=True, eq=False)
class Context:
    """Static facts of one certify call (hashed by identity)."""

    predict: Callable
    params: object
    bplan: bounds.BoundPlan
    targeted: bool
    integer: bool
    dtype: object
    value_range: tuple[float, float]
    radius: float | None
    max_boxes: int
    chunk_size: int
    enumerate_below: int
    search_starts: int
    search_steps: int
    evaluation: str


@dataclasses.dataclass
class Outcome:
    """One image's answer: per region pixel (in the order given) its state and witness."""

    fooled: np.ndarray  # bool [P]
    safe: np.ndarray  # bool [P]
    witness: np.ndarray  # float32 [P, C], NaN where not fooled
    bound_passes: np.ndarray  # int [P]
    evaluations: int


def certify_image(ctx: Context, image, label: int, goal: int, pixels: np.ndarray) -> Outcome:
    """Decide every pixel (int [P, 2], (row, col)) of one image [H, W, C] (host array)."""
    c = image.shape[-1]
    p = len(pixels)
    lo, hi = ctx.value_range
    state = _State(ctx, image, label, goal, pixels)
    if p == 0:
        return state.outcome()
    first_lo, first_hi = state.box_lo, state.box_hi
    corner = np.array(list(itertools.product((0, 1), repeat=c)), bool)
    tries = np.where(corner[None], first_hi[:, None], first_lo[:, None])  # [P, 2**C, C]
    centre = _colours(ctx, (first_lo + first_hi) / 2)[:, None]
    tries = np.concatenate([tries, centre], 1)
    state.try_colours(np.repeat(np.arange(p), tries.shape[1]), tries.reshape(-1, c))

    owner = np.flatnonzero(~state.fooled)
    box_lo, box_hi = first_lo[owner], first_hi[owner]
    while len(owner):
        keep = ~state.fooled[owner] & ~state.undecided[owner]
        owner, box_lo, box_hi = owner[keep], box_lo[keep], box_hi[keep]
        if ctx.integer:
            small = np.prod(box_hi - box_lo + 1, axis=1) <= ctx.enumerate_below
            if small.any():
                state.enumerate(owner[small], box_lo[small], box_hi[small])
            owner, box_lo, box_hi = owner[~small], box_lo[~small], box_hi[~small]
        if not len(owner):
            break
        proved, worst = state.bound(owner, box_lo, box_hi)
        open_ = ~proved
        owner, box_lo, box_hi, worst = owner[open_], box_lo[open_], box_hi[open_], worst[open_]
        mid = _colours(ctx, (box_lo + box_hi) / 2)
        state.try_colours(
            np.concatenate([owner, owner]), np.concatenate([_colours(ctx, worst), mid])
        )
        alive = ~state.fooled[owner]
        owner, box_lo, box_hi = owner[alive], box_lo[alive], box_hi[alive]
        spent = state.passes[owner] >= ctx.max_boxes
        if not ctx.integer:
            spent |= (box_hi - box_lo).max(1) <= MIN_FLOAT_SHARE * (hi - lo)
        state.undecided[owner[spent]] = True
        owner, box_lo, box_hi = _split(ctx, owner[~spent], box_lo[~spent], box_hi[~spent])
    if ctx.search_starts and ctx.search_steps and state.undecided.any():
        state.search(np.flatnonzero(state.undecided))
    state.confirm()
    return state.outcome()


def _colours(ctx: Context, colours) -> np.ndarray:
    """Colours the images can hold: whole numbers for integer images, in value_range."""
    lo, hi = ctx.value_range
    colours = np.clip(np.asarray(colours, np.float64), lo, hi)
    return np.round(colours) if ctx.integer else colours


def _split(ctx: Context, owner, box_lo, box_hi):
    """Each box cut in two across its widest side (integer boxes between whole numbers)."""
    if not len(owner):
        return owner, box_lo, box_hi
    side = np.argmax(box_hi - box_lo, axis=1)
    rows = np.arange(len(owner))
    a, b = box_lo[rows, side], box_hi[rows, side]
    cut = np.floor((a + b) / 2) if ctx.integer else (a + b) / 2
    first_hi, second_lo = box_hi.copy(), box_lo.copy()
    first_hi[rows, side] = cut
    second_lo[rows, side] = cut + 1 if ctx.integer else cut
    return (
        np.concatenate([owner, owner]),
        np.concatenate([box_lo, second_lo]),
        np.concatenate([first_hi, box_hi]),
    )


class _State:
    """The per-pixel bookkeeping of one image's branch and bound."""

    def __init__(self, ctx, image, label, goal, pixels):
        self.ctx, self.image, self.label, self.goal = ctx, image, label, goal
        self.pixels = np.asarray(pixels, np.int32).reshape(-1, 2)
        p, c = len(self.pixels), image.shape[-1]
        self.fooled = np.zeros(p, bool)
        self.undecided = np.zeros(p, bool)
        self.witness = np.full((p, c), np.nan, np.float32)
        self.passes = np.zeros(p, np.int64)
        self.evaluations = 0
        self._cache = None
        self._scorer = None
        self._reach = None
        # Each pixel's colour box: the whole cube, or the clean colour +- radius in it.
        lo, hi = ctx.value_range
        self.box_lo, self.box_hi = np.full((p, c), lo), np.full((p, c), hi)
        if ctx.radius is not None:
            clean = image[tuple(self.pixels.T)].astype(np.float64)
            self.box_lo = np.maximum(lo, clean - ctx.radius)
            self.box_hi = np.minimum(hi, clean + ctx.radius)
            if ctx.integer:
                self.box_lo, self.box_hi = np.ceil(self.box_lo), np.floor(self.box_hi)

    def scorer(self):
        """(Evaluator, clean cache) scoring this image's candidates, made once."""
        if self._scorer is None:
            ctx = self.ctx
            plan = evaluate.choose(ctx.predict, self.image.shape, ctx.evaluation, ctx.params)
            evaluator = evaluate.Evaluator(
                ctx.predict, ctx.chunk_size, ctx.params is not None, plan
            )
            pixels = jnp.asarray(self.image[None], jnp.float32)
            self._scorer = evaluator, evaluator.cache(pixels, ctx.params)
        return self._scorer

    def outcome(self) -> Outcome:
        safe = ~self.fooled & ~self.undecided
        return Outcome(self.fooled, safe, self.witness, self.passes, self.evaluations)

    def try_colours(self, owner, colours) -> None:
        """Evaluate (pixel, colour) candidates; the first success per pixel is its witness."""
        open_ = ~self.fooled[owner]
        owner, colours = owner[open_], colours[open_]
        if not len(owner):
            return
        hit = _hits(self.ctx, self.scorer(), self.image, self.label, self.goal,
                    self.pixels[owner], colours)  # fmt: skip
        self.evaluations += len(owner)
        first = np.unique(owner[hit], return_index=True)
        for pixel, at in zip(*first, strict=True):
            self.fooled[pixel] = True
            self.witness[pixel] = colours[hit][at]

    def enumerate(self, owner, box_lo, box_hi) -> None:
        """Try every colour of small integer boxes."""
        owners, colours = [], []
        for o, a, b in zip(owner, box_lo, box_hi, strict=True):
            grid = np.stack(np.meshgrid(*[np.arange(x, y + 1) for x, y in zip(a, b, strict=True)],
                                        indexing="ij"), -1).reshape(-1, len(a))  # fmt: skip
            owners.append(np.full(len(grid), o))
            colours.append(grid)
        self.try_colours(np.concatenate(owners), np.concatenate(colours).astype(np.float64))

    def bound(self, owner, box_lo, box_hi):
        """(proved bool [Q], worst colour [Q, C]) of Q boxes, one bound pass each."""
        ctx = self.ctx
        if self._cache is None:
            x = jnp.asarray(self.image[None], jnp.float32)
            self._cache = bounds.clean_cache(ctx.bplan, x, ctx.params)
        mid, rad = (box_lo + box_hi) / 2, (box_hi - box_lo) / 2
        # The forward bounds first; back-substitution only for the boxes they leave open
        # within CROWN_REACH of a proof.
        lower, worst, proved = self._margins(False, owner, mid, rad)
        best = lower.max(1) if ctx.targeted else lower.min(1)
        again = np.flatnonzero(~proved & (best > -self.reach()))
        if len(again):
            _, w, ok = self._margins(True, owner[again], mid[again], rad[again])
            proved[again], worst[again] = ok, w
        np.add.at(self.passes, owner, 1)
        return proved, worst

    def reach(self) -> float:
        """CROWN_REACH * (1 + the largest |margin| of the clean image), computed once."""
        if self._reach is None:
            first = self.pixels[:1]
            clean = self.image[tuple(first.T)].astype(np.float64)
            lower, _, _ = self._margins(False, np.zeros(1, int), clean, np.zeros_like(clean))
            finite = np.abs(lower[np.isfinite(lower)])
            self._reach = CROWN_REACH * (1.0 + (finite.max() if finite.size else 0.0))
        return self._reach

    def _margins(self, use_crown, owner, mid, rad):
        """(lower [Q, K], worst [Q, C], proved [Q]) of boxes mid +- rad at owner's pixels."""
        ctx = self.ctx
        run = bounds.program(ctx.bplan, ctx.targeted, ctx.params is not None, use_crown)
        q = len(owner)
        lower = np.zeros((q, ctx.bplan.num_classes))
        proved, worst = np.zeros(q, bool), np.zeros((q, mid.shape[1]))
        size = min(ctx.chunk_size, _bucket(q))
        for start in range(0, q, size):
            take = np.minimum(np.arange(start, start + size), q - 1)
            goal = np.full(size, self.goal, np.int32)
            low, w, ok = run(self._cache, self.pixels[owner[take]], mid[take], rad[take], goal,
                             ctx.params)  # fmt: skip
            stop = min(size, q - start)
            lower[start : start + stop] = np.asarray(low)[:stop]
            proved[start : start + stop] = np.asarray(ok)[:stop]
            worst[start : start + stop] = np.asarray(w)[:stop]
        return lower, worst, proved

    def search(self, owner) -> None:
        """Gradient search over the colour of each pixel in owner, from several starts."""
        ctx = self.ctx
        lo, hi = self.box_lo[owner], self.box_hi[owner]
        rng = np.random.default_rng(int(self.goal) * 7919 + len(owner))
        starts = [self.image[tuple(self.pixels[owner].T)].astype(np.float64)]
        starts += [rng.uniform(lo, hi) for _ in range(ctx.search_starts - 1)]
        owners = np.concatenate([owner] * len(starts))
        box = self.box_lo[owners], self.box_hi[owners]
        colours = _descend(ctx, self.scorer(), self.image, self.label, self.goal,
                           self.pixels[owners], np.concatenate(starts), *box)  # fmt: skip
        self.evaluations += len(owners) * ctx.search_steps
        colours = np.clip(_colours(ctx, colours), *box)
        self.try_colours(owners, colours)
        self.undecided[self.fooled] = False

    def confirm(self) -> None:
        """Keep only witnesses that predict's full forward pass confirms."""
        owner = np.flatnonzero(self.fooled)
        if not len(owner):
            return
        ok = _hits(self.ctx, None, self.image, self.label, self.goal, self.pixels[owner],
                   self.witness[owner].astype(np.float64), full=True)  # fmt: skip
        lost = owner[~ok]
        self.fooled[lost] = False
        self.undecided[lost] = True  # a colour was near the boundary: neither proved
        self.witness[lost] = np.nan


def _bucket(n: int) -> int:
    """n rounded up to a power of two (at least 64): few distinct compiled shapes."""
    return max(64, 1 << (max(1, n) - 1).bit_length())


def _hits(ctx, scorer, image, label, goal, positions, colours, full=False) -> np.ndarray:
    """bool [M]: whether each one-pixel change succeeds, by predict's verdict.

    Candidates are scored by `scorer` (the image's (Evaluator, clean cache): incremental
    where it pays); successes and near-ties are re-scored by predict's full forward pass
    on the changed images, whose verdict stands."""
    if not full:
        probs = _probs(*scorer, ctx.params, image, positions, colours)
    else:
        probs = _full_probs(ctx, image, positions, colours)
    hit, near = _verdict(probs, label, goal, ctx.targeted)
    if not full and (hit | near).any():
        again = np.flatnonzero(hit | near)
        probs_again = _full_probs(ctx, image, positions[again], colours[again])
        hit[again] = _verdict(probs_again, label, goal, ctx.targeted)[0]
    return hit


def _verdict(probs, label, goal, targeted):
    """(success, near a tie) of probability rows [M, K]."""
    probs = np.asarray(probs, np.float64)
    finite = np.isfinite(probs).all(1)
    predicted = probs.argmax(1)
    hit = (predicted == goal) if targeted else (predicted != label)
    others = probs.copy()
    others[:, goal] = -np.inf
    gap = np.abs(probs[:, goal] - others.max(1))
    return hit & finite, (gap < BORDERLINE) | ~finite


def _full_probs(ctx, image, positions, colours) -> np.ndarray:
    """predict's probabilities [M, K] on the image with each one pixel changed."""
    evaluator = evaluate.Evaluator(ctx.predict, 64, ctx.params is not None)
    return _probs(evaluator, None, ctx.params, image, positions, colours)


def _probs(evaluator, cache, params, image, positions, colours) -> np.ndarray:
    """Probabilities [M, K] of image [H, W, C] with pixel positions[m] set to colours[m],
    scored by `evaluator` (with `cache`, the image's clean activations, or None), in
    chunks of evaluator.chunk (the last padded with repeats: one compiled shape)."""
    pixels = jnp.asarray(image[None], jnp.float32)
    m = len(positions)
    out = []
    for start in range(0, m, evaluator.chunk):
        take = np.minimum(np.arange(start, start + evaluator.chunk), m - 1)
        flat = positions[take, 0] * image.shape[1] + positions[take, 1]
        probs = _score(evaluator, params, pixels, cache, flat, colours[take])
        out.append(np.asarray(probs)[: m - start])
    return np.concatenate(out)[:m]


@functools.partial(jax.jit, static_argnums=0)
def _score(evaluator, params, pixels, cache, flat, colours):
    """Probabilities [B, K] of pixels[0] with pixel flat[b] set to colours[b] [B, C]."""
    b = flat.shape[0]
    one = jnp.ones((b, 1), bool)
    index = jnp.zeros(b, jnp.int32)
    colours = jnp.asarray(colours, jnp.float32)[:, None]
    return evaluator.probs(params, pixels, cache, index, flat[:, None], colours, one)


def _descend(ctx, scorer, image, label, goal, positions, starts, box_lo, box_hi) -> np.ndarray:
    """The best colour [M, C] along a signed-gradient descent of the attack's log-margin
    from each start, inside each candidate's box [box_lo, box_hi] (float colours; the
    caller rounds them for integer images), scored by `scorer` (the image's
    (Evaluator, clean cache): incremental where that pays)."""
    m = len(positions)
    size = min(ctx.chunk_size, _bucket(m))
    evaluator, cache = scorer
    pixels = jnp.asarray(image[None], jnp.float32)
    run = _descent_program(evaluator, ctx.targeted, ctx.search_steps)
    out = []
    for start in range(0, m, size):
        take = np.minimum(np.arange(start, start + size), m - 1)
        flat = jnp.asarray(positions[take, 0] * image.shape[1] + positions[take, 1], jnp.int32)
        box = (jnp.asarray(a[take], jnp.float32) for a in (starts, box_lo, box_hi))
        got = run(pixels, cache, flat, *box, label, goal, ctx.params)
        out.append(np.asarray(got)[: m - start])
    return np.concatenate(out)


@functools.lru_cache(maxsize=16)
def _descent_program(evaluator, targeted, steps):
    def loss(colour, pixels, cache, flat, goal, params):
        probs = _score(evaluator, params, pixels, cache, flat[None], colour[None])[0]
        logp = jnp.log(jnp.maximum(probs, 1e-30))
        others = jnp.where(jnp.arange(logp.shape[0]) == goal, -jnp.inf, logp).max()
        return others - logp[goal] if targeted else logp[goal] - others

    grad = jax.vmap(jax.value_and_grad(loss), in_axes=(0, None, None, 0, None, None))

    def run(pixels, cache, flat, colours, lo, hi, label, goal, params):
        def body(t, carry):
            colour, best, best_loss = carry
            value, g = grad(colour, pixels, cache, flat, goal, params)
            better = value < best_loss
            best = jnp.where(better[:, None], colour, best)
            best_loss = jnp.where(better, value, best_loss)
            step = (hi - lo) * (0.25 * (1 - t / steps) + 1 / 64)
            colour = jnp.clip(colour - step * jnp.sign(g), lo, hi)
            return colour, best, best_loss

        init = (colours, colours, jnp.full(colours.shape[0], jnp.inf))
        colour, best, best_loss = jax.lax.fori_loop(0, steps, body, init)
        value, _ = grad(colour, pixels, cache, flat, goal, params)
        return jnp.where((value < best_loss)[:, None], colour, best)

    return jax.jit(run)
