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
    # Colour genes pick a corner of the colour cube: lo below 0.5, hi from 0.5 (sparse_rs).
    corner_colors: bool = False

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
    if layout.corner_colors:
        colors = jnp.where(color_genes < 0.5, lo, hi).astype(jnp.float32)
    elif layout.integer_colors:
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


def search_pixel_count(layout: Layout, count: jax.Array, region: jax.Array) -> jax.Array:
    """int32 []: how many pixels one image's candidates can pick (its region, or the whole
    image under "restore"), from its `Lookup` row's count and region bool [H*W]."""
    if layout.encoding == "rowcol" and not layout.restore:
        return region.sum(dtype=jnp.int32)  # count is H*W for rowcol: the table spans all
    return count


def search_pixel_genes(layout: Layout, m: jax.Array, count: jax.Array, region: jax.Array):
    """Coordinate genes float32 [..., coordinate_genes] that decode to the m-th pixel
    (int [...], in [0, search_pixel_count)) the candidates of one image can pick.

    The pixels are numbered in the lookup's own order (flat: row-major; hilbert: along
    the curve) or, for rowcol, row-major; each gene is the centre of its bucket, so
    `decode` maps it back to exactly that pixel. Searches that enumerate or sample pixels
    (the corner scan, Sparse-RS) use it to stay on decode's one code path.
    """
    if layout.encoding != "rowcol":
        u = (m.astype(jnp.float32) + 0.5) / jnp.maximum(count, 1).astype(jnp.float32)
        return u[..., None]
    if layout.restore:
        flat = m
    else:  # the m-th allowed pixel: the first whose running count of allowed ones exceeds m
        flat = jnp.searchsorted(jnp.cumsum(region, dtype=jnp.int32), m, side="right")
    flat = jnp.minimum(flat, layout.height * layout.width - 1)
    row, col = flat // layout.width, flat % layout.width
    # An allowed pixel is its own nearest allowed pixel, so (row, col) decodes to itself.
    return jnp.stack([(row + 0.5) / layout.height, (col + 0.5) / layout.width], axis=-1).astype(
        jnp.float32
    )


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
