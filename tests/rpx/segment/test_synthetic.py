import numpy as np
import pytest

from rpx.segment.synthetic import iou, planted_discs


def test_planted_discs_shapes_and_truth():
    images, masks = planted_discs(np.random.default_rng(0), 6, 24, 1.0)
    assert images.shape == (6, 24, 24, 3) and images.dtype == np.uint8
    assert masks.shape == (6, 24, 24) and masks.dtype == bool
    fractions = masks.mean(axis=(1, 2))
    # Radii in [0.18, 0.32] x side: area fractions within pi * [0.18, 0.32]^2.
    assert (fractions > 0.08).all() and (fractions < 0.34).all()
    # High contrast: the disc's mean colour is far from the background's.
    gap = [
        np.linalg.norm(im[m].mean(0) - im[~m].mean(0)) for im, m in zip(images, masks, strict=True)
    ]
    assert min(gap) > 60


def test_iou():
    a = np.zeros((3, 4, 4), bool)
    b = np.zeros((3, 4, 4), bool)
    a[0, :2] = True
    b[0, 1:3] = True  # overlap 1 row of 2 -> 4 / 12
    a[1] = b[1] = True
    np.testing.assert_allclose(iou(a, b), [4 / 12, 1.0, 1.0])  # both empty counts as 1


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(count=0), "count"), (dict(size=7), "size"), (dict(contrast=1.5), "contrast")],
)
def test_bad_arguments(kwargs, match):
    args = dict(count=2, size=32, contrast=0.5) | kwargs
    with pytest.raises(ValueError, match=match):
        planted_discs(np.random.default_rng(0), **args)
    with pytest.raises(ValueError, match="shape"):
        iou(np.zeros((2, 3, 3), bool), np.zeros((2, 3, 4), bool))
