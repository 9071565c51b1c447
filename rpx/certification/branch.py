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

from rpx import incremental
from rpx.certification import bounds

# Probability margins below this are re-checked with predict's full forward pass.
BORDERLINE = 1e-4
# Float colour boxes are not split below this share of the value range.
MIN_FLOAT_SHARE = 1e-3


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
    max_boxes: int
    chunk_size: int
    enumerate_below: int
    search_starts: int
    search_steps: int
    evaluation: str

    def classify(self, x):
        out = self.predict(x) if self.params is None else self.predict(self.params, x)
        return jnp.asarray(out, jnp.float32)


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
    corners = np.array(list(itertools.product((lo, hi), repeat=c)), np.float64)
    centre = np.full((1, c), (lo + hi) / 2)
    tries = np.concatenate([corners, _colours(ctx, centre)])
    state.try_colours(np.repeat(np.arange(p), len(tries)), np.tile(tries, (p, 1)))

    owner = np.flatnonzero(~state.fooled)
    box_lo = np.full((len(owner), c), lo)
    box_hi = np.full((len(owner), c), hi)
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

    def outcome(self) -> Outcome:
        safe = ~self.fooled & ~self.undecided
        return Outcome(self.fooled, safe, self.witness, self.passes, self.evaluations)

    def try_colours(self, owner, colours) -> None:
        """Evaluate (pixel, colour) candidates; the first success per pixel is its witness."""
        open_ = ~self.fooled[owner]
        owner, colours = owner[open_], colours[open_]
        if not len(owner):
            return
        hit = _hits(self.ctx, self.image, self.label, self.goal, self.pixels[owner], colours)
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
        q = len(owner)
        proved, worst = np.zeros(q, bool), np.zeros((q, mid.shape[1]))
        # The forward bounds first; back-substitution (several times their cost) only
        # for the boxes they leave open.
        boxes = np.arange(q)
        for use_crown in (False, True):
            run = bounds.program(ctx.bplan, ctx.targeted, ctx.params is not None, use_crown)
            m = len(boxes)
            size = min(ctx.chunk_size, _bucket(m))
            for start in range(0, m, size):
                take = boxes[np.minimum(np.arange(start, start + size), m - 1)]
                goal = np.full(size, self.goal, np.int32)
                _, w, ok = run(self._cache, self.pixels[owner[take]], mid[take], rad[take], goal,
                               ctx.params)  # fmt: skip
                stop = min(size, m - start)
                proved[take[:stop]] = np.asarray(ok)[:stop]
                worst[take[:stop]] = np.asarray(w)[:stop]
            boxes = np.flatnonzero(~proved)
            if not len(boxes):
                break
        np.add.at(self.passes, owner, 1)
        return proved, worst

    def search(self, owner) -> None:
        """Gradient search over the colour of each pixel in owner, from several starts."""
        ctx = self.ctx
        c = self.image.shape[-1]
        lo, hi = ctx.value_range
        rng = np.random.default_rng(int(self.goal) * 7919 + len(owner))
        starts = [self.image[tuple(self.pixels[owner].T)].astype(np.float64)]
        starts += [rng.uniform(lo, hi, (len(owner), c)) for _ in range(ctx.search_starts - 1)]
        owners = np.concatenate([owner] * len(starts))
        colours = _descend(ctx, self.image, self.label, self.goal, self.pixels[owners],
                           np.concatenate(starts))  # fmt: skip
        self.evaluations += len(owners) * ctx.search_steps
        self.try_colours(owners, _colours(ctx, colours))
        self.undecided[self.fooled] = False

    def confirm(self) -> None:
        """Keep only witnesses that predict's full forward pass confirms."""
        owner = np.flatnonzero(self.fooled)
        if not len(owner):
            return
        ok = _hits(self.ctx, self.image, self.label, self.goal, self.pixels[owner],
                   self.witness[owner].astype(np.float64), full=True)  # fmt: skip
        lost = owner[~ok]
        self.fooled[lost] = False
        self.undecided[lost] = True  # a colour was near the boundary: neither proved
        self.witness[lost] = np.nan


def _bucket(n: int) -> int:
    """n rounded up to a power of two (at least 64): few distinct compiled shapes."""
    return max(64, 1 << (max(1, n) - 1).bit_length())


def _hits(ctx, image, label, goal, positions, colours, full=False) -> np.ndarray:
    """bool [M]: whether each one-pixel change succeeds, by predict's verdict.

    Candidates are scored with `ctx.evaluation` (incremental where it pays); successes
    and near-ties are re-scored by predict's full forward pass on the changed images,
    whose verdict stands."""
    m = len(positions)
    size = _bucket(m)
    take = np.minimum(np.arange(size), m - 1)
    pos, col = positions[take][None], colours[take][None]
    if full:
        probs = _full_probs(ctx, image, pos[0], col[0])
    else:
        probs = np.asarray(
            incremental.one_pixel_probs(
                ctx.predict,
                image[None],
                pos,
                col.astype(np.float32),
                evaluation=ctx.evaluation,
                params=ctx.params,
            )  # fmt: skip
        )[0]
    hit, near = _verdict(probs, label, goal, ctx.targeted)
    if not full and (hit | near).any():
        again = np.flatnonzero(hit | near)
        probs_again = _full_probs(ctx, image, pos[0][again], col[0][again])
        hit[again] = _verdict(probs_again, label, goal, ctx.targeted)[0]
    return hit[:m]


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
    m = len(positions)
    size = min(64, _bucket(m))
    out = []
    for start in range(0, m, size):
        take = np.minimum(np.arange(start, start + size), m - 1)
        probs = _full_program(ctx)(image, positions[take], colours[take])
        out.append(np.asarray(probs)[: m - start])
    return np.concatenate(out)[:m]


@functools.lru_cache(maxsize=16)
def _full_program(ctx):
    def run(image, positions, colours):
        image = jnp.asarray(image)
        colours = jnp.asarray(colours).astype(image.dtype)

        def one(position, colour):
            return image.at[position[0], position[1]].set(colour)

        x = jax.vmap(one)(jnp.asarray(positions, jnp.int32), colours).astype(jnp.float32)
        return ctx.classify(x)

    return jax.jit(run)


def _descend(ctx, image, label, goal, positions, starts) -> np.ndarray:
    """The best colour [M, C] along a signed-gradient descent of the attack's log-margin
    from each start (float colours; rounded by the caller for integer images)."""
    m = len(positions)
    size = min(ctx.chunk_size, _bucket(m))
    out = []
    for start in range(0, m, size):
        take = np.minimum(np.arange(start, start + size), m - 1)
        got = _descent_program(ctx)(
            jnp.asarray(image), jnp.asarray(positions[take], jnp.int32),
            jnp.asarray(starts[take], jnp.float32), label, goal,
        )  # fmt: skip
        out.append(np.asarray(got)[: m - start])
    return np.concatenate(out)


@functools.lru_cache(maxsize=16)
def _descent_program(ctx):
    lo, hi = ctx.value_range
    steps = ctx.search_steps

    def loss(colour, image, position, label, goal):
        x = image.astype(jnp.float32).at[position[0], position[1]].set(colour)
        logp = jnp.log(jnp.maximum(ctx.classify(x[None])[0], 1e-30))
        others = jnp.where(jnp.arange(logp.shape[0]) == goal, -jnp.inf, logp).max()
        return others - logp[goal] if ctx.targeted else logp[goal] - others

    grad = jax.vmap(jax.value_and_grad(loss), in_axes=(0, None, 0, None, None))

    def run(image, positions, colours, label, goal):
        def body(t, carry):
            colour, best, best_loss = carry
            value, g = grad(colour, image, positions, label, goal)
            better = value < best_loss
            best = jnp.where(better[:, None], colour, best)
            best_loss = jnp.where(better, value, best_loss)
            step = (hi - lo) * (0.25 * (1 - t / steps) + 1 / 64)
            colour = jnp.clip(colour - step * jnp.sign(g), lo, hi)
            return colour, best, best_loss

        init = (colours, colours, jnp.full(colours.shape[0], jnp.inf))
        colour, best, best_loss = jax.lax.fori_loop(0, steps, body, init)
        value, _ = grad(colour, image, positions, label, goal)
        return jnp.where((value < best_loss)[:, None], colour, best)

    return jax.jit(run)
