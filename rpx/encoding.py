"""Genes <-> pixels: how a candidate in [0, 1)^D becomes k (position, colour) pairs.

A candidate holds, for each of its k pixels, its coordinate genes followed by C colour
genes. The coordinate genes go through a per-image lookup (see `rpx.regions`):

- "flat":    one gene u picks `table[floor(u * count)]`, the allowed pixels in
             row-major order;
- "hilbert": the same, with the allowed pixels ordered along a Hilbert curve;
- "rowcol":  two genes pick (row, col) on the whole image, which goes to the nearest
             allowed pixel.

Either way every candidate lies inside its region by construction. With the paper's
"restore" restriction the lookup spans the whole image instead, and pixels that fall
outside the region are left unchanged when the candidate is applied.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from rpx import regions

ENCODINGS = ("flat", "hilbert", "rowcol")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Static facts that fix a candidate's length and meaning (hashable, for jit)."""

    pixels: int
    height: int
    width: int
    channels: int
    encoding: str
    restore: bool
    value_range: tuple[float, float]
    integer_colors: bool  # uint8-like images: colours snap to whole values
    color_dtype: str = "float32"  # the images' dtype: colours are rounded to what it holds

    @property
    def coordinate_genes(self) -> int:
        return 2 if self.encoding == "rowcol" else 1

    @property
    def genes_per_pixel(self) -> int:
        return self.coordinate_genes + self.channels

    @property
    def num_genes(self) -> int:
        return self.pixels * self.genes_per_pixel


@struct.dataclass
class Lookup:
    """Per-image coordinate lookup, one row per image.

    table: int32 [N, H*W], the flat pixel each coordinate value maps to;
    count: int32 [N], how many table entries are usable (flat/hilbert) or H*W;
    region: bool [N, H*W], the pixels that may change.
    """

    table: jax.Array
    count: jax.Array
    region: jax.Array


def build_lookup(layout: Layout, region: jax.Array) -> Lookup:
    """The lookup for bool region [N, H, W] under `layout`."""
    n, h, w = region.shape
    search_region = jnp.ones_like(region) if layout.restore else region
    if layout.encoding == "rowcol":
        table = regions.nearest_allowed(search_region)
        count = jnp.where(search_region.any((1, 2)), h * w, 0).astype(jnp.int32)
    else:
        order = "hilbert" if layout.encoding == "hilbert" else "row_major"
        table, count = regions.index_table(search_region, order)
    return Lookup(table=table, count=count, region=region.reshape(n, h * w))


def decode(layout: Layout, genes: jax.Array, table: jax.Array, count: jax.Array, region):
    """One candidate's pixels.

    Args:
      genes: [D] in [0, 1); table int32 [H*W], count int32 [], region bool [H*W]: one
        image's row of a `Lookup`.

    Returns:
      (flat int32 [k], colors float32 [k, C], changed bool [k]): flat pixel indices,
      their colours in value_range, and whether each pixel is applied (False only for
      pixels outside the region under "restore").
    """
    genes = genes.reshape(layout.pixels, layout.genes_per_pixel)
    coord, color_genes = genes[:, : layout.coordinate_genes], genes[:, layout.coordinate_genes :]
    if layout.encoding == "rowcol":
        row = _bucket(coord[:, 0], layout.height)
        col = _bucket(coord[:, 1], layout.width)
        flat = table[row * layout.width + col]
    else:
        flat = table[_bucket(coord[:, 0], jnp.maximum(count, 1))]
    lo, hi = layout.value_range
    if layout.integer_colors:
        levels = int(round(hi - lo)) + 1
        colors = lo + _bucket(color_genes, levels).astype(jnp.float32)
    else:
        colors = lo + color_genes.astype(jnp.float32) * (hi - lo)
    # The model is shown the colour the returned image can store (e.g. float16 images).
    colors = colors.astype(layout.color_dtype).astype(jnp.float32)
    changed = region[flat] if layout.restore else jnp.ones(layout.pixels, bool)
    # Pixels of one candidate at the same position all take the last one's colour, so
    # every write to a position carries the same value and scatter order cannot matter.
    same = flat[:, None] == flat[None, :]
    last = jnp.max(jnp.where(same, jnp.arange(layout.pixels)[None, :], -1), axis=1)
    colors = colors[last]
    return flat, colors, changed


def apply(image: jax.Array, flat: jax.Array, colors: jax.Array, changed: jax.Array):
    """image [H, W, C] with pixels `flat` [k] set to `colors` [k, C] where `changed`."""
    h, w, c = image.shape
    pixels = image.reshape(h * w, c)
    # Unchanged pixels write back their own value (a no-op write keeps shapes static).
    values = jnp.where(changed[:, None], colors.astype(image.dtype), pixels[flat])
    return pixels.at[flat].set(values).reshape(h, w, c)


def _bucket(u: jax.Array, n) -> jax.Array:
    """floor(u * n) for u in [0, 1), clamped so rounding never reaches n."""
    return jnp.clip(jnp.floor(u * n), 0, n - 1).astype(jnp.int32)
