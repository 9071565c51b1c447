"""experiments.engine (row-indexed attacks) and experiments.store (results.jsonl)."""

import json
import os

import jax
import numpy as np
import pytest

import rpx
from experiments import engine, store
from tests.experiments.tiny import lock_held_by_another_process
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
    base = dict(model="m", region="original", pixels=1, restriction="table", label=0,
                success=False, predicted=0, confidence=0.9, generations=1, queries=8,
                clean_top=[0], clean_top_p=[0.9], adv_top=[0], adv_p_at_clean_top=[0.9],
                positions=[[0, 0]], colors=[[0.0, 0.0, 0.0]])  # fmt: skip
    return base | {"attack": "untargeted" if target is None else "targeted", "image": image,
                   "target": target} | kw  # fmt: skip


def line(record):
    return json.dumps(record) + "\n"


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
    path.write_text(line(rec(1)) + "not json\n" + line(rec(2)))
    with pytest.raises(ValueError, match=":2"):
        store.ResultStore(str(path))


def test_settings_are_written_then_enforced(tmp_path):
    store.check_settings(str(tmp_path), {"seed": 0, "population": (4, 5)})
    store.check_settings(str(tmp_path), {"seed": 0, "population": (4, 5)})
    with pytest.raises(ValueError, match="seed"):
        store.check_settings(str(tmp_path), {"seed": 1, "population": (4, 5)})


def test_lock_is_exclusive_names_its_holder_and_ends_with_it(tmp_path):
    workdir = str(tmp_path / "w")
    with store.locked(workdir):
        lock = os.path.join(workdir, "run.lock")
        assert open(lock).read() == f"{os.getpid()}\n"
        with pytest.raises(ValueError, match=f"in use by another run \\(process {os.getpid()}"):
            with store.locked(workdir):
                pass
        assert open(lock).read() == f"{os.getpid()}\n"  # the refused one changed nothing
    with store.locked(workdir):  # released at the end of the block
        pass
    with lock_held_by_another_process(workdir) as pid:
        with pytest.raises(ValueError, match=f"{workdir} is in use .*process {pid}"):
            with store.locked(workdir):
                pass
    with store.locked(workdir):  # the holder was killed: the kernel released its lock
        pass


@pytest.mark.parametrize(
    "bad",
    ["[1, 2]", "3", '"text"', "null", '{"image": 1}', json.dumps(rec(1) | {"image": "1"}),
     json.dumps({k: v for k, v in rec(1).items() if k != "success"})],
)  # fmt: skip
def test_a_record_of_another_shape_is_refused_and_the_file_kept(tmp_path, bad):
    path = tmp_path / "results.jsonl"
    text = line(rec(0)) + bad + "\n" + line(rec(2)) + '{"model": "m", "ima'
    path.write_text(text)
    with pytest.raises(ValueError, match=f"{path}:2: not a result record"):
        store.ResultStore(str(path))
    assert path.read_text() == text


def test_opening_writes_nothing_and_a_whole_last_record_is_kept(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(line(rec(0)) + '{"model": "m", "ima')
    s = store.ResultStore(str(path))
    assert len(s) == 1 and path.read_text().endswith('"ima')  # cut on the first append only
    s.append([rec(1)])
    assert path.read_text() == line(rec(0)) + json.dumps(rec(1), separators=(",", ":")) + "\n"
    path.write_text(line(rec(0)) + json.dumps(rec(1)))  # no final newline, yet whole
    s = store.ResultStore(str(path))
    assert len(s) == 2 and s.append([rec(1), rec(2)]) == 1
    assert [json.loads(x)["image"] for x in path.read_text().splitlines()] == [0, 1, 2]


def test_settings_keep_each_models_identity(tmp_path):
    workdir = str(tmp_path)
    store.check_settings(workdir, {"seed": 0}, {"a": "digest 1"})
    store.check_settings(workdir, {"seed": 0}, {"a": "digest 1"})
    store.check_settings(workdir, {"seed": 0}, {"b": "digest 2"})  # a new name is added
    saved = json.load(open(tmp_path / "settings.json"))
    assert saved == {"seed": 0, "models": {"a": "digest 1", "b": "digest 2"}}
    with pytest.raises(ValueError, match="another classifier named 'a'.*digest 1.*digest 3"):
        store.check_settings(workdir, {"seed": 0}, {"a": "digest 3", "c": "digest 4"})
    assert json.load(open(tmp_path / "settings.json")) == saved
    with pytest.raises(ValueError, match="other settings"):
        store.check_settings(workdir, {"seed": 1}, {"a": "digest 1"})
    (tmp_path / "settings.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a settings file"):
        store.check_settings(workdir, {"seed": 0})
    (tmp_path / "settings.json").write_text("{")
    with pytest.raises(ValueError, match="not a settings file"):
        store.check_settings(workdir, {"seed": 0})
