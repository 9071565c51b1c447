"""experiments.corner_maps.de: DE records of experiments.cifar beside the corner maps of the
same images, checked against a brute-force reading of both; other images refused."""

import json
import os

import numpy as np
import pytest

import train
from experiments import cifar
from experiments.corner_maps import de as corner_de
from experiments.corner_maps import regions as corner_regions
from experiments.corner_maps.__main__ import main
from experiments.corner_maps.batches import BatchFolder
from experiments.store import ResultStore
from rpx import segment
from tests.experiments.tiny import mock_cifar, tiny_predict

MAPPED = 6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Corner maps of the first 6 correct mock images for two nets (the same tiny
    classifier named tiny and twin), and 1-pixel DE (experiments.cifar
    --sample-order=first, the maps' masks) on the first 5 of them, one workdir per net."""
    root = tmp_path_factory.mktemp("runs")
    data = str(root / "mock.npz")
    mock_cifar(data, n=16)
    maps, de, twin = str(root / "maps"), str(root / "de"), str(root / "twin")
    predict = tiny_predict()
    mp = pytest.MonkeyPatch()
    mp.setattr(train, "load_classifier", lambda w: (predict, {"model": "tiny"}))
    # No figures here: test_report_adds_the_de_section_and_figure draws the corner study's
    # (the grid runs' are skipped by tests/experiments/conftest.py's fixture, not yet
    # set up for this module-scoped one).
    mp.setattr("experiments.corner_maps.report.figures", lambda *a: [])
    mp.setattr("experiments.figures.write_figures", lambda *a, **k: [])
    try:
        assert main([f"--data-file={data}", f"--workdir={maps}", "--batch=3",
                                 "--models=tiny=/nowhere,twin=/x", f"--images={MAPPED}",
                                 "--resamples=100"]) == 0  # fmt: skip
        masks = os.path.join(maps, "masks.npz")
        assert cifar.main(_de_argv(data, de, 5, masks)) == 0
        assert cifar.main(_de_argv(data, twin, 5, masks, model="twin")) == 0
    finally:
        mp.undo()
    return data, maps, de, twin


def _de_argv(data, workdir, samples, masks=None, region="all", model="tiny", population=4):
    return [f"--models={model}=/nowhere/{model}", f"--data-file={data}", f"--workdir={workdir}",
            f"--samples={samples}", "--sample-order=first", "--pixels=1", "--attack=untargeted",
            f"--region={region}", f"--population={population}", "--generations=1",
            *([f"--masks={masks}"] if masks else [])]  # fmt: skip


def test_comparison_matches_a_brute_force_reading(runs):
    data, maps_dir, de_dir, _ = runs
    out = corner_de.compare(maps_dir, de_dir, resamples=100)
    assert (out["population"], out["generations"]) == (4, 1)
    got = out["nets"]
    maps = BatchFolder(os.path.join(maps_dir, "tiny")).read()
    with open(os.path.join(maps_dir, "settings.json")) as f:
        cache = segment.MaskCache(os.path.join(maps_dir, "masks.npz"),
                                  segment.GrabCutSettings(), json.load(f)["data"])  # fmt: skip
    records = ResultStore(os.path.join(de_dir, "results.jsonl")).records
    assert set(got) == {"tiny"} and list(got["tiny"]) == list(corner_regions.PAPER_REGIONS)
    for region, c in got["tiny"].items():
        rows = sorted((r for r in records if r["region"] == region), key=lambda r: r["image"])
        assert [r["image"] for r in rows] == maps.index[:5].tolist()  # the first mapped
        fooling, de, at = [], [], 0
        for r in rows:
            n = maps.index.tolist().index(r["image"])
            fg = cache[np.array([r["image"]])][0]
            region_mask = {"original": np.ones_like(fg), "foreground": fg, "background": ~fg}
            here = region_mask[region] & (maps.classes[n] != maps.label[n]).any(-1)
            fooling.append(bool(here.any()))
            de.append(bool(r["success"]))
            if r["success"]:
                y, x = r["positions"][0]
                assert region_mask[region][y, x]  # DE stayed in the region
                at += bool(here[y, x])
        fooling, de = np.array(fooling), np.array(de)
        assert c["images"] == 5
        assert c["de"]["count"] == de.sum() and c["scan"]["count"] == fooling.sum()
        assert c["de"]["estimate"] == pytest.approx(de.mean())
        assert c["de"]["low"] <= c["de"]["estimate"] <= c["de"]["high"]
        assert c["both"] == (de & fooling).sum()
        assert c["missed_by_de"] == (fooling & ~de).sum()
        assert c["de_only"] == (de & ~fooling).sum()
        assert c["de_at_fooling_pixel"] == at
        assert c["de_minus_scan"]["estimate"] == pytest.approx(de.mean() - fooling.mean())
        gens = [r["generations"] for r in rows if r["success"]]
        assert c["generations"]["estimate"] == pytest.approx(np.mean(gens) if gens else np.nan,
                                                             nan_ok=True)  # fmt: skip
    # the check saw successes and misses
    assert sum(c["de"]["count"] for c in got["tiny"].values()) > 0
    assert sum(c["missed_by_de"] for c in got["tiny"].values()) > 0


def test_report_adds_the_de_section_and_figure(runs, tmp_path):
    _, maps_dir, de_dir, twin_dir = runs
    assert main(["--report", f"--workdir={maps_dir}", f"--de={de_dir},{twin_dir}",
                             "--resamples=100"]) == 0  # fmt: skip
    with open(os.path.join(maps_dir, "report.md")) as f:
        text = f.read()
    assert "## DE at the paper's budget on the same images" in text
    assert text.count("| tiny | ") == 3 and text.count("| twin | ") == 3
    with open(os.path.join(maps_dir, "report.json")) as f:
        de = json.load(f)["de"]["nets"]
    assert set(de) == {"tiny", "twin"}
    assert set(de["tiny"]) == set(de["twin"]) == set(corner_regions.PAPER_REGIONS)
    # the same classifier, images and masks: the scan column agrees across the two names
    assert [c["scan"] for c in de["tiny"].values()] == [c["scan"] for c in de["twin"].values()]
    assert "(population 4, 1 generations," in text
    assert os.path.getsize(os.path.join(maps_dir, "figures", "de_vs_scan.png")) > 1000


def test_de_on_other_or_unmapped_images_is_refused(runs, tmp_path, monkeypatch, capsys):
    data, maps_dir, de_dir, _ = runs
    other = str(tmp_path / "other.npz")
    mock_cifar(other, n=16, seed=1)
    monkeypatch.setattr(train, "load_classifier", lambda w: (tiny_predict(), {"model": "t"}))
    assert cifar.main(_de_argv(other, str(tmp_path / "o"), 2, region="original")) == 0
    with pytest.raises(ValueError, match="attacked other images"):
        corner_de.compare(maps_dir, str(tmp_path / "o"))
    masks = os.path.join(maps_dir, "masks.npz")
    more = _de_argv(data, str(tmp_path / "more"), MAPPED + 2, masks, region="original")
    assert cifar.main(more) == 0
    with pytest.raises(ValueError, match="do not cover"):
        corner_de.compare(maps_dir, str(tmp_path / "more"))
    with pytest.raises(ValueError, match=r"\['tiny'\] in more than one workdir"):
        corner_de.compare(maps_dir, [de_dir, de_dir])
    budget = _de_argv(data, str(tmp_path / "big"), 2, masks, "original", "twin", population=6)
    assert cifar.main(budget) == 0
    with pytest.raises(ValueError, match="different DE budgets"):
        corner_de.compare(maps_dir, [de_dir, str(tmp_path / "big")])
    assert main(["--report", f"--workdir={maps_dir}",
                             f"--de={tmp_path / 'none'}"]) == 2  # fmt: skip
    assert "holds no experiments.cifar run" in capsys.readouterr().err


def test_de_of_other_weights_or_other_masks_is_refused(runs, tmp_path, monkeypatch):
    data, maps_dir, de_dir, _ = runs
    other = tiny_predict(seed=5)  # other weights under the same name
    monkeypatch.setattr(train, "load_classifier", lambda w: (other, {"model": "tiny"}))
    assert cifar.main(_de_argv(data, str(tmp_path / "w"), 2, region="original")) == 0
    with pytest.raises(ValueError, match="tiny is .* the corner maps .* have"):
        corner_de.compare(maps_dir, str(tmp_path / "w"))
    # DE that built its own GrabCut masks: accepted while they equal the maps' masks
    own = str(tmp_path / "own")
    monkeypatch.setattr(train, "load_classifier", lambda w: (tiny_predict(), {"model": "t"}))
    assert cifar.main(_de_argv(data, own, 2, region="original")) == 0
    assert corner_de.compare(maps_dir, own, resamples=100)["nets"]["tiny"]["original"]
    cache = segment.MaskCache(os.path.join(own, "masks.npz"))
    segment.save_masks(os.path.join(own, "masks.npz"), ~cache[:], None, cache.settings,
                       data=cache.meta["data"])  # fmt: skip
    with pytest.raises(ValueError, match="masks.npz differs"):
        corner_de.compare(maps_dir, own)


@pytest.mark.parametrize("which", ["maps", "de"])
@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "not a settings file"),
        ('{"models": {}}', "not the settings of this kind of run"),
        ("{", "not a settings file"),
    ],
)
def test_a_broken_settings_json_is_one_line_naming_it(runs, tmp_path, capsys, which, content,
                                                      message):  # fmt: skip
    import shutil

    _, maps_dir, de_dir, _ = runs
    maps = shutil.copytree(maps_dir, str(tmp_path / "maps"))
    de = shutil.copytree(de_dir, str(tmp_path / "de"))
    settings = os.path.join(maps if which == "maps" else de, "settings.json")
    with open(settings, "w") as f:
        f.write(content)
    assert main(["--report", f"--workdir={maps}", f"--de={de}"]) == 2
    err = capsys.readouterr().err
    assert f"{settings} is {message}" in err and err.count("\n") == 1, err
