import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpx import encoding


def layout(enc="flat", restore=False, integer=True, pixels=2, value_range=(0.0, 255.0)):
    return encoding.Layout(
        pixels=pixels,
        height=4,
        width=5,
        channels=3,
        encoding=enc,
        restore=restore,
        value_range=value_range,
        integer_colors=integer,
    )


def test_genes_per_pixel():
    assert layout("flat").num_genes == 2 * 4
    assert layout("rowcol").num_genes == 2 * 5


def test_flat_gene_picks_table_entries_and_colours_snap_to_integers():
    region = np.zeros((1, 4, 5), bool)
    region[0, 1, [1, 3]] = True  # flat pixels 6 and 8
    lay = layout("flat")
    lookup = encoding.build_lookup(lay, jnp.asarray(region))
    genes = jnp.array([0.1, 0.0, 0.5, 0.99999, 0.7, 1.0 / 256, 0.999, 0.25])
    flat, colors, changed = encoding.decode(
        lay, genes, lookup.table[0], lookup.count[0], lookup.region[0]
    )
    np.testing.assert_array_equal(flat, [6, 8])
    np.testing.assert_array_equal(colors, [[0, 128, 255], [1, 255, 64]])
    assert changed.all()


def test_rowcol_goes_to_the_nearest_allowed_pixel():
    region = np.zeros((1, 4, 5), bool)
    region[0, 3, 4] = True
    lay = layout("rowcol", pixels=1)
    lookup = encoding.build_lookup(lay, jnp.asarray(region))
    flat, _, _ = encoding.decode(
        lay,
        jnp.array([0.0, 0.0, 0.5, 0.5, 0.5]),
        lookup.table[0],
        lookup.count[0],
        lookup.region[0],
    )
    assert int(flat[0]) == 3 * 5 + 4


def test_restore_searches_everywhere_but_changes_only_the_region():
    region = np.zeros((1, 4, 5), bool)
    region[0, 0, 0] = True
    lay = layout("flat", restore=True)
    lookup = encoding.build_lookup(lay, jnp.asarray(region))
    genes = jnp.array([0.0, 0.9, 0.9, 0.9, 0.5, 0.9, 0.9, 0.9])  # pixel 0 and pixel 10
    flat, colors, changed = encoding.decode(
        lay, genes, lookup.table[0], lookup.count[0], lookup.region[0]
    )
    np.testing.assert_array_equal(flat, [0, 10])
    np.testing.assert_array_equal(changed, [True, False])
    image = jnp.zeros((4, 5, 3), jnp.uint8)
    out = np.asarray(encoding.apply(image, flat, colors, changed))
    assert (out[0, 0] == colors[0]).all() and (out.reshape(20, 3)[1:] == 0).all()


def test_duplicate_positions_apply_the_last_colour_whatever_the_scatter_order():
    lay = layout("flat", pixels=3, integer=False)
    lookup = encoding.build_lookup(lay, jnp.ones((1, 4, 5), bool))
    genes = jnp.array([0.3, 0.1, 0.1, 0.1, 0.3, 0.5, 0.5, 0.5, 0.0, 0.9, 0.9, 0.9])
    flat, colors, changed = encoding.decode(
        lay, genes, lookup.table[0], lookup.count[0], lookup.region[0]
    )
    assert flat[0] == flat[1]
    np.testing.assert_allclose(colors[0], colors[1])
    out = np.asarray(encoding.apply(jnp.zeros((4, 5, 3)), flat, colors, changed))
    np.testing.assert_allclose(out.reshape(20, 3)[flat[0]], 0.5 * 255.0)
    assert (out != 0).any(-1).sum() == 2


@pytest.mark.parametrize("enc", encoding.ENCODINGS)
def test_decoded_pixels_always_lie_in_the_region(enc):
    rng = np.random.default_rng(0)
    region = rng.random((3, 4, 5)) < 0.3
    region[:, 0, 0] = True
    lay = layout(enc, pixels=3)
    lookup = encoding.build_lookup(lay, jnp.asarray(region))
    genes = jax.random.uniform(jax.random.key(0), (3, 500, lay.num_genes))

    def one(genes, n):
        return encoding.decode(lay, genes, lookup.table[n], lookup.count[n], lookup.region[n])

    flat, colors, _ = jax.vmap(jax.vmap(one, (0, None)))(genes, jnp.arange(3))
    flat = np.asarray(flat)
    for n in range(3):
        assert region[n].reshape(-1)[flat[n]].all()
    assert float(colors.min()) >= 0 and float(colors.max()) <= 255


@pytest.mark.parametrize("enc", encoding.ENCODINGS)
@pytest.mark.parametrize("restore", [False, True])
def test_search_pixel_genes_decode_to_every_pickable_pixel_once(enc, restore):
    region = np.random.default_rng(5).random((1, 4, 5)) < 0.4
    lay = layout(enc, restore=restore, pixels=1)
    lookup = encoding.build_lookup(lay, jnp.asarray(region))
    table, count, allowed = lookup.table[0], lookup.count[0], lookup.region[0]
    n = int(encoding.search_pixel_count(lay, count, allowed))
    assert n == (20 if restore else region.sum())
    coord = encoding.search_pixel_genes(lay, jnp.arange(n), count, allowed)
    genes = jnp.concatenate([coord, jnp.zeros((n, 3))], axis=-1)
    flat = jax.vmap(lambda g: encoding.decode(lay, g, table, count, allowed)[0][0])(genes)
    pickable = np.arange(20) if restore else np.flatnonzero(region)
    np.testing.assert_array_equal(np.sort(flat), pickable)
    if enc != "hilbert":  # row-major numbering
        np.testing.assert_array_equal(flat, pickable)


def test_corner_colors_decode_to_lo_below_half_and_hi_from_half():
    lay = dataclasses.replace(layout("flat", integer=False, pixels=1), corner_colors=True)
    region = jnp.ones((1, 4, 5), bool)
    lookup = encoding.build_lookup(lay, region)
    genes = jnp.array([0.3, 0.0, 0.4999, 0.5])
    _, colors, _ = encoding.decode(lay, genes, lookup.table[0], lookup.count[0], lookup.region[0])
    np.testing.assert_array_equal(colors, [[0.0, 0.0, 255.0]])
