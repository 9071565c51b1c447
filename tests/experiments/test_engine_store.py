"""experiments.engine (row-indexed attacks) and experiments.store (results.jsonl)."""

import json

import jax
import numpy as np
import pytest

import rpx
from experiments import engine, store
from tests.rpx.planted import grey_images, three_class_model

CONFIG = rpx.AttackConfig(pixels=1, population=8, generations=4)


def collect(*args, **kwargs):
    got = {}

    def callback(rows, partial):
        for i, r in enumerate(rows):
            got[int(r)] = jax.tree.map(lambda a, i=i: np.asarray(a)[i], partial)

    engine.attack_rows(*args, callback=callback, **kwargs)
    return got


def same(a, b):
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(
        jax.tree.leaves(a), jax.tree.leaves(b), strict=True))  # fmt: skip


def test_rows_subset_equals_full_run_and_rpx_attack():
    predict = three_class_model()
    images = grey_images(4)
    labels = np.zeros(4, np.int32)
    targets = np.tile([[1, 2]], (4, 1))
    key = jax.random.key(3)
    full = collect(predict, images, labels, None, targets, config=CONFIG, key=key, batch_size=3)
    assert sorted(full) == list(range(8))
    some = collect(predict, images, labels, None, targets, np.array([6, 1, 5]),
                   config=CONFIG, key=key, batch_size=2)  # fmt: skip
    assert sorted(some) == [1, 5, 6]
    for r in some:
        assert same(some[r], full[r])
    # Row n * T + t is rpx.attack's row of the image-major expansion.
    reference = rpx.attack(predict, images.repeat(2, 0), labels.repeat(2), target=targets.ravel(),
                           config=CONFIG, key=key)  # fmt: skip
    for r in range(8):
        assert same(full[r], jax.tree.map(lambda a, r=r: np.asarray(a)[r], reference))


def test_untargeted_rows_and_bad_rows():
    predict = three_class_model()
    images = grey_images(3)
    labels = np.zeros(3, np.int32)
    region = np.zeros((3, 8, 8), bool)
    region[:, :4] = True
    got = collect(predict, images, labels, region, config=CONFIG, key=jax.random.key(0),
                  batch_size=8)  # fmt: skip
    reference = rpx.attack(predict, images, labels, region, config=CONFIG, key=jax.random.key(0))
    assert sorted(got) == [0, 1, 2]
    for r in range(3):
        assert same(got[r], jax.tree.map(lambda a, r=r: np.asarray(a)[r], reference))
        assert (got[r].positions[:, 0] < 4).all()
    with pytest.raises(ValueError, match="rows"):
        collect(predict, images, labels, None, None, np.array([3]), config=CONFIG,
                key=jax.random.key(0))  # fmt: skip


def rec(image, target=None, **kw):
    base = dict(model="m", region="original", pixels=1, restriction="table")
    return base | {"attack": "untargeted" if target is None else "targeted", "image": image,
                   "target": target} | kw  # fmt: skip


def test_store_appends_once_and_drops_a_cut_line(tmp_path):
    path = str(tmp_path / "r" / "results.jsonl")
    s = store.ResultStore(path)
    assert s.append([rec(0), rec(1), rec(0, success=True)]) == 2
    assert s.append([rec(1), rec(1, target=2)]) == 1
    with open(path, "a") as f:
        f.write('{"model": "m", "ima')
    again = store.ResultStore(path)
    assert len(again) == 3 and store.record_key(rec(1, target=2)) in again
    assert again.append([rec(2)]) == 1
    with open(path) as f:
        lines = [json.loads(line) for line in f]
    assert [r["image"] for r in lines] == [0, 1, 1, 2]


def test_store_refuses_a_corrupt_middle_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"image": 1}\nnot json\n{"image": 2}\n')
    with pytest.raises(ValueError, match=":2"):
        store.ResultStore(str(path))


def test_settings_are_written_then_enforced(tmp_path):
    store.check_settings(str(tmp_path), {"seed": 0, "population": (4, 5)})
    store.check_settings(str(tmp_path), {"seed": 0, "population": (4, 5)})
    with pytest.raises(ValueError, match="seed"):
        store.check_settings(str(tmp_path), {"seed": 1, "population": (4, 5)})
