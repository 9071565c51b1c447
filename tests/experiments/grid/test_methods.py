"""--search, --init and --targeted-from-scan in `python -m experiments.cifar` (issue 14,
item 4): flags checked first, cells keyed by method with the paper's keys unchanged, scan
rows equal to a brute force over `rpx.pixel_map`'s classes, resume and settings."""

import functools
import json
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rpx
import train
from experiments import cifar
from experiments.grid import methods, scan_targets
from experiments.grid.cells import cell_key, other_classes
from experiments.grid.scan_targets import answers
from experiments.store import record_key
from rpx.pixel_map import corner_colors
from tests.experiments.tiny import (
    cifar_argv,
    killed_run,
    mock_data,
    run_cifar,
    snapshot,
    tiny_predict,
)

METHODS = ["--search=de,sparse_rs", "--init=lhs,scan", "--targeted-from-scan"]
PREDICT = tiny_predict()  # one function for every run: compiled programs are reused


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return mock_data(tmp_path_factory)


argv = functools.partial(
    cifar_argv, samples=3, population=6, generations=2, attack="both", region="original,background"
)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(train, "load_classifier", lambda w: (PREDICT, {"model": "tiny"}))


def lines(workdir):
    with open(os.path.join(workdir, "results.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data):
    """One uninterrupted run of every method, the targeted cells from the scan."""
    workdir = str(tmp_path_factory.mktemp("methods"))
    assert run_cifar(argv(data[0], workdir, *METHODS), PREDICT) == 0
    return workdir


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--search=ga", "--search: ['ga'] not among de, sparse_rs"),
        ("--search=de,de", "--search lists a value twice"),
        ("--init=sobol", "--init: ['sobol'] not among lhs, uniform, scan"),
        ("--search=sparse_rs --init=scan", "--init scan seeds DE: add de to --search"),
        ("--targeted-from-scan --attack=untargeted", "--targeted-from-scan answers targeted"),
        ("--targeted-from-scan --pixels=3", "needs 1 in --pixels"),
        ("--targeted-from-scan --restriction=restore", "--restriction table or both"),
    ],
)
def test_bad_method_flags_fail_before_anything(data, tmp_path, monkeypatch, capsys, flag,
                                               message):  # fmt: skip
    def load(workdir):
        raise AssertionError("a classifier was loaded before the flags were checked")

    monkeypatch.setattr(train, "load_classifier", load)
    workdir = tmp_path / "w"
    assert cifar.main(argv(data[0], workdir, *flag.split())) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not workdir.exists()


def test_the_papers_cell_keys_are_unchanged_and_every_method_has_its_own():
    def old(seed, *cell):  # the key before the method flags existed
        name = "/".join(str(v) for v in cell)
        return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)

    cell = ("m", "background", 1, "table", "targeted")
    data = lambda k: jax.random.key_data(k).tolist()  # noqa: E731
    assert data(cell_key(3, *cell)) == data(old(3, *cell))
    assert data(cell_key(3, *cell, search="de", init="lhs")) == data(old(3, *cell))
    keys = {
        tuple(data(cell_key(3, *cell, **methods_)))
        for methods_ in (
            {},
            dict(search="de", init="scan"),
            dict(search="de", init="uniform"),
            dict(search="sparse_rs", init=None),
        )
    }
    assert len(keys) == 4
    # Record keys: a record without method fields is the paper's method, as before.
    rec = dict(model="m", region="original", pixels=1, restriction="table", attack="untargeted",
               image=7, target=None)  # fmt: skip
    assert record_key(rec) == record_key({**rec, **methods.fields("de", "lhs")})
    assert methods.fields("de", "lhs") == {}
    others = [methods.fields("de", "scan"), methods.fields("sparse_rs", "lhs"),
              methods.fields(*methods.SCAN)]  # fmt: skip
    assert len({record_key(rec)} | {record_key({**rec, **f}) for f in others}) == 4


def test_every_method_has_its_rows_and_the_scan_answers_the_targeted_cells(full_run, data):
    recs = lines(full_run)
    assert len({record_key(r) for r in recs}) == len(recs)
    by = {}
    for r in recs:
        by.setdefault((methods.of(r), r["attack"]), []).append(r)
    # Untargeted: 3 images x 2 regions per method; targeted: only the scan's, 9 targets.
    assert sorted((m, a, len(rs)) for (m, a), rs in by.items()) == sorted([
        (("de", "lhs"), "untargeted", 6),
        (("de", "scan"), "untargeted", 6),
        (("sparse_rs", None), "untargeted", 6),
        (("scan", None), "targeted", 54),
    ])  # fmt: skip
    assert all("search" not in r and "init" not in r for r in by[(("de", "lhs"), "untargeted")])
    table = open(os.path.join(full_run, "table.md")).read()
    assert "### tiny (restriction=table, 3 images" in table
    assert "### tiny (restriction=table, search=scan (targeted 1-pixel rows" in table
    assert "### tiny (restriction=table, search=sparse_rs, 3 images" in table
    assert "### tiny (restriction=table, search=de, init=scan, 3 images" in table
    assert "| tiny (search=sparse_rs) |" in table  # its own Table IV row
    figures = set(os.listdir(os.path.join(full_run, "figures")))
    assert {"fig3_targets_tiny_scan.png", "fig5_targeted_pairs_tiny_scan.png",
            "fig6_fitness_tiny_sparse_rs.png", "examples_tiny_de_scan.png"} <= figures  # fmt: skip
    assert "fig3_targets_tiny.png" not in figures  # DE ran no targeted cell


def test_scan_rows_agree_with_a_brute_force_over_the_pixel_map(full_run, data):
    from rpx import segment

    _, images, labels = data
    recs = [r for r in lines(full_run) if methods.of(r) == methods.SCAN]
    predict = PREDICT
    idx = np.array(sorted({r["image"] for r in recs}))
    masks = os.path.join(full_run, "masks.npz")
    identity = segment.data_identity(images, labels)
    fg = segment.MaskCache(masks, segment.GrabCutSettings(), identity)[idx]
    corners = corner_colors(3)
    hits = 0
    for region_name in ("original", "background"):
        region = rpx.regions.mask(region_name, fg)
        labels = np.asarray(predict(images[idx].astype(np.float32))).argmax(1)
        classes = np.asarray(rpx.pixel_map(predict, images[idx], labels, region).classes)
        for n, image in enumerate(idx):
            for t in range(10):
                if t == labels[n]:
                    continue
                (r,) = [
                    r for r in recs
                    if (r["image"], r["region"], r["target"]) == (image, region_name, t)
                ]  # fmt: skip
                where = [(y, x, c) for y in range(32) for x in range(32) for c in range(8)
                         if region[n, y, x] and classes[n, y, x, c] == t]  # fmt: skip
                assert r["success"] == bool(where)
                assert r["queries"] == 8 * region[n].sum() and r["generations"] == 0
                assert (r["label"], r["pixels"], r["restriction"]) == (labels[n], 1, "table")
                if where:
                    hits += 1
                    y, x, c = where[0]
                    assert r["positions"] == [[y, x]]
                    assert r["colors"] == [corners[c].tolist()]
                    assert r["predicted"] == t  # the adversarial image's class
                else:
                    assert r["positions"] == [[-1, -1]] and r["predicted"] == labels[n]
    assert 0 < hits < len(recs)  # the check saw both outcomes


def test_a_scan_answer_the_model_does_not_confirm_is_a_failure(data, monkeypatch):
    _, images, _ = data
    x = images[4:6]
    clean = np.asarray(PREDICT(x.astype(np.float32)))
    labels = clean.argmax(1)
    region = np.ones((2, 32, 32), bool)
    targets = other_classes(labels, 10)
    truth = scan_targets.records(PREDICT, x, clean, region, targets)
    real = rpx.pixel_map(PREDICT, x, labels, region)
    # a class the model gives nowhere on image 0, claimed by the map at its first pair
    unreached = [t for t in targets[0] if not (np.asarray(real.classes[0]) == t).any()]
    claim = unreached[0]
    fake = np.asarray(real.classes).copy()
    fake[0, 0, 0, 0] = claim
    lie = real.replace(classes=jnp.asarray(fake))
    monkeypatch.setattr(rpx, "pixel_map", lambda *a, **k: lie)
    recs = scan_targets.records(PREDICT, x, clean, region, targets)
    row = list(targets[0]).index(claim)
    assert not recs[row]["success"] and recs[row]["positions"] == [[-1, -1]]
    assert recs[row]["predicted"] == labels[0] and recs[row]["colors"] == [[0.0, 0.0, 0.0]]
    assert [r for i, r in enumerate(recs) if i != row] == [
        r for i, r in enumerate(truth) if i != row
    ]  # every other row as the honest map gives it
    assert sum(r["success"] for r in truth) > 0


def test_answers_on_a_made_up_map():
    classes = np.full((1, 2, 3, 2), -1)
    classes[0, 0, 1] = [4, 2]
    classes[0, 1, 2] = [2, 7]
    region = np.zeros((1, 2, 3), bool)
    region[0, 0, 1] = region[0, 1, 2] = True
    success, positions, corner, queries = answers(classes, region, np.array([[2, 7, 5]]))
    assert success.tolist() == [[True, True, False]]
    assert positions.tolist() == [[[0, 1], [1, 2], [-1, -1]]]
    assert corner.tolist() == [[1, 1, 0]] and queries.tolist() == [4]


def test_interrupted_run_resumes_to_the_same_records_and_table(tmp_path, data, full_run, tiny):
    workdir = str(tmp_path / "resumed")
    killed_run(argv(data[0], workdir, *METHODS), at=5)
    partial = lines(workdir)
    assert 0 < len(partial) < len(lines(full_run))
    assert cifar.main(argv(data[0], workdir, *METHODS)) == 0
    resumed = lines(workdir)
    assert resumed[: len(partial)] == partial
    assert {record_key(r): r for r in resumed} == {record_key(r): r for r in lines(full_run)}
    assert len(resumed) == len(lines(full_run))
    with (
        open(os.path.join(workdir, "table.md")) as a,
        open(os.path.join(full_run, "table.md")) as b,
    ):
        assert a.read() == b.read()


def test_settings_record_the_methods_and_refuse_dropping_the_scan(full_run, data, tiny, capsys):
    settings = json.load(open(os.path.join(full_run, "settings.json")))
    assert settings["search"] == ["de", "sparse_rs"] and settings["init"] == ["lhs", "scan"]
    assert settings["targeted_from_scan"] is True
    before = snapshot(full_run)
    assert cifar.main(argv(data[0], full_run, *METHODS[:2])) == 2  # scan answers kept
    err = capsys.readouterr().err
    assert "other settings" in err and "targeted_from_scan" in err and "'search'" not in err
    assert snapshot(full_run) == {**before, "run.lock": snapshot(full_run)["run.lock"]}


def test_a_workdir_gains_methods_and_keeps_them(tmp_path, data, full_run, tiny, capsys):
    workdir = str(tmp_path / "de-first")
    args = argv(data[0], workdir, "--attack=untargeted", "--region=original")
    assert cifar.main(args) == 0
    de = lines(workdir)
    assert cifar.main([*args, "--search=de,sparse_rs"]) == 0
    both = lines(workdir)
    assert both[: len(de)] == de and len(both) == 2 * len(de)  # DE rows kept, not redone
    assert {methods.of(r) for r in both[len(de) :]} == {("sparse_rs", None)}
    full = {record_key(r): r for r in lines(full_run)}
    assert all(full[record_key(r)] == r for r in both)  # as the run of every method gave them
    settings = json.load(open(os.path.join(workdir, "settings.json")))
    assert (settings["search"], settings["init"]) == (["de", "sparse_rs"], ["lhs"])
    # Back to DE alone: nothing to run, and the workdir still says it holds both.
    capsys.readouterr()
    assert cifar.main(args) == 0
    assert "\n0 new results" in capsys.readouterr().out
    assert json.load(open(os.path.join(workdir, "settings.json"))) == settings
    assert "search=sparse_rs" in open(os.path.join(workdir, "table.md")).read()


def test_a_workdir_from_before_the_flags_resumes_with_the_defaults(tmp_path, data, tiny, capsys):
    workdir = str(tmp_path / "old")
    args = argv(data[0], workdir, "--attack=untargeted", "--region=original")
    assert cifar.main(args) == 0
    path = os.path.join(workdir, "settings.json")
    settings = json.load(open(path))
    assert (settings["search"], settings["init"], settings["targeted_from_scan"]) == (
        ["de"], ["lhs"], False)  # fmt: skip
    for key in ("search", "init", "targeted_from_scan"):  # as written before the flags
        del settings[key]
    with open(path, "w") as f:
        json.dump(settings, f)
    assert all("search" not in r and "init" not in r for r in lines(workdir))
    capsys.readouterr()
    assert cifar.main(args) == 0
    assert "\n0 new results" in capsys.readouterr().out
    assert cifar.main([*args, "--sample-order=first"]) == 2
    assert "other settings" in capsys.readouterr().err
