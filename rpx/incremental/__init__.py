"""Exact one-pixel evaluation from cached clean activations.

Every one-pixel candidate differs from its clean image in one pixel, and in a CNN that
pixel reaches only a window of each layer. `analyse` traces `predict` on one image and
follows the changed window through its jaxpr (convolutions of any stride and padding,
pooling, per-channel elementwise ops, residual sums, global sums and means);
`clean_cache` keeps the clean activations those windows are merged into, and
`window_probs` recomputes only the windows. Ops it cannot follow (a reshape that mixes
the spatial axes, a global max, attention) run in full on the window written into the
clean activation, so the result is always that of the full pass, within float rounding.

    probs = rpx.one_pixel_probs(predict, images, positions, colors)   # [N, M, K]
"""

from rpx.incremental.api import one_pixel_probs
from rpx.incremental.plan import (
    MIN_FLOP_RATIO,
    Plan,
    analyse,
    choose,
    clean_cache,
    window_probs,
)

__all__ = [
    "EVALUATIONS",
    "MIN_FLOP_RATIO",
    "Plan",
    "analyse",
    "choose",
    "clean_cache",
    "one_pixel_probs",
    "window_probs",
]


def __getattr__(name):
    # EVALUATIONS lives in rpx.evaluate, which imports this package: looked up on use.
    if name == "EVALUATIONS":
        from rpx.evaluate import EVALUATIONS

        return EVALUATIONS
    raise AttributeError(f"module 'rpx.incremental' has no attribute {name!r}")
