"""Back-substitution (CROWN) for the margins: linear bounds of z_goal - z_j built backwards.

The forward forms (`rules`, `forms`) give every activation's bounds [l, u] over the box,
and with them a linear relaxation of every nonlinear step: a lower piece a_l x + b_l and
an upper piece a_u x + b_u valid on [l, u] (ReLU and max with a constant: the chord above,
slope 0 or 1 below; monotone functions: their constant bounds; maxima over candidates:
the candidate with the greatest lower bound below, the dominant candidate or the greatest
upper bound above). For a margin spec s on the logits, a cotangent Λ is carried from the
logits back to the pixel through predict's own (value-level) ops: linear ops by their
transpose, a relaxed step by a_l where Λ >= 0 and a_u where Λ < 0 (its lower piece bounds
s . z from below where the coefficient is positive, its upper piece where negative). Then

    s . z(x)  >=  R_s(x) = Λ_x . x + c       for every colour x of the box,

where R_s is predict with each relaxed step replaced by the piece its Λ chose: an affine
function of the colour. Its least value over the box is Λ_x . mid + c - sum |Λ_x| rad.

The value-level network is predict's jaxpr run on the whole image with the pixel set to
the colour (no windows); outside the pixel's receptive field the relaxation is exact (the
bounds there are the value itself). One reverse pass (`jax.vjp`, vmapped over the specs)
gives Λ_x and c together: every constant that enters the network additively (biases,
shifts, pad values, the clean image, the relaxed steps' offsets b) is multiplied by a
scalar s = 1, which makes R_s linear in (colour, s), so c is the cotangent of s; each
relaxed step is a `custom_vjp` whose backward picks slope and offset by the cotangent's
sign. A step no relaxation covers makes the bound unavailable: nothing is ever
differentiated through an op that is not affine.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from rpx.certification import head, rules
from rpx.incremental.walk import bind, sub_jaxpr

# Linear ops whose constant operand is a weight, not an added constant.
WEIGHTED = frozenset("mul div conv_general_dilated dot_general".split())
# Ops that are affine in their colour-dependent operands whenever the forward walk
# accepts them (the walk refuses products of two colour-dependent values, colour-
# dependent indices and selectors): their own autodiff is their transpose.
LINEAR = rules.POSITIVE_LINEAR | frozenset(
    "conv_general_dilated dot_general pad reduce_window_sum add add_any sub mul div neg".split()
)


class Unavailable(Exception):
    """The logits depend on a step back-substitution does not relax."""


def _signed(g, on_lo, on_hi):
    """g * on_lo where g > 0, g * on_hi where g < 0, 0 where g == 0 (also for inf)."""
    return jnp.where(g > 0, g * on_lo, jnp.where(g < 0, g * on_hi, 0.0))


@jax.custom_vjp
def _relaxed(x, s, a_lo, a_hi, b_lo, b_hi):
    """The lower piece a_lo x + b_lo s (exact where the bounds meet); backward: the
    piece the cotangent's sign chooses, its offset to s."""
    return a_lo * x + b_lo * s


def _relaxed_fwd(x, s, a_lo, a_hi, b_lo, b_hi):
    return a_lo * x + b_lo * s, (a_lo, a_hi, b_lo, b_hi)


def _relaxed_bwd(res, g):
    a_lo, a_hi, b_lo, b_hi = res
    zeros = [jnp.zeros_like(r) for r in res]
    return (_signed(g, a_lo, a_hi), _signed(g, b_lo, b_hi).sum(), *zeros)


_relaxed.defvjp(_relaxed_fwd, _relaxed_bwd)


@jax.custom_vjp
def _selected(cands, s, onehot, dominant, hi):
    """The best candidate (a lower bound of the maximum); backward: above, the best
    candidate where it dominates, else the constant hi (to s)."""
    return (onehot * cands).sum(0)


def _selected_fwd(cands, s, onehot, dominant, hi):
    return (onehot * cands).sum(0), (onehot, dominant, hi)


def _selected_bwd(res, g):
    onehot, dominant, hi = res
    upper = dominant > 0
    back = onehot * _signed(g, 1.0, jnp.where(upper, 1.0, 0.0))[None]
    offset = _signed(g, 0.0, jnp.where(upper, 0.0, hi)).sum()
    return (back, offset, *[jnp.zeros_like(r) for r in res])


_selected.defvjp(_selected_fwd, _selected_bwd)


def relu_pieces(lo, hi):
    """(a_l, b_l, a_u, b_u) of max(x, 0) over [lo, hi]."""
    active, dead = lo >= 0, hi <= 0
    cross = ~active & ~dead
    width = jnp.where(hi > lo, hi - lo, 1.0)
    chord = jnp.where(cross, hi / width, 0.0)
    a_l = jnp.where(active | (cross & (hi > -lo)), 1.0, 0.0)
    a_u = jnp.where(active, 1.0, chord)
    b_u = jnp.where(cross, -chord * lo, 0.0)
    return a_l, jnp.zeros_like(a_l), a_u, b_u


def max_const_pieces(lo, hi, c):
    """Pieces of max(x, c) over [lo, hi]: c + relu(x - c) (c = -inf: x; c = inf: inf)."""
    finite = jnp.where(jnp.isfinite(c), c, 0.0)
    a_l, b_l, a_u, b_u = relu_pieces(lo - finite, hi - finite)
    b_l, b_u = finite + b_l - a_l * finite, finite + b_u - a_u * finite
    low, high = c == -jnp.inf, c == jnp.inf
    one, zero = jnp.ones_like(a_l), jnp.zeros_like(a_l)
    a_l, a_u = (jnp.where(low, one, jnp.where(high, zero, a)) for a in (a_l, a_u))
    b_l, b_u = (jnp.where(low, zero, jnp.where(high, jnp.inf, b)) for b in (b_l, b_u))
    return a_l, b_l, a_u, b_u


def abs_pieces(lo, hi):
    """Pieces of |x| over [lo, hi]: exact where the sign is fixed; else x or -x below
    (the larger at the wider side), the chord above."""
    pos, neg = lo >= 0, hi <= 0
    width = jnp.where(hi > lo, hi - lo, 1.0)
    chord = (hi + lo) / width
    a_l = jnp.where(pos, 1.0, jnp.where(neg, -1.0, jnp.where(hi > -lo, 1.0, -1.0)))
    a_u = jnp.where(pos, 1.0, jnp.where(neg, -1.0, chord))
    b_u = jnp.where(pos | neg, 0.0, -lo - chord * lo)
    return a_l, jnp.zeros_like(a_l), a_u, b_u


def monotone_pieces(name, lo, hi):
    """Constant pieces [fn(lo), fn(hi)] of a monotone fn (decreasing: swapped)."""
    if name in rules.INCREASING:
        low, high = rules.INCREASING[name](lo), rules.INCREASING[name](hi)
    else:
        low, high = rules.DECREASING[name](hi), rules.DECREASING[name](lo)
    zero = jnp.zeros_like(low)
    return zero, low, zero, high


def selection(cand_lo, cand_hi, real):
    """(onehot [n, ...], dominant, greatest upper bound) of a maximum over candidates
    (axis 0) with bounds [cand_lo, cand_hi]; `real` False for padding."""
    score = jnp.where(real, jnp.maximum(cand_lo, jnp.finfo(jnp.float32).min), -jnp.inf)
    best = jnp.argmax(score, 0)
    onehot = jnp.arange(score.shape[0]).reshape(-1, *[1] * best.ndim) == best
    low_best = jnp.take_along_axis(cand_lo, best[None], 0)[0]
    others = jnp.where(onehot | ~real, -jnp.inf, cand_hi).max(0)
    hi = jnp.where(real, cand_hi, -jnp.inf).max(0)
    return onehot.astype(jnp.float32), (low_best >= others).astype(jnp.float32), hi


class Net:
    """predict's jaxpr on values, its nonlinear steps relaxed with the walk's bounds and
    its additive constants multiplied by the scalar s (see the module docstring)."""

    def __init__(self, relax: dict, logits_key):
        self.relax = relax
        self.logits_key = logits_key

    def __call__(self, jaxpr, consts, image, s):
        self.s, self.found = s, None
        dep = [False] * len(consts) + [True]
        self._run(jaxpr.jaxpr, list(consts) + [image], dep, ())
        if self.found is None:
            raise Unavailable("the logits depend on a step back-substitution cannot relax")
        return self.found

    def _run(self, jaxpr, vals, dep, path):
        names = list(jaxpr.constvars) + list(jaxpr.invars)
        env = dict(zip(names, vals, strict=True))
        deps = {v for v, d in zip(names, dep, strict=True) if d}
        poison = set()

        def read(v):
            return v.val if isinstance(v, jcore.Literal) else env[v]

        def depends(v):
            return not isinstance(v, jcore.Literal) and v in deps

        for i, eqn in enumerate(jaxpr.eqns):
            d = [depends(v) for v in eqn.invars]
            ins = [read(v) for v in eqn.invars]
            keys = [(path, v) for v in eqn.outvars]
            out_dep = [any(d)] * len(eqn.outvars)
            name = eqn.primitive.name
            if not any(d):
                outs = bind(eqn, ins)
                outs = outs if eqn.primitive.multiple_results else [outs]
            elif any(v in poison for v in eqn.invars if not isinstance(v, jcore.Literal)):
                outs = [None] * len(eqn.outvars)
            elif sub_jaxpr(eqn) is not None:
                sub, consts = sub_jaxpr(eqn)
                outs, out_dep = self._run(sub, consts + ins, [False] * len(consts) + d, path + (i,))
            elif (keys[0], 0) in self.relax:
                outs = [self._relaxed(eqn, ins, keys[0])]
            elif name in head.IDENTITY:
                outs = [ins[0]]
            elif name in LINEAR:
                if name not in WEIGHTED:
                    # Constants added in (biases, shifts, pad values, selected branches).
                    ins = [self._scaled(v) if not dv else v for v, dv in zip(ins, d, strict=True)]
                outs = [bind(eqn, ins)]
            else:
                outs = [None] * len(eqn.outvars)
            for v, val, od in zip(eqn.outvars, outs, out_dep, strict=True):
                env[v] = val
                if od:
                    deps.add(v)
                if od and val is None:
                    poison.add(v)
                if (path, v) == self.logits_key and val is not None:
                    self.found = val
        out_dep = [depends(v) for v in jaxpr.outvars]
        return [read(v) for v in jaxpr.outvars], out_dep

    def _scaled(self, v):
        if jnp.issubdtype(jnp.result_type(v), jnp.floating):
            return v * self.s.astype(jnp.result_type(v))
        return v

    # ---- relaxed steps --------------------------------------------------------------

    def _bounds(self, node, x):
        """Full-map bounds of a step's argument x: the walk's, laid over x itself."""
        rec = self.relax[node]
        if rec.kind == "full":
            return rec.lo, rec.hi
        x = lax.stop_gradient(x)
        starts = [rec.starts.get(a, 0) for a in range(x.ndim)]
        return (lax.dynamic_update_slice(x, rec.lo.astype(x.dtype), starts),
                lax.dynamic_update_slice(x, rec.hi.astype(x.dtype), starts))  # fmt: skip

    def _elementwise(self, node, x, pieces):
        a_l, b_l, a_u, b_u = (lax.stop_gradient(p) for p in pieces)
        return _relaxed(x, self.s, a_l, a_u, b_l, b_u)

    def _select(self, node, cands, onehot, dominant, hi):
        onehot, dominant, hi = (lax.stop_gradient(p) for p in (onehot, dominant, hi))
        return _selected(cands, self.s, onehot, dominant, hi)

    def _relaxed(self, eqn, ins, key):
        rec = self.relax[(key, 0)]
        shape = tuple(eqn.outvars[0].aval.shape)
        if rec.op in ("pool_max", "reduce_max"):
            f32 = [jnp.asarray(ins[0], jnp.float32)]
        else:
            f32 = [jnp.broadcast_to(jnp.asarray(v, jnp.float32), shape) for v in ins]
        node = (key, 0)
        if rec.op == "max_const":
            sign, at = rec.info
            x, c = sign * f32[at], sign * f32[1 - at]
            pieces = max_const_pieces(*self._bounds(node, x), lax.stop_gradient(c))
            return sign * self._elementwise(node, x, pieces)
        if rec.op == "max2":
            (sign,) = rec.info
            a, b = sign * f32[0], sign * f32[1]
            d = a - b
            return sign * (b + self._elementwise(node, d, relu_pieces(*self._bounds(node, d))))
        if rec.op == "clamp":
            lo, x, hi = f32
            pieces = max_const_pieces(*self._bounds(node, x), lax.stop_gradient(lo))
            low = -self._elementwise(node, x, pieces)
            second = (key, 1)
            pieces = max_const_pieces(*self._bounds(second, low), lax.stop_gradient(-hi))
            return -self._elementwise(second, low, pieces)
        if rec.op == "abs":
            (x,) = f32
            return self._elementwise(node, x, abs_pieces(*self._bounds(node, x)))
        if rec.op == "monotone":
            (x,) = f32
            (name,) = rec.info
            return self._elementwise(node, x, monotone_pieces(name, *self._bounds(node, x)))
        if rec.op == "pool_max":
            return self._pool(eqn, node, jnp.asarray(ins[0], jnp.float32))
        if rec.op == "reduce_max":
            (sign,) = rec.info
            x = sign * jnp.asarray(ins[0], jnp.float32)
            reduced = tuple(eqn.params["axes"])
            kept = [a for a in range(x.ndim) if a not in reduced]

            def gather(s):
                return jnp.transpose(s, (*reduced, *kept)).reshape(-1, *shape)

            cands, lo, hi = gather(x), gather(rec.lo), gather(rec.hi)
            onehot, dominant, top = selection(lo, hi, jnp.ones(lo.shape, bool))
            return sign * self._select(node, cands, onehot, dominant, top)
        raise Unavailable(f"no relaxation for {rec.op!r}")

    def _pool(self, eqn, node, x):
        p = eqn.params
        if any(d != 1 for d in p["base_dilation"]):
            raise Unavailable("max pool with base dilation")
        lo, hi = self._bounds(node, x)
        config = [(a, b, 0) for a, b in p["padding"]]

        def padded(v, fill):
            return lax.pad(v, jnp.asarray(fill, v.dtype), config)

        arrays = [padded(x, 0.0), padded(lo, -jnp.inf), padded(hi, -jnp.inf),
                  padded(jnp.ones(x.shape, bool), False)]  # fmt: skip
        out_shape = tuple(eqn.outvars[0].aval.shape)
        dims, strides, dilation = p["window_dimensions"], p["window_strides"], p["window_dilation"]
        stacks = [[] for _ in arrays]
        for offset in np.ndindex(*dims):
            start = [o * d for o, d in zip(offset, dilation, strict=True)]
            limit = [
                s + (n - 1) * st + 1 for s, n, st in zip(start, out_shape, strides, strict=True)
            ]
            for stack, a in zip(stacks, arrays, strict=True):
                stack.append(lax.slice(a, start, limit, strides))
        cands, c_lo, c_hi, real = (jnp.stack(s) for s in stacks)
        onehot, dominant, top = selection(c_lo, c_hi, real)
        return self._select(node, cands, onehot, dominant, top)


def margins(relax, logits_key, jaxpr, consts, image, position, mid, rad, specs):
    """Lower bounds over the box mid +- rad of specs [S, K] . logits, and the colour of
    the box where each bound's linear form is least: ([S], [S, C]).

    image: the clean image [1, H, W, C]; position: the pixel (row, col); consts: the
    jaxpr's constants then the parameter leaves. Raises Unavailable where a step is not
    relaxed (at trace time)."""
    net = Net(relax, logits_key)
    starts = [0, position[0], position[1], 0]

    def logits(colour, s):
        pixel = colour.astype(image.dtype).reshape(1, 1, 1, -1)
        changed = lax.dynamic_update_slice(image * s.astype(image.dtype), pixel, starts)
        return net(jaxpr, consts, changed, s)

    z, pullback = jax.vjp(logits, mid, jnp.ones((), jnp.float32))
    lam_x, offset = jax.vmap(pullback)(specs.reshape(specs.shape[0], *z.shape))
    lower = offset + lam_x @ mid - (jnp.abs(lam_x) * rad).sum(-1)
    lower = jnp.where(jnp.isnan(lower), -jnp.inf, lower)
    worst = mid - rad * jnp.sign(lam_x)
    return lower, worst
