"""rpx.pixel_map against planted classifiers whose vulnerable pixels and colours are known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rpx
from rpx.pixel_map import corner_colors
from rpx.plots import heatmap_figure, vulnerable_share
from tests.rpx import planted

PATCH = ((2, 5), (3, 6))
ONE_PIXEL = planted.one_pixel_model(PATCH)
CORNERS = corner_colors(3)
# A different planted corner at each vulnerable pixel (-1: none), so a map that mixes up
# pixels, colours or images across chunk boundaries cannot match.
KEY = np.full((8, 8), -1)
# Image boundaries in the numbered triples: (7, 7), every image's last allowed pixel,
# is keyed to the last colour, and (1, 1), image 2's first below, to the first.
KEY[1, 1], KEY[1, 6], KEY[3, 3], KEY[3, 4], KEY[5, 0], KEY[6, 2], KEY[0, 7], KEY[7, 7] = range(8)


def corner_key_predict(images):
    """Class 1 once a keyed pixel is within 50 of its own corner colour, else class 0."""
    wanted = jnp.asarray(CORNERS)[np.maximum(KEY, 0)]  # [H, W, 3]
    distance = jnp.sqrt(jnp.sum((images - wanted) ** 2, axis=-1))
    close = jnp.where(KEY >= 0, jnp.maximum(0.0, 1.0 - distance / 200.0), 0.0)
    z = 20.0 * (close.max((1, 2)) - 0.75)
    return jax.nn.softmax(jnp.stack([jnp.zeros_like(z), z], axis=-1), axis=-1)


def brute_force(predict, images, labels, colors, target=None):
    """fitness, success, class [N, H, W, M] of every (pixel, colour), image by image."""
    n, h, w, c = images.shape
    fit = np.zeros((n, h, w, len(colors)))
    hit = np.zeros((n, h, w, len(colors)), bool)
    classes = np.zeros((n, h, w, len(colors)), np.int64)
    for i in range(n):
        batch = np.repeat(images[i][None].astype(np.float32), h * w * len(colors), axis=0)
        batch = batch.reshape(h, w, len(colors), h, w, c)
        for r in range(h):
            for col in range(w):
                batch[r, col, :, r, col] = colors
        probs = np.asarray(predict(jnp.asarray(batch.reshape(-1, h, w, c))))
        probs = probs.reshape(h, w, len(colors), -1)
        goal = labels[i] if target is None else target[i]
        fit[i] = probs[..., goal]
        top = probs.argmax(-1)
        classes[i] = top
        hit[i] = top != labels[i] if target is None else top == target[i]
    return fit, hit, classes


def test_planted_patch_is_found_exactly_with_red_corner():
    images = planted.grey_images(3)
    result = rpx.pixel_map(ONE_PIXEL, images, np.zeros(3, np.int32))

    patch = planted.patch_mask(8, 8, PATCH)
    np.testing.assert_array_equal(result.fooled, np.broadcast_to(patch, (3, 8, 8)))
    red = np.broadcast_to(np.asarray(planted.RED), (3, 9, 3))
    np.testing.assert_array_equal(np.asarray(result.best_color)[:, patch], red)
    assert result.fitness.dtype == jnp.float32 and result.fitness.shape == (3, 8, 8)
    assert result.best_color.shape == (3, 8, 8, 3)


def test_map_equals_brute_force_and_predict_on_the_modified_image():
    images = planted.grey_images(3, seed=1)
    labels = np.zeros(3, np.int32)
    region = np.ones((3, 8, 8), bool)
    region[1] = False  # empty: nothing evaluated, nothing fooled
    # Image 2's first allowed pixel, (1, 1), is vulnerable to the first colour only: a
    # triple numbered wrongly at an image boundary would miss it.
    region[2, 0], region[2, :, 0] = False, False
    # chunk_size 7 does not divide the (64 + 49) pixels x 8 colours: ragged chunks, tails.
    result = rpx.pixel_map(corner_key_predict, images, labels, region=region, chunk_size=7)

    fooled, fitness = np.asarray(result.fooled), np.asarray(result.fitness)
    best = np.asarray(result.best_color)
    expected = np.broadcast_to(KEY >= 0, (3, 8, 8)) & region
    np.testing.assert_array_equal(fooled, expected)
    np.testing.assert_array_equal(
        best[expected], CORNERS[np.broadcast_to(KEY, (3, 8, 8))[expected]]
    )
    fit, hit, classes = brute_force(corner_key_predict, images, labels, CORNERS)
    np.testing.assert_array_equal(fooled, hit.any(-1) & region)
    # Every (pixel, colour)'s class, -1 outside the region.
    expected_classes = np.where(region[..., None], classes, -1)
    np.testing.assert_array_equal(result.classes, expected_classes)
    assert result.classes.dtype == jnp.int32 and result.classes.shape == (3, 8, 8, 8)
    np.testing.assert_allclose(fitness[region], fit.min(-1)[region], rtol=1e-6)
    assert np.isnan(fitness[~region]).all() and np.isnan(best[~region]).all()
    # The reported colour at each allowed pixel reproduces the reported fitness.
    n, r, c = np.nonzero(region)
    modified = images[n].astype(np.float32)
    modified[np.arange(len(n)), r, c] = best[n, r, c]
    probs = np.asarray(corner_key_predict(jnp.asarray(modified)))
    np.testing.assert_allclose(probs[:, 0], fitness[n, r, c], rtol=1e-6)
    np.testing.assert_array_equal(probs.argmax(-1) != 0, fooled[n, r, c])

    again = rpx.pixel_map(corner_key_predict, images, labels, region=region)  # default chunk
    for x, y in zip(jax.tree.leaves(result), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(x, y)


def test_region_is_respected_and_shared_region_broadcasts():
    images = planted.grey_images(2)
    outside = ~planted.patch_mask(8, 8, PATCH)
    result = rpx.pixel_map(ONE_PIXEL, images, np.zeros(2, np.int32), region=outside)

    assert not np.asarray(result.fooled).any()
    fitness, best = np.asarray(result.fitness), np.asarray(result.best_color)
    assert np.isnan(fitness[:, ~outside]).all() and np.isnan(best[:, ~outside]).all()
    assert np.isfinite(fitness[:, outside]).all() and np.isfinite(best[:, outside]).all()
    clean = np.asarray(ONE_PIXEL(jnp.asarray(images, jnp.float32)))[:, 0]
    np.testing.assert_allclose(fitness[:, outside], np.repeat(clean[:, None], outside.sum(), 1))


def test_targeted_maps_each_target_to_its_colour():
    predict = planted.three_class_model(PATCH)
    images = planted.grey_images(4)
    labels = np.zeros(4, np.int32)
    target = np.array([2, 1, 2, 1], np.int32)
    result = rpx.pixel_map(predict, images, labels, target=target)

    patch = planted.patch_mask(8, 8, PATCH)
    np.testing.assert_array_equal(result.fooled, np.broadcast_to(patch, (4, 8, 8)))
    wanted = np.where(target[:, None] == 2, np.asarray(planted.BLUE), np.asarray(planted.RED))
    for i in range(4):
        np.testing.assert_array_equal(np.asarray(result.best_color)[i][patch], wanted[[i] * 9])
    fit, hit, classes = brute_force(predict, images, labels, CORNERS, target)
    np.testing.assert_allclose(result.fitness, fit.max(-1), rtol=1e-6)  # targeted: maximise
    np.testing.assert_array_equal(result.fooled, hit.any(-1))
    np.testing.assert_array_equal(result.classes, classes)
    # One scan answers every target: class 2 is reachable exactly where blue is tried.
    reachable = (np.asarray(result.classes) == 2).any(-1)
    np.testing.assert_array_equal(reachable, np.broadcast_to(patch, (4, 8, 8)))


def test_a_colour_that_succeeds_beats_a_better_fitness_that_does_not():
    # Black at pixel (1, 1) lowers p[0] to 0.4 but class 0 stays on top; white lowers it
    # only to 0.45 yet makes class 1 win. As in rpx.attack, the success is kept.
    def predict(images):
        black = planted.closeness(images, ((1, 2), (1, 2)), jnp.zeros(3))[:, None]
        white = planted.closeness(images, ((1, 2), (1, 2)), jnp.full(3, 255.0))[:, None]
        clean, a, b = (jnp.array(p) for p in ([0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.45, 0.55, 0]))
        return clean * (1 - black - white) + a * black + b * white

    images = planted.grey_images(1)
    result = rpx.pixel_map(predict, images, np.zeros(1, np.int32))

    assert result.fooled[0, 1, 1] and result.fooled.sum() == 1
    np.testing.assert_allclose(result.fitness[0, 1, 1], 0.45, rtol=1e-6)
    np.testing.assert_array_equal(result.best_color[0, 1, 1], [255.0, 255.0, 255.0])


def test_custom_colours_float_images_and_value_range():
    predict = lambda x: ONE_PIXEL(x * 255.0)  # noqa: E731
    images = planted.grey_images(2, dtype=np.float32) / 255.0
    colors = np.array([[0.5, 0.5, 0.5], [0.95, 0.05, 0.1]], np.float32)  # near red, not a corner
    result = rpx.pixel_map(
        predict, images, np.zeros(2, np.int32), colors=colors, value_range=(0.0, 1.0)
    )

    patch = planted.patch_mask(8, 8, PATCH)
    np.testing.assert_array_equal(result.fooled, np.broadcast_to(patch, (2, 8, 8)))
    np.testing.assert_array_equal(
        np.asarray(result.best_color)[:, patch], np.tile(colors[1], (2, 9, 1))
    )


def test_agrees_with_attack_on_which_images_are_one_pixel_vulnerable():
    images = planted.grey_images(5, seed=3)
    labels = np.zeros(5, np.int32)
    patch = planted.patch_mask(8, 8, PATCH)
    lower = np.zeros((8, 8), bool)
    lower[4:] = True  # holds the patch's last row only
    region = np.stack([np.ones((8, 8), bool), ~patch, patch, lower, np.zeros((8, 8), bool)])
    scan = rpx.pixel_map(ONE_PIXEL, images, labels, region=region)
    result = rpx.attack(
        ONE_PIXEL,
        images,
        labels,
        region=region,
        config=rpx.AttackConfig(population=24, generations=40),
        key=jax.random.key(0),
    )

    vulnerable = np.asarray(scan.fooled).any((1, 2))
    np.testing.assert_array_equal(vulnerable, [True, False, True, True, False])
    np.testing.assert_array_equal(vulnerable, result.success)
    # DE's pixel is one the scan marks as fooled.
    rows, cols = np.asarray(result.positions[:, 0]).T
    hits = np.flatnonzero(result.success)
    assert np.asarray(scan.fooled)[hits, rows[hits], cols[hits]].all()


def test_same_shapes_do_not_retrace():
    traces = []

    def predict(x):
        traces.append(x.shape)
        return ONE_PIXEL(x)

    images = planted.grey_images(2)
    rpx.pixel_map(predict, images, np.zeros(2, np.int32))
    first = len(traces)
    rpx.pixel_map(predict, images + 1, np.zeros(2, np.int32), region=np.ones((8, 8), bool))
    assert first > 0 and len(traces) == first


def test_vulnerable_share_counts_only_scanned_pixels_of_the_mask():
    images = planted.grey_images(2)
    region = np.ones((2, 8, 8), bool)
    region[1, 2:5] = False  # image 1 never scans the patch rows
    scan = rpx.pixel_map(ONE_PIXEL, images, np.zeros(2, np.int32), region=region)
    patch = planted.patch_mask(8, 8, PATCH)

    np.testing.assert_allclose(vulnerable_share(scan, np.ones((8, 8), bool)), [9 / 64, 0.0])
    share = np.asarray(vulnerable_share(scan, patch | np.eye(8, dtype=bool)))
    np.testing.assert_allclose(share[0], 9 / 15)  # the diagonal crosses the patch at (3,3), (4,4)
    np.testing.assert_allclose(share[1], 0.0)  # image 1: the 5 diagonal pixels off rows 2-4
    assert np.isnan(np.asarray(vulnerable_share(scan, np.stack([patch, patch])))[1])
    with pytest.raises(ValueError, match="region"):
        vulnerable_share(scan, np.ones((7, 8), bool))


def test_heatmap_figure_writes_a_png(tmp_path):
    images = planted.grey_images(3)
    scan = rpx.pixel_map(ONE_PIXEL, images, np.zeros(3, np.int32), region=np.ones((8, 8), bool))
    foreground = np.zeros((3, 8, 8), bool)
    foreground[:, 2:6, 2:6] = True
    path = heatmap_figure(images, scan, foreground, str(tmp_path / "maps.png"), columns=2)

    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="pixel_map"):
        heatmap_figure(images[:2], scan, None, str(tmp_path / "bad.png"))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(colors=np.zeros((8,), np.float32)), "colors"),
        (dict(colors=np.zeros((2, 4), np.float32)), "colors"),
        (dict(colors=np.zeros((0, 3), np.float32)), "colors"),
        (dict(colors=np.full((1, 3), 256.0)), "colors"),
        (dict(colors=np.full((1, 3), np.nan)), "colors"),
        (dict(colors=np.full((1, 3), 10.5)), "colors"),  # uint8 images hold whole values
        (dict(chunk_size=0), "chunk_size"),
        (dict(chunk_size=2.5), "chunk_size"),
        (dict(chunk_size=4, batch_size=4), "chunk_size only"),
        (dict(value_range=(1.0, 0.0)), "value_range"),
        (dict(value_range=(0.0, 1.0)), "images"),  # uint8 grey images exceed 1
        (dict(labels=np.array([0, 2])), "labels"),
        (dict(labels=np.zeros(3, np.int32)), "labels"),
        (dict(region=np.ones((7, 8), bool)), "region"),
        (dict(target=np.array([0, 1])), "target"),  # equal to its label
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_argument(kwargs, name):
    args = dict(labels=np.zeros(2, np.int32)) | kwargs
    labels = args.pop("labels")
    with pytest.raises(ValueError, match=name):
        rpx.pixel_map(ONE_PIXEL, planted.grey_images(2), labels, **args)


def test_batch_size_is_a_deprecated_alias_of_chunk_size():
    images, labels = planted.grey_images(2), np.zeros(2, np.int32)
    with pytest.warns(DeprecationWarning, match="chunk_size"):
        old = rpx.pixel_map(ONE_PIXEL, images, labels, batch_size=7)
    new = rpx.pixel_map(ONE_PIXEL, images, labels, chunk_size=7)
    for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new), strict=True):
        np.testing.assert_array_equal(a, b)


def test_pixels_whose_output_is_nan_are_not_fooling():
    # Before: the NaN rows' argmax (0) differed from label 1, so the patch looked fooled.
    predict = planted.nan_model(PATCH)
    images = planted.grey_images(2)
    result = rpx.pixel_map(predict, images, np.ones(2, np.int32))
    assert not np.asarray(result.fooled).any()
    fitness = np.asarray(result.fitness)
    (r0, r1), (c0, c1) = PATCH
    # Patch pixels still have finite colours (all but red): their fitness is finite.
    assert np.isfinite(fitness).all()
    np.testing.assert_allclose(fitness[:, r0:r1, c0:c1], 0.8, rtol=1e-6)


def test_weights_as_an_argument_give_the_closure_map_without_recompiling():
    traces = []

    def predict(params, x):
        traces.append(x.shape)
        return corner_key_predict(x * params)

    images, labels = planted.grey_images(2), np.zeros(2, np.int32)
    one = rpx.pixel_map(predict, images, labels, params=jnp.float32(1.0))
    first = len(traces)
    other = rpx.pixel_map(predict, images, labels, params=jnp.float32(0.5))
    assert len(traces) == first, "new weights traced predict again"
    closure = rpx.pixel_map(corner_key_predict, images, labels)
    for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(closure), strict=True):
        np.testing.assert_array_equal(x, y)
    # Halved inputs reach only the black corner: the weights are really used.
    assert np.asarray(other.fooled).sum() < np.asarray(one.fooled).sum()


def test_incremental_map_equals_the_full_pass_on_a_real_network():
    import os

    import train

    assets = os.path.join(os.path.dirname(os.path.abspath(train.__file__)), "assets")
    predict, _ = train.load_classifier(os.path.join(assets, "cifar10_compact_fast"))
    images = np.load(os.path.join(assets, "cifar10_test_sample100.npz"))["image"][:2]
    labels = np.asarray(predict(jnp.asarray(images, jnp.float32))).argmax(-1).astype(np.int32)
    region = np.zeros((2, 32, 32), bool)
    region[0, :5, :] = True  # borders and corners
    region[1, :, 29:] = True
    maps = {
        evaluation: rpx.pixel_map(predict, images, labels, region, evaluation=evaluation)
        for evaluation in ("incremental", "full")
    }
    a, b = maps["incremental"], maps["full"]
    np.testing.assert_allclose(a.fitness, b.fitness, atol=1e-5)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_array_equal(a.fooled, b.fooled)
    with pytest.raises(ValueError, match="evaluation"):
        rpx.pixel_map(predict, images, labels, evaluation="fast")
