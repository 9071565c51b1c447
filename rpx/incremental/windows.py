"""Static window arithmetic: where one changed pixel can reach in each activation.

Everything here runs on the host at analysis time with numpy and plain ints. For one
array axis of an activation that follows one coordinate (row or column) of the changed
pixel, `Axis` tables, for every value of that coordinate, the exact affected interval
[lo, hi) of the axis and the start of a window of static length that contains it. A
window is a static shape at a position looked up per candidate, which is what XLA needs.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Axis:
    """How one array axis of an activation follows one coordinate of the changed pixel.

    axis: the array axis; coord: 0 when it follows the pixel's row, 1 its column;
    size: the axis' extent; window: static window length (1 <= window <= size);
    lo, hi: for each coordinate value p, the interval [lo[p], hi[p]) of the axis that
      the pixel can change (lo == hi: none);
    origin: for each p, the start of the window, with
      origin[p] <= lo[p] and hi[p] <= origin[p] + window whenever lo[p] < hi[p].
    """

    axis: int
    coord: int
    size: int
    window: int
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    origin: tuple[int, ...]

    def moved(self, axis: int) -> Axis:
        """The same window on another array axis (transpose, reshape, reductions)."""
        return dataclasses.replace(self, axis=axis)

    @property
    def span(self) -> tuple[int, int]:
        """(min, max) window start over all coordinate values."""
        return min(self.origin), max(self.origin)


def fit(axis: int, coord: int, size: int, lo, hi) -> Axis:
    """The Axis with the smallest static window containing every interval [lo, hi).

    A window that would reach past the border is clamped back inside the map, which
    keeps the interval inside it because the interval itself lies inside the map.
    """
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
    empty = hi <= lo
    lo, hi = np.where(empty, 0, lo), np.where(empty, 0, hi)
    window = int(min(size, max(1, int((hi - lo).max(initial=1)))))
    origin = np.clip(lo, 0, size - window)
    return Axis(axis, coord, size, window, _ints(lo), _ints(hi), _ints(origin))


def pixel(axis: int, coord: int, size: int) -> Axis:
    """The input image's axis: the pixel at p changes exactly [p, p + 1)."""
    p = np.arange(size)
    return fit(axis, coord, size, p, p + 1)


def through_window(ax: Axis, kernel: int, stride: int, dilation: int, pad_lo: int, out_size: int):
    """The Axis of a sliding-window op's output (convolution, pooling) along `ax`.

    Output position q reads inputs q*stride - pad_lo + k*dilation for k < kernel, so it
    changes only if [q*stride - pad_lo, q*stride - pad_lo + (kernel-1)*dilation] meets the
    changed interval (the hull: skipping dilation's holes only makes windows larger).
    """
    lo, hi = np.asarray(ax.lo, np.int64), np.asarray(ax.hi, np.int64)
    reach = (kernel - 1) * dilation
    first = -((reach - lo - pad_lo) // stride)  # ceil((lo + pad_lo - reach) / stride)
    last = (hi - 1 + pad_lo) // stride
    first, last = np.clip(first, 0, out_size), np.clip(last + 1, 0, out_size)
    empty = hi <= lo
    return fit(ax.axis, ax.coord, out_size, np.where(empty, 0, first), np.where(empty, 0, last))


def union(a: Axis, b: Axis) -> Axis:
    """The smallest window containing both changed intervals (same axis and map)."""
    lo_a, hi_a = np.asarray(a.lo), np.asarray(a.hi)
    lo_b, hi_b = np.asarray(b.lo), np.asarray(b.hi)
    empty_a, empty_b = hi_a <= lo_a, hi_b <= lo_b
    lo = np.where(empty_a, lo_b, np.where(empty_b, lo_a, np.minimum(lo_a, lo_b)))
    hi = np.where(empty_a, hi_b, np.where(empty_b, hi_a, np.maximum(hi_a, hi_b)))
    return fit(a.axis, a.coord, a.size, lo, hi)


def reversed_axis(ax: Axis) -> Axis:
    """The Axis after reversing the array axis (e.g. a mirrored test-time copy)."""
    lo, hi = np.asarray(ax.lo), np.asarray(ax.hi)
    empty = hi <= lo
    new_lo, new_hi = np.where(empty, 0, ax.size - hi), np.where(empty, 0, ax.size - lo)
    origin = ax.size - ax.window - np.asarray(ax.origin)
    return Axis(ax.axis, ax.coord, ax.size, ax.window, _ints(new_lo), _ints(new_hi), _ints(origin))


def same_map(a: Axis, b: Axis) -> bool:
    """Whether two Axes describe the same array axis of the same map."""
    return (a.axis, a.coord, a.size, len(a.lo)) == (b.axis, b.coord, b.size, len(b.lo))


def _ints(x) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(x).ravel())
