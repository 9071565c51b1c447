"""experiments.corner_maps.regions' controls: random blobs connected, of the asked size, inside
what they may cover and reproducible; the ring and its blob."""

import cv2
import numpy as np
import pytest

from experiments.corner_maps import regions as corner_regions


def _components(mask) -> int:
    count, _ = cv2.connectedComponents(np.asarray(mask, np.uint8), connectivity=4)
    return count - 1  # label 0 is the outside


@pytest.mark.parametrize("size", [1, 2, 17, 200, 640])
def test_a_blob_is_connected_of_its_size_and_inside(size):
    allowed = np.ones((32, 32), bool)
    allowed[6:20, 9:25] = False  # a foreground: the background is a ring around it
    allowed[0, 0] = False
    for seed in range(5):
        b = corner_regions.blob(allowed, size, np.random.default_rng(seed))
        assert b.sum() == size and not (b & ~allowed).any() and _components(b) == 1
    again = corner_regions.blob(allowed, size, np.random.default_rng(4))
    np.testing.assert_array_equal(again, b)  # the same seed, the same blob


def test_a_blob_starts_only_where_it_fits():
    allowed = np.zeros((10, 10), bool)
    allowed[0, :3] = True  # a component of 3 pixels
    allowed[5:, 5:] = True  # one of 25
    starts = set()
    for seed in range(30):
        b = corner_regions.blob(allowed, 5, np.random.default_rng(seed))
        assert b.sum() == 5 and not b[0].any() and _components(b) == 1
        starts.add(tuple(np.flatnonzero(b)))
    assert len(starts) > 10  # random, not one fixed shape
    # No component is large enough: the whole of a largest one.
    np.testing.assert_array_equal(
        corner_regions.blob(allowed, 30, np.random.default_rng(0)), allowed & (np.arange(10) >= 5)
    )
    assert not corner_regions.blob(allowed, 0, np.random.default_rng(0)).any()
    assert not corner_regions.blob(np.zeros((4, 4), bool), 3, np.random.default_rng(0)).any()


def test_the_blob_and_ring_regions():
    rng = np.random.default_rng(0)
    n, h, w = 6, 32, 32
    foreground = np.zeros((n, h, w), bool)
    for k in range(n):  # rectangles of different sizes and places
        i, j = rng.integers(2, 14, 2)
        foreground[k, i : i + 4 + 2 * k, j : j + 6 + k] = True
    index = np.arange(50, 50 + n)
    r = corner_regions.regions(foreground, index, seed=7)
    background_2 = ~corner_regions.dilate(foreground, 2)
    np.testing.assert_array_equal(r["ring"], corner_regions.dilate(foreground, 2) & ~foreground)
    for k in range(n):
        blob, ring_blob = r["background blob"][k], r["ring-sized blob"][k]
        assert blob.sum() == foreground[k].sum() and _components(blob) == 1
        assert not (blob & foreground[k]).any()
        assert ring_blob.sum() == r["ring"][k].sum() and _components(ring_blob) == 1
        assert not (ring_blob & ~background_2[k]).any()
    # Seeded by dataset index, not position; another seed, other blobs.
    again = corner_regions.regions(foreground[2:4], index[2:4], seed=7)
    np.testing.assert_array_equal(again["background blob"], r["background blob"][2:4])
    other = corner_regions.regions(foreground, index, seed=8)
    assert (other["background blob"] != r["background blob"]).any()
    # One region alone (what the DE comparison reads) is the same as among all of them.
    for name in ("background", "ring-sized blob"):
        np.testing.assert_array_equal(corner_regions.region(name, foreground, index, 7), r[name])
    with pytest.raises(ValueError, match="region must be one of .*got 'fg'"):
        corner_regions.region("fg", foreground, index)
