import numpy as np
import pytest

from rpx.segment import PATHS, GrabCutSettings, centre_prior, grabcut, path_counts
from rpx.segment.synthetic import iou, planted_discs


def _assert_not_degenerate(masks, min_fraction=0.02):
    fractions = masks.mean(axis=(1, 2))
    assert (fractions >= min_fraction).all(), fractions
    assert (fractions < 1.0).all(), fractions


@pytest.mark.parametrize("contrast", [1.0, 0.5])
def test_planted_discs_easy_iou(contrast):
    images, truth = planted_discs(np.random.default_rng(1), 10, 32, contrast)
    masks, paths = grabcut(images, workers=1, return_paths=True)
    assert masks.shape == truth.shape and masks.dtype == bool
    scores = iou(masks, truth)
    assert scores.min() >= 0.8, scores
    # Easy cases need no retry: the plain rectangle start must work.
    assert path_counts(paths)["rect"] == len(images)


def test_upscaling_rescues_rectangle_grabcut_on_low_contrast():
    # At 32x32 the plain rectangle start collapses on low contrast; 4x upscaling mostly not.
    images, truth = planted_discs(np.random.default_rng(2), 12, 32, 0.15)
    one, four = GrabCutSettings(upscale=1, retry_upscale=1), GrabCutSettings(retry_upscale=4)
    _, paths1 = grabcut(images, one, workers=1, return_paths=True)
    masks4, paths4 = grabcut(images, four, workers=1, return_paths=True)
    assert path_counts(paths1)["rect"] < path_counts(paths4)["rect"]
    assert np.mean(iou(masks4, truth)) >= 0.8


@pytest.mark.parametrize("upscale", [1, 4])
@pytest.mark.parametrize("contrast", [0.1, 0.0])
def test_low_contrast_never_degenerate(contrast, upscale):
    images, _ = planted_discs(np.random.default_rng(3), 6, 32, contrast)
    settings = GrabCutSettings(upscale=upscale, retry_upscale=4)
    masks, paths = grabcut(images, settings, workers=1, return_paths=True)
    _assert_not_degenerate(masks, settings.min_fraction)
    assert sum(path_counts(paths).values()) == len(images)


def test_flat_images_fall_back_to_centre_prior():
    images = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (0, 127, 255)])
    masks, paths = grabcut(images, workers=1, return_paths=True)
    assert path_counts(paths) == {"rect": 0, "rect_upscaled": 0, "retry": 0, "centre_prior": 3}
    expected = centre_prior(32, 32)
    assert (masks == expected).all()
    _assert_not_degenerate(masks)


def test_retry_paths_taken_and_counted():
    # Upscale 1 on low contrast: the rectangle start collapses and the retries must run.
    images, truth = planted_discs(np.random.default_rng(4), 10, 32, 0.15)
    plain = GrabCutSettings(upscale=1, retry_upscale=1)
    _, paths = grabcut(images, plain, workers=1, return_paths=True)
    counts = path_counts(paths)
    assert counts["rect_upscaled"] == 0  # retry_upscale <= upscale: no such step
    assert counts["retry"] + counts["centre_prior"] > 0
    assert set(counts) == set(PATHS) and sum(counts.values()) == len(images)
    escalate = GrabCutSettings(upscale=1, retry_upscale=4)
    masks, paths = grabcut(images, escalate, workers=1, return_paths=True)
    assert path_counts(paths)["rect_upscaled"] > 0
    assert np.mean(iou(masks, truth)) >= 0.8


@pytest.mark.parametrize("shape", [(4, 4), (5, 9), (17, 45), (48, 40)])
def test_other_sizes(shape):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(2, *shape, 3), dtype=np.uint8)
    masks = grabcut(images, GrabCutSettings(upscale=2, retry_upscale=2), workers=1)
    assert masks.shape == (2, *shape) and masks.dtype == bool
    assert masks.any(axis=(1, 2)).all() and (~masks).any(axis=(1, 2)).all()


def test_empty_batch():
    masks = grabcut(np.zeros((0, 32, 32, 3), np.uint8), workers=1)
    assert masks.shape == (0, 32, 32)


def test_deterministic_and_parallel_equals_serial():
    images, _ = planted_discs(np.random.default_rng(6), 12, 32, 0.2)
    serial, paths_serial = grabcut(images, workers=1, return_paths=True)
    again = grabcut(images[::-1], workers=1)[::-1]
    assert (serial == again).all()
    parallel, paths_parallel = grabcut(images, workers=2, chunk_size=4, return_paths=True)
    assert (serial == parallel).all()
    assert (paths_serial == paths_parallel).all()


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 32, 32, 3), np.float32), "images must be uint8"),
        (np.zeros((32, 32, 3), np.uint8), r"images must have shape \[N, H, W, 3\]"),
        (np.zeros((2, 32, 32, 4), np.uint8), r"images must have shape \[N, H, W, 3\]"),
        (np.zeros((2, 3, 32, 3), np.uint8), "images must be at least 4x4"),
    ],
)
def test_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        grabcut(images)


@pytest.mark.parametrize(
    "field, value",
    [
        ("margin", 0.5),
        ("margin", -0.1),
        ("iterations", 0),
        ("upscale", 0),
        ("upscale", 1.5),
        ("retry_upscale", 0),
        ("interpolation", "lanczos"),
        ("min_fraction", 1.0),
        ("max_fill", 0.0),
        ("prior_size", 0.0),
        ("core_size", 1.5),
    ],
)
def test_bad_settings(field, value):
    with pytest.raises(ValueError, match=field):
        GrabCutSettings(**{field: value})


def test_bad_call_arguments():
    images = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="workers"):
        grabcut(images, workers=0)
    with pytest.raises(ValueError, match="chunk_size"):
        grabcut(images, chunk_size=0)
    with pytest.raises(ValueError, match="settings"):
        grabcut(images, settings={"margin": 0.1})
    with pytest.raises(ValueError, match="paths"):
        path_counts([0, 4])
