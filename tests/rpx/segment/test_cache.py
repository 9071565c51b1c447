import json
import os

import numpy as np
import pytest

from rpx.segment import GrabCutSettings
from rpx.segment.cache import MaskCache, build_cache, data_identity, save_masks
from rpx.segment.synthetic import planted_discs


def test_round_trip_by_index(tmp_path):
    rng = np.random.default_rng(0)
    masks = rng.random((7, 10, 13)) < 0.4  # width not a multiple of 8: packbits padding
    paths = rng.integers(0, 4, 7).astype(np.int8)
    settings = GrabCutSettings(upscale=2).to_dict()
    path = str(tmp_path / "sub" / "m.npz")
    save_masks(path, masks, paths, settings, dataset="toy", split="test")
    cache = MaskCache(path, settings)
    assert len(cache) == 7 and cache.shape == (7, 10, 13)
    assert (cache[np.arange(7)] == masks).all()
    assert (cache[[5, 1, 1]] == masks[[5, 1, 1]]).all()
    assert cache[3].shape == (10, 13) and (cache[3] == masks[3]).all()
    assert (cache[2:5] == masks[2:5]).all()
    assert (cache.paths == paths).all()
    assert cache.meta["dataset"] == "toy" and cache.settings == settings
    assert sum(cache.path_counts().values()) == 7
    assert not [f for f in os.listdir(tmp_path / "sub") if f != "m.npz"]  # no temp files left


def test_masks_from_elsewhere(tmp_path):
    # e.g. U^2-Net masks: no GrabCut paths, settings of the model recorded.
    masks = np.random.default_rng(3).random((3, 9, 8)) < 0.5
    path = str(tmp_path / "u.npz")
    save_masks(path, masks, None, {"model": "u2netp", "size": 320}, method="u2net")
    cache = MaskCache(path, {"model": "u2netp", "size": 320})
    assert (cache[[2, 0]] == masks[[2, 0]]).all()
    assert (cache.paths == -1).all() and cache.path_counts() == {}
    assert cache.meta["method"] == "u2net"


def test_settings_mismatch_and_bad_input(tmp_path):
    path = str(tmp_path / "m.npz")
    masks = np.zeros((2, 8, 8), bool)
    save_masks(path, masks, np.zeros(2, np.int8), GrabCutSettings().to_dict())
    with pytest.raises(ValueError, match="settings"):
        MaskCache(path, GrabCutSettings(upscale=1))
    cache = MaskCache(path, GrabCutSettings())
    with pytest.raises(ValueError, match="indices"):
        cache[[0, 2]]
    with pytest.raises(ValueError, match="indices"):
        cache[np.array([0.5])]
    with pytest.raises(ValueError, match="path"):
        MaskCache(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="masks"):
        save_masks(path, masks.astype(np.uint8), np.zeros(2), {})
    with pytest.raises(ValueError, match="paths"):
        save_masks(path, masks, np.array([0, 4]), {})
    with pytest.raises(ValueError, match="paths"):
        save_masks(path, masks, np.array([0, -1]), {})
    with pytest.raises(ValueError, match="settings"):
        save_masks(path, masks, np.zeros(2), "upscale=4")


def test_build_cache(tmp_path):
    images, truth = planted_discs(np.random.default_rng(1), 4, 32, 1.0)
    data = data_identity(images, np.zeros(4))
    cache = build_cache(images, str(tmp_path / "c.npz"), workers=1, dataset="planted", data=data)
    assert cache.meta["method"] == "grabcut" and cache.meta["dataset"] == "planted"
    assert cache.meta["data"] == data and MaskCache(cache.path, data=data).shape == (4, 32, 32)
    assert (cache[np.arange(4)] == cache[[0, 1, 2, 3]]).all()
    assert (cache[np.arange(4)] & truth).sum() > 0.8 * truth.sum()


def test_a_cache_is_tied_to_its_images(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2])
    ours = data_identity(images, labels)
    other = images.copy()
    other[2, 7, 7, 2] ^= 1
    assert data_identity(other, labels) != ours != data_identity(images, labels[::-1])
    assert ours.startswith("3 images, sha256 ")
    path = str(tmp_path / "m.npz")
    save_masks(path, np.zeros((3, 8, 8), bool), None, {}, data=ours)
    assert MaskCache(path, data=ours).meta["data"] == ours
    with pytest.raises(ValueError, match="data: .* holds masks of other images"):
        MaskCache(path, data=data_identity(other, labels))
    save_masks(path, np.zeros((3, 8, 8), bool), None, {})  # says nothing of its images
    assert len(MaskCache(path)) == 3
    with pytest.raises(ValueError, match="does not record which images"):
        MaskCache(path, data=ours)
    with open(path, "wb") as f:
        f.write(b"not a zip")
    with pytest.raises(ValueError, match="is not a mask cache"):
        MaskCache(path)


def _rewritten(path, **changes):
    """The cache at `path` rewritten with some arrays (or meta fields, via `meta=`) changed."""
    with np.load(path) as d:
        arrays = {k: d[k] for k in d.files}
    meta = json.loads(str(arrays["meta"]))
    meta.update(changes.pop("meta", {}))
    arrays.update(changes, meta=np.array(json.dumps(meta)))
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(meta=dict(shape=[3, 8, 8])), "meta says 3 masks of 8 x 8"),  # reads past N
        (dict(meta=dict(shape=[2, 8, 13])), "meta says 2 masks of 8 x 13"),  # wrong unpacking
        (dict(meta=dict(shape=[2, 8, 4])), "8 x 4, but they have pixels past column 4"),
        (dict(meta=dict(shape=[10**12, 8, 8])), "meta says 1000000000000 masks"),
        (dict(meta=dict(shape=[2, 8])), r"meta shape \[2, 8\]"),
        (dict(meta=dict(shape=[2, -8, 8])), r"meta shape"),
        (dict(meta=dict(settings="upscale=4")), "settings not a JSON object"),
        (dict(masks=np.zeros((2, 8, 1), np.int64)), "masks must be uint8"),
        (dict(paths=np.zeros(3, np.int8)), "paths must be 2 codes"),
        (dict(paths=np.array([0, 9], np.int8)), "paths must be 2 codes"),
    ],
)
def test_a_cache_whose_meta_disagrees_with_its_arrays_is_refused(tmp_path, changes, message):
    path = str(tmp_path / "m.npz")
    masks = np.ones((2, 8, 8), bool)
    save_masks(path, masks, np.zeros(2, np.int8), GrabCutSettings().to_dict())
    _rewritten(path, **changes)
    with pytest.raises(ValueError, match=f"path: {path} .*{message}"):
        MaskCache(path)
