"""Regions: boolean masks of the pixels an attack may change, and their lookup tables.

A region is a bool mask, True where a pixel may change. The search never sees the mask:
its coordinate genes go through per-image lookup tables built here, so every candidate
lies inside its image's region by construction.

All functions are traceable (they work under the caller's `jit` and `vmap`); the
orderings that depend only on the image size are computed once with numpy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

REGION_NAMES = ("original", "foreground", "background")


def mask(name: str, foreground: jax.Array | np.ndarray) -> jax.Array | np.ndarray:
    """The region called `name` of images whose foreground is `foreground`.

    Args:
      name: "original" (the whole image), "foreground" or "background".
      foreground: bool [N, H, W] or [H, W], True = foreground (e.g. from
        `rpx.segment.grabcut`).

    Returns:
      bool array of the same shape and array type, True where pixels may change.
    """
    xp = jnp if isinstance(foreground, jax.Array) else np
    foreground = xp.asarray(foreground)
    if foreground.dtype != bool:
        raise ValueError(f"foreground must be a bool mask, got dtype {foreground.dtype}")
    if foreground.ndim not in (2, 3):
        raise ValueError(f"foreground must be [H, W] or [N, H, W], got shape {foreground.shape}")
    if name == "original":
        return xp.ones_like(foreground)
    if name == "foreground":
        return foreground
    if name == "background":
        return ~foreground
    raise ValueError(f"region name must be one of {REGION_NAMES}, got {name!r}")


def broadcast(region, n: int, h: int, w: int) -> jax.Array:
    """The region as bool [N, H, W]: None means the whole image, [H, W] is shared."""
    if region is None:
        return jnp.ones((n, h, w), bool)
    region = jnp.asarray(region, bool)
    if region.ndim == 2:
        region = jnp.broadcast_to(region, (n, h, w))
    return region


@functools.lru_cache(maxsize=32)
def hilbert_rank(h: int, w: int) -> np.ndarray:
    """int32 [H*W]: the position of each row-major pixel along a Hilbert curve.

    The curve is drawn on the smallest power-of-two square holding the image, so
    pixels close along the order are close in the image (what DE's difference
    vectors exploit); a row-major order splits vertical neighbours by W.
    """
    side = 1 << max(0, int(np.ceil(np.log2(max(h, w, 1)))))
    rows, cols = np.divmod(np.arange(h * w, dtype=np.int64), w)
    x, y, d = cols.copy(), rows.copy(), np.zeros(h * w, np.int64)
    s = side // 2
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        # Rotate the quadrant so the curve stays continuous (the classic xy2d step).
        flip = ~ry & rx
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = ~ry
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s //= 2
    return np.argsort(np.argsort(d, kind="stable"), kind="stable").astype(np.int32)


def index_table(region: jax.Array, order: str = "row_major") -> tuple[jax.Array, jax.Array]:
    """Per-image tables of the allowed pixels.

    Args:
      region: bool [N, H, W].
      order: "row_major" or "hilbert", the order of the allowed pixels in the table.

    Returns:
      (table int32 [N, H*W], count int32 [N]): `table[n, :count[n]]` are the flat
      (row-major) indices of image n's allowed pixels in the given order; the rest of
      the row holds its other pixels and is never selected.
    """
    n, h, w = region.shape
    if order == "row_major":
        rank = jnp.arange(h * w, dtype=jnp.int32)
    elif order == "hilbert":
        rank = jnp.asarray(hilbert_rank(h, w))
    else:
        raise ValueError(f"order must be 'row_major' or 'hilbert', got {order!r}")
    flat = region.reshape(n, h * w)
    # Allowed pixels sort first, each group by its rank along the chosen order.
    sort_key = jnp.where(flat, rank, h * w + rank)
    table = jnp.argsort(sort_key, axis=-1).astype(jnp.int32)
    return table, flat.sum(-1, dtype=jnp.int32)


def nearest_allowed(region: jax.Array) -> jax.Array:
    """int32 [N, H*W]: for every pixel, the flat index of its nearest allowed pixel.

    Exact Euclidean nearest (ties to the smaller row, then column), computed in two
    separable passes: per column the nearest allowed row, then per row the best
    column. That costs H*W*(H+W) per image instead of (H*W)**2, so it stays cheap
    at ImageNet size. Images with an empty region get index 0 (never used).
    """
    return jax.vmap(_nearest_allowed_one)(region)


def _nearest_allowed_one(region: jax.Array) -> jax.Array:
    h, w = region.shape
    rows = jnp.arange(h)
    # Pass 1: for query row r and column c, the nearest allowed row in column c.
    dr2 = (rows[:, None] - rows[None, :]) ** 2  # [r, r']
    cost = jnp.where(region[None, :, :], dr2[:, :, None], jnp.iinfo(jnp.int32).max // 4)
    best_row = jnp.argmin(cost, axis=1)  # [r, c]
    vert = jnp.min(cost, axis=1)  # [r, c], huge where the column has no allowed pixel
    # Pass 2: for query (r, c), the column c' minimising (c - c')**2 + vert[r, c'].
    cols = jnp.arange(w)
    dc2 = (cols[:, None] - cols[None, :]) ** 2  # [c, c']
    total = vert[:, None, :] + dc2[None, :, :]  # [r, c, c']
    best_col = jnp.argmin(total, axis=-1)  # [r, c]
    row = jnp.take_along_axis(best_row, best_col, axis=1)
    return (row * w + best_col).reshape(h * w).astype(jnp.int32)
