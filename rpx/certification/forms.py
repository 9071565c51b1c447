"""Linear bounds in one pixel's colour: the arithmetic every bound rule is made of.

When one pixel changes, every activation is a function of that pixel's C colour values.
Over a colour box, written `colour = mid + rad * t` with t in [-1, 1]^C, each activation
x is held as a *form*: an array f of shape [2, C + 1, *shape] with

    f[0, :C] . t + f[0, C]  <=  x(t)  <=  f[1, :C] . t + f[1, C]     for every t in the box

(f[0]: the lower affine form, f[1]: the upper one; slice C holds the constants). Linear
maps send forms to forms exactly (weights split into their positive and negative parts);
ReLU and max get the usual linear relaxations (the triangle's chord above; a slope of 0
or 1, whichever is tighter, below); a form is made concrete at its sign-chosen corner of
the box. All functions are pure and traceable; they compose under vmap.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def const(x, p: int) -> jax.Array:
    """The exact form of a value that does not depend on the colour: [2, p, *shape]."""
    x = jnp.asarray(x, jnp.float32)
    coefficients = jnp.zeros((p - 1, *x.shape), x.dtype)
    one = jnp.concatenate([coefficients, x[None]], 0)
    return jnp.stack([one, one])


def concrete(f) -> tuple[jax.Array, jax.Array]:
    """(lower, upper) bounds of the forms f [2, p, ...] over t in [-1, 1]^(p-1)."""
    return f[0, -1] - jnp.abs(f[0, :-1]).sum(0), f[1, -1] + jnp.abs(f[1, :-1]).sum(0)


def per_slice(fn, *fs) -> jax.Array:
    """fn applied to each of the 2 * p slices of the forms fs (slice by slice)."""
    return jax.vmap(jax.vmap(fn))(*fs)


def positive_linear(fn, f) -> jax.Array:
    """Forms of fn(x) for fn linear with non-negative coefficients (sums, reshapes,
    transposes, broadcasts, slices): lower maps to lower, upper to upper."""
    return per_slice(fn, f)


def signed_linear(fn, weights, f) -> jax.Array:
    """Forms of fn(x, weights), linear in x for fixed weights (convolutions, dense
    layers, products with constants): positive weights carry lower to lower, negative
    weights carry upper to lower."""
    plus, minus = jnp.maximum(weights, 0), jnp.minimum(weights, 0)
    lo, hi = f[0], f[1]

    def apply(x, w):
        return jax.vmap(lambda s: fn(s, w))(x)

    return jnp.stack([apply(lo, plus) + apply(hi, minus), apply(hi, plus) + apply(lo, minus)])


def add(a, b) -> jax.Array:
    """Forms of a + b."""
    return a + b


def negate(f) -> jax.Array:
    """Forms of -x: the negated upper form bounds from below."""
    return -f[::-1]


def shift(f, c) -> jax.Array:
    """Forms of x + c for a constant c (broadcastable to x)."""
    return f.at[:, -1].add(jnp.asarray(c, f.dtype))


def relu(f) -> jax.Array:
    """Forms of max(x, 0): exact where the sign is fixed over the box; where the bounds
    [l, u] straddle 0, the chord u (x - l) / (u - l) above and x or 0 below (slope 1
    where u > -l: the relaxation with the smaller area)."""
    low, up = concrete(f)
    active, dead = low >= 0, up <= 0
    width = jnp.where(up > low, up - low, 1.0)
    slope = jnp.where(active | dead, 0.0, up / width)
    upper = (slope * f[1]).at[-1].add(-slope * jnp.where(active | dead, 0.0, low))
    lower = jnp.where(up > -low, f[0], 0.0)
    crossing = jnp.stack([lower, upper])
    return jnp.where(active, f, jnp.where(dead, 0.0, crossing))


def maximum_const(f, c) -> jax.Array:
    """Forms of max(x, c) for a constant c (any values, -inf included)."""
    c = jnp.broadcast_to(jnp.asarray(c, f.dtype), f.shape[2:])
    low, up = concrete(f)
    finite = jnp.where(jnp.isfinite(c), c, 0.0)
    relaxed = shift(relu(shift(f, -finite)), finite)
    p = f.shape[1]
    return jnp.where(low >= c, f, jnp.where(up <= c, const(c, p), relaxed))


def maximum(a, b) -> jax.Array:
    """Forms of max(a, b) for two colour-dependent values: b + relu(a - b)."""
    return add(b, relu(add(a, negate(b))))


def max_over(f, axis: int) -> jax.Array:
    """Forms of the maximum over array axis `axis` of the value (f's axis 2 + axis).

    Below: the lower form of the candidate with the greatest lower bound (the maximum is
    at least that candidate). Above: that candidate's upper form where its lower bound
    is at least every other candidate's upper bound (it is then the maximum), else the
    greatest upper bound as a constant."""
    f = jnp.moveaxis(f, axis + 2, 2)
    low, up = concrete(f)
    best = jnp.argmax(low, axis=0)
    pick = best[None, None, None]
    chosen = jnp.take_along_axis(f, jnp.broadcast_to(pick, (2, f.shape[1], 1, *best.shape)), 2)
    chosen = chosen[:, :, 0]
    index = jnp.arange(f.shape[2]).reshape(-1, *[1] * best.ndim)
    others = jnp.where(index == best, -jnp.inf, up)
    low_best = jnp.take_along_axis(low, best[None], 0)[0]
    dominant = low_best >= others.max(0)
    upper = jnp.where(dominant, chosen[1], const(up.max(0), f.shape[1])[1])
    return jnp.stack([chosen[0], upper])


def monotone(fn, f, increasing: bool = True) -> jax.Array:
    """Constant forms [fn(l), fn(u)] of a monotone elementwise fn (decreasing: swapped)."""
    low, up = concrete(f)
    lo, hi = (fn(low), fn(up)) if increasing else (fn(up), fn(low))
    p = f.shape[1]
    return jnp.stack([const(lo, p)[0], const(hi, p)[1]])
