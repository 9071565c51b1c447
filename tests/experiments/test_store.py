"""experiments.store: results.jsonl, settings.json and the workdir lock."""

import json
import os

import pytest

from experiments import store
from tests.experiments.tiny import lock_held_by_another_process


def rec(image, target=None, **kw):
    base = dict(model="m", region="original", pixels=1, restriction="table", label=0,
                success=False, predicted=0, confidence=0.9, generations=1, queries=8,
                clean_top=[0], clean_top_p=[0.9], adv_top=[0], adv_p_at_clean_top=[0.9],
                positions=[[0, 0]], colors=[[0.0, 0.0, 0.0]])  # fmt: skip
    curve = {} if target is not None else {"fitness_curve": [0.9, 0.9]}
    return base | curve | {"attack": "untargeted" if target is None else "targeted",
                           "image": image, "target": target} | kw  # fmt: skip


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


def test_settings_that_grow_take_the_union_and_the_rest_stay_enforced(tmp_path):
    workdir, grows = str(tmp_path), ("search",)
    store.check_settings(workdir, {"seed": 0, "search": ["de"]}, grows=grows)
    store.check_settings(workdir, {"seed": 0, "search": ["sparse_rs", "de"]}, grows=grows)
    saved = json.load(open(tmp_path / "settings.json"))
    assert saved["search"] == ["de", "sparse_rs"]  # recorded order, then the new item
    store.check_settings(workdir, {"seed": 0, "search": ["sparse_rs"]}, grows=grows)
    assert json.load(open(tmp_path / "settings.json")) == saved  # a subset changes nothing
    with pytest.raises(ValueError, match="other settings") as err:
        store.check_settings(workdir, {"seed": 1, "search": ["ga"]}, grows=grows)
    assert "seed" in str(err.value) and "search" not in str(err.value)
    with pytest.raises(ValueError, match="search"):  # not named in grows: enforced
        store.check_settings(workdir, {"seed": 0, "search": ["de"]})
    assert json.load(open(tmp_path / "settings.json")) == saved


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
