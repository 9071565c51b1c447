"""python -m experiments.corner_maps: resumable scans, the region analysis against brute
force on made-up maps, and bad flags refused before anything is written."""

import itertools
import json
import math
import os

import numpy as np
import pytest

import rpx
import train
from experiments.corner_maps import analysis as corner_analysis
from experiments.corner_maps import exact as corner_exact
from experiments.corner_maps import regions as corner_regions
from experiments.corner_maps import report as corner_report
from experiments.corner_maps import stats as corner_stats
from experiments.corner_maps.__main__ import main
from experiments.corner_maps.batches import BatchFolder, batches_of
from experiments.images import ROOT
from tests.experiments.tiny import lock_held_by_another_process, mock_cifar, snapshot, tiny_predict

K = 10


@pytest.fixture
def mock(tmp_path, monkeypatch):
    """A 12-image mock data file (the first 4 mislabelled) and the tiny classifier."""
    data = str(tmp_path / "mock.npz")
    images, labels = mock_cifar(data, n=12)
    predict = tiny_predict()  # one function for every run: its scan compiles once
    monkeypatch.setattr(train, "load_classifier", lambda w: (predict, {"model": "tiny"}))
    return data, images, labels, predict


def _argv(data, workdir, *extra):
    return [f"--data-file={data}", f"--workdir={workdir}", "--models=tiny=/nowhere",
            "--images=6", "--batch=2", "--resamples=200", *extra]  # fmt: skip


def _counting(monkeypatch, fail_at=None):
    """Count rpx.pixel_map's calls; raise KeyboardInterrupt (a kill) at call `fail_at`."""
    calls, scan = [], rpx.pixel_map

    def counted(predict, images, labels, **kw):
        calls.append(len(images))
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return scan(predict, images, labels, **kw)

    monkeypatch.setattr(rpx, "pixel_map", counted)
    return calls


def _maps(workdir):
    """{batch file: (classes, index, label) bytes} of WORKDIR's tiny classifier."""
    folder = os.path.join(workdir, "tiny")
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("maps-"):
            with np.load(os.path.join(folder, name)) as d:
                out[name] = tuple(d[k].tobytes() for k in ("classes", "index", "label"))
    return out


@pytest.mark.xla_optimised
def test_a_killed_run_resumes_without_redoing_batches(mock, tmp_path, monkeypatch, capsys):
    data, images, labels, predict = mock
    whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
    figures = corner_report.figures
    monkeypatch.setattr(corner_report, "figures", lambda *a: [])  # drawn once, at the end
    calls = _counting(monkeypatch)
    assert main(_argv(data, whole)) == 0
    assert calls == [2, 2, 2]

    calls = _counting(monkeypatch, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        main(_argv(data, resumed))
    assert sorted(os.listdir(os.path.join(resumed, "tiny"))) == [
        "maps-00000-00002.npz",
        "maps-00002-00004.npz",
    ]
    open(os.path.join(resumed, "tiny", ".tmp-cut.npz"), "wb").write(b"PK")  # a cut write
    calls = _counting(monkeypatch)
    assert main(_argv(data, resumed)) == 0
    assert calls == [2]  # only the batch the kill lost
    assert _maps(whole) == _maps(resumed)
    with (
        open(os.path.join(whole, "report.json")) as f,
        open(os.path.join(resumed, "report.json")) as g,
    ):
        a, b = json.load(f)["nets"]["tiny"], json.load(g)["nets"]["tiny"]
    assert a["regions"] == b["regions"] and a["differences"] == b["differences"]
    assert a["dataset_indices"] == list(range(4, 10))  # the first correct ones, in order
    assert a["timing"]["evaluations"] == 6 * 32 * 32 * 8

    # A second run finds nothing to do; --images=8 scans only the two new images.
    calls = _counting(monkeypatch)
    assert main(_argv(data, resumed)) == 0 and calls == []
    monkeypatch.setattr(corner_report, "figures", figures)
    assert main(_argv(data, resumed, "--images=8")) == 0 and calls == [2]
    report = open(os.path.join(resumed, "report.md")).read()
    assert "## tiny: 8 images" in report and "| size-matched background |" in report
    for name in (
        "shares",
        "densities",
        "fig3_targets",
        "fig4_dominant_pairs",
        "fig5_reached_pairs",
    ):
        assert os.path.getsize(os.path.join(resumed, "figures", f"{name}.png")) > 1000
    # Other images in the same workdir are refused, nothing written.
    other = str(tmp_path / "other.npz")
    np.savez(other, image=images[::-1], label=labels[::-1])
    before = snapshot(resumed)
    assert main(_argv(other, resumed)) == 2
    assert "other settings" in capsys.readouterr().err
    assert snapshot(resumed) == before
    # The classes are those of a direct scan of the same images.
    stored = BatchFolder(os.path.join(resumed, "tiny")).read()
    for start in range(0, 8, 2):
        i = slice(4 + start, 6 + start)
        direct = rpx.pixel_map(predict, images[i], labels[i].astype(np.int32))
        np.testing.assert_array_equal(stored.classes[start : start + 2], direct.classes)


def test_bad_flags_exit_2_before_anything_is_written(mock, tmp_path, capsys):
    data, _, _, _ = mock
    workdir = tmp_path / "w"
    bad = {
        "--images=0": "--images must be >= 1",
        "--batch=0": "--batch must be >= 1",
        "--resamples=5": "--resamples must be >= 100",
        "--models=a/b": "--models: 'a/b'",
        "--models=,": "--models must not be empty",
        "--models=figures": "comes twice or is reserved",
        "--data-file=/no/such.npz": "--data-file /no/such.npz does not exist",
    }
    for flag, message in bad.items():
        assert main([f"--data-file={data}", f"--workdir={workdir}", flag]) == 2
        assert message in capsys.readouterr().err, flag
    with pytest.raises(SystemExit) as exit_:  # argparse's own exit for a bad choice
        main([f"--workdir={workdir}", "--evaluation=fast"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert main(["--report", f"--workdir={workdir}"]) == 2
    assert "holds no corner-map run" in capsys.readouterr().err
    assert not workdir.exists()
    with lock_held_by_another_process(str(workdir)) as pid:
        assert main(_argv(data, str(workdir))) == 2
        assert f"in use by another run (process {pid}" in capsys.readouterr().err
        assert snapshot(str(workdir)) == {"run.lock": f"{pid}\n".encode()}


def _brute_force(classes, labels, region):
    """Per image: fooling pixels, reached classes, dominant class, by plain loops."""
    out = []
    for c, y, r in zip(classes, labels, region, strict=True):
        fooling, counts = 0, np.zeros(K, int)
        for (i, j), inside in np.ndenumerate(r):
            if not inside:
                continue
            others = [k for k in c[i, j] if k >= 0 and k != y]
            fooling += bool(others)
            for k in others:
                counts[k] += 1
        reached = {k for k in range(K) if counts[k]}
        out.append((fooling, reached, int(np.argmax(counts)) if reached else -1))
    return out


def test_analysis_matches_brute_force_on_a_synthetic_map():
    rng = np.random.default_rng(1)
    n, h, w = 40, 8, 8
    labels = rng.integers(0, K, n)
    classes = np.broadcast_to(labels[:, None, None, None], (n, h, w, 8)).copy()
    for image in range(n):  # a few fooling (pixel, corner) pairs on most images
        for _ in range(rng.integers(0, 5)):
            classes[image, rng.integers(h), rng.integers(w), rng.integers(8)] = rng.integers(K)
    classes[0, 0, 0, 0] = -1  # a non-finite output is no fooling pixel
    foreground = np.zeros((n, h, w), bool)
    foreground[:, 3:5, 2:6] = True
    index = np.arange(100, 100 + n)
    regions = corner_regions.regions(foreground, index, seed=3)
    assert set(regions) == set(corner_regions.REGIONS)
    boot = corner_stats.resamples(n, 300, seed=0)
    for region in regions.values():
        facts = corner_stats.image_facts(classes, labels, region, K)
        brute = _brute_force(classes, labels, region)
        np.testing.assert_array_equal(facts.fooling_pixels, [b[0] for b in brute])
        np.testing.assert_array_equal(facts.targets, [len(b[1]) for b in brute])
        np.testing.assert_array_equal(facts.dominant, [b[2] for b in brute])
        s = corner_stats.summarise(facts, boot)
        fooled = sum(b[0] > 0 for b in brute)
        assert s["fooled"]["count"] == fooled and s["fooled"]["estimate"] == fooled / n
        assert s["fooled"]["low"] <= fooled / n <= s["fooled"]["high"]
        shares = np.bincount([len(b[1]) for b in brute], minlength=K) / n
        np.testing.assert_allclose(s["targets"]["estimate"], shares)
        assert s["density_pooled"]["estimate"] == pytest.approx(
            sum(b[0] for b in brute) / region.sum()
        )
        fig5 = np.zeros((K, K), int)
        for y, b in zip(labels, brute, strict=True):
            fig5[y, sorted(b[1])] += 1
        np.testing.assert_array_equal(s["reached_pairs"], fig5)
        assert np.sum(s["dominant_pairs"]) == fooled
    # Region sizes: 8 foreground pixels; one dilation adds a ring (4x6), two a 6x8 block.
    sizes = {name: set(r.sum((1, 2)).tolist()) for name, r in regions.items()}
    assert sizes["foreground"] == {8} and sizes["background"] == {56}
    assert sizes["foreground+1"] == {24} and sizes["foreground+2"] == {48}
    assert sizes["background-2"] == {16} and sizes["size-matched background"] == {8}
    control = regions["size-matched background"]
    assert not (control & foreground).any()
    assert len({tuple(np.flatnonzero(c)) for c in control}) > 1  # differs by image
    again = corner_regions.size_matched(foreground[5:7], index[5:7], seed=3)
    np.testing.assert_array_equal(again, control[5:7])  # by dataset index, not position
    assert (regions["centre prior"] == rpx.segment.centre_prior(h, w)).all()
    # A foreground larger than the background: the control takes the whole background.
    big = np.ones((1, h, w), bool)
    big[0, 0, :3] = False
    assert corner_regions.size_matched(big, [0]).sum() == 3


def test_intervals_and_paired_differences():
    labels = np.zeros(50, int)
    classes = np.zeros((50, 4, 4, 8), int)
    classes[:10, 0, 0, 0] = 1  # 10 images fooled at pixel (0, 0) only
    everywhere = np.ones((50, 4, 4), bool)
    corner = np.zeros((50, 4, 4), bool)
    corner[:, 0, 0] = True
    boot = corner_stats.resamples(50, 500, seed=0)
    a = corner_stats.image_facts(classes, labels, everywhere, K)
    b = corner_stats.image_facts(classes, labels, ~corner, K)
    s = corner_stats.summarise(a, boot)
    assert s["fooled"]["estimate"] == 0.2 and s["fooled"]["low"] < 0.2 < s["fooled"]["high"]
    assert s["density_pooled"]["estimate"] == pytest.approx(10 / 800)
    assert s["density_mean"]["estimate"] == pytest.approx(np.mean([1 / 16] * 10 + [0] * 40))
    d = corner_stats.difference(a, b, boot)
    assert d["share"]["estimate"] == pytest.approx(0.2) and d["share"]["low"] > 0
    none = corner_stats.summarise(b, boot)
    # No image fooled: an exact interval, not the bootstrap's point [0, 0].
    assert none["fooled"] == dict(
        count=0, estimate=0.0, low=0.0, high=pytest.approx(1 - 0.025 ** (1 / 50))
    )
    assert (d["share"]["a_only"], d["share"]["b_only"]) == (10, 0)
    assert d["share"]["p"] == pytest.approx(2 / 2**10)  # exact McNemar, 10 vs 0 discordant
    assert corner_stats.summarise(a, boot) == s  # the same resamples give the same intervals


def test_the_primary_comparison_the_holm_family_and_the_scattered_expectations():
    rng = np.random.default_rng(2)
    n, h, w = 30, 6, 6
    labels = np.zeros(n, int)
    classes = np.zeros((n, h, w, 8), int)
    classes[rng.random((n, h, w)) < 0.04, 0] = 1  # scattered fooling pixels
    foreground = np.zeros((n, h, w), bool)
    foreground[:, 1:4, 1:3] = True
    index = np.arange(n)
    regions = corner_regions.regions(foreground, index, seed=0)
    facts = {r: corner_stats.image_facts(classes, labels, m, K) for r, m in regions.items()}
    boot = corner_stats.resamples(n, 200, seed=0)
    diffs = corner_analysis.differences(facts, boot)
    assert list(diffs) == [f"{a} - {b}" for a, b in corner_analysis.DIFFERENCES]
    primary = diffs["foreground - background"]["share"]
    assert primary["primary"] and primary["holm_p"] is None
    secondary = [diffs[f"{a} - {b}"]["share"] for a, b in corner_analysis.SECONDARY]
    assert not any(s["primary"] for s in secondary)
    assert [s["holm_p"] for s in secondary] == corner_exact.holm([s["p"] for s in secondary])
    # The expectation over all size-matched draws, by the binomial coefficients.
    e = corner_analysis.scattered(facts["foreground"], facts["background"], boot)
    chance = []
    for image in range(n):
        fooling = int(facts["background"].fooling_pixels[image])
        size, draws = h * w - 6, 6
        chance.append(1 - math.comb(size - fooling, draws) / math.comb(size, draws))
    assert e["share"]["estimate"] == pytest.approx(np.mean(chance))
    fooled = facts["foreground"].fooled
    assert e["region_minus"]["estimate"] == pytest.approx(np.mean(fooled - np.array(chance)))
    # ... the size-matched background's draws, averaged: about the exact expectation.
    draws = [
        corner_regions.size_matched(foreground, index + 1000 * k, seed=0) for k in range(1, 201)
    ]
    hits = [corner_stats.fooling_pixels(classes, labels, d).any((1, 2)).mean() for d in draws]
    assert np.mean(hits) == pytest.approx(np.mean(chance), abs=0.02)


def test_the_scattered_expectation_against_enumeration_on_a_tiny_mask():
    foreground = np.zeros((1, 3, 3), bool)
    foreground[0, 1, :] = True  # 3 foreground pixels, 6 background ones
    classes = np.zeros((1, 3, 3, 8), int)
    classes[0, 0, 2, 5] = classes[0, 2, 0, 1] = 1  # two background fooling pixels
    classes[0, 1, 1, 0] = 1  # and one in the foreground
    labels = np.zeros(1, int)
    facts = {
        name: corner_stats.image_facts(classes, labels, m, K)
        for name, m in (("fg", foreground), ("bg", ~foreground))
    }
    fooling = corner_stats.fooling_pixels(classes, labels, ~foreground)[0]
    background = list(zip(*np.nonzero(~foreground[0]), strict=True))
    subsets = list(itertools.combinations(background, 3))
    hit = sum(any(fooling[p] for p in s) for s in subsets) / len(subsets)  # 1 - C(4,3)/C(6,3)
    e = corner_analysis.scattered(facts["fg"], facts["bg"], corner_stats.resamples(1, 100))
    assert e["share"]["estimate"] == pytest.approx(hit) == pytest.approx(0.8)
    assert e["region_minus"]["estimate"] == pytest.approx(1 - hit)


def test_batches(tmp_path):
    assert batches_of([0, 1, 2, 5, 6, 9], 2) == [[0, 1], [2], [5, 6], [9]]
    folder = BatchFolder(str(tmp_path))
    for start in (99_996, 100_000):  # positions past 99,999 get longer names, still found
        folder.write(start, np.zeros((4, 2, 2, 8), np.int8), np.arange(4), np.zeros(4),
                     wall_seconds=0.0, cpu_seconds=0.0, evaluations=0)  # fmt: skip
    assert folder.spans() == [(99_996, 100_000), (100_000, 100_004)]


RESULTS = os.path.join(ROOT, "experiments", "results", "corner-maps")


@pytest.mark.skipif(not os.path.isdir(RESULTS), reason="no committed corner maps")
def test_the_committed_maps_give_their_committed_report():
    with open(os.path.join(RESULTS, "report.json")) as f:
        committed = json.load(f)
    # DE beside the maps (its workdirs as given, from the repository root) adds the "de"
    # section; the maps' own numbers do not depend on it, so one analysis checks both.
    repo = os.path.dirname(os.path.dirname(os.path.dirname(RESULTS)))
    de = committed.get("de") and [os.path.join(repo, w) for w in committed["de"]["workdirs"]]
    again = corner_analysis.analyse(RESULTS, committed["resamples"], committed["seed"], de)
    assert again["nets"].keys() == committed["nets"].keys()
    for name, net in committed["nets"].items():
        assert again["nets"][name]["images"] == net["images"]
        for key in ("regions", "differences", "scattered", "short_blobs"):  # NaN == NaN as text
            assert json.dumps(again["nets"][name][key]) == json.dumps(net[key]), (name, key)
    if de:
        assert json.dumps(again["de"]["nets"]) == json.dumps(committed["de"]["nets"])


def _one_batch(tmp_path, **changes):
    """A folder with one batch of 4 images whose arrays are then changed (None: removed)."""
    folder = BatchFolder(str(tmp_path))
    path = folder.write(0, np.zeros((4, 2, 2, 8), np.int8), np.arange(4), np.zeros(4),
                        wall_seconds=0.0, cpu_seconds=0.0, evaluations=0)  # fmt: skip
    with np.load(path) as d:
        arrays = {k: d[k] for k in d.files}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return folder, path


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(index=None), r"not a corner-map batch \(no \['index'\]\)"),
        (dict(label=None, finished=None), r"no \['finished', 'label'\]"),
        (dict(label=np.zeros(3, np.int32)), "holds 3 label rows, not 4: cut short"),
        (dict(index=np.arange(2, dtype=np.int32)), "holds 2 index rows, not 4"),
        (dict(classes=np.zeros((4, 2, 2), np.int8)), "classes is int8"),
        (dict(classes=np.full((4, 2, 2, 8), 0.5)), "classes is float64"),
        (dict(wall_seconds=np.zeros(3)), "wall_seconds is float64"),
        (dict(index=np.array([0, 1, -5, 3], np.int32)), "negative image indices"),
    ],
)
def test_a_broken_batch_file_is_named_and_refused(tmp_path, changes, message):
    folder, path = _one_batch(tmp_path, **changes)
    with pytest.raises(ValueError, match=f"{path} .*{message}"):
        folder.read()


def test_batches_of_other_map_shapes_are_refused(tmp_path):
    folder, _ = _one_batch(tmp_path)
    path = folder.write(4, np.zeros((4, 3, 3, 8), np.int8), np.arange(4, 8), np.zeros(4),
                        wall_seconds=0.0, cpu_seconds=0.0, evaluations=0)  # fmt: skip
    with pytest.raises(ValueError, match=f"{path} holds maps of"):
        folder.read()
