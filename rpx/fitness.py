"""What makes one candidate better than another: the fitness, success, and their order.

Untargeted attacks drive p[label] down and succeed when argmax != label; targeted ones
drive p[target] up and succeed when argmax == target. Scores are minimised: p[label],
or -p[target]. A success always beats a failure, then the lower score wins. A candidate
whose probabilities are not all finite is neither a success nor comparable (score inf):
argmax of a NaN row is 0, which would pass for a success.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
