"""python -m experiments.pixel_maps end to end on made-up data with a tiny model and budget."""

import json
import os

import numpy as np

import train
from experiments import pixel_maps
from tests.experiments.tiny import lock_held_by_another_process, mock_cifar, snapshot, tiny_predict

SAMPLES = 4


def test_pixel_maps_end_to_end(tmp_path, monkeypatch, capsys):
    data = str(tmp_path / "mock.npz")
    mock_cifar(data)
    monkeypatch.setattr(train, "load_classifier", lambda w: (tiny_predict(), {"model": "tiny"}))
    workdir = str(tmp_path / "run")
    argv = [f"--data-file={data}", f"--workdir={workdir}", f"--samples={SAMPLES}",
            "--population=8", "--generations=2", "--model=/nowhere/tiny"]  # fmt: skip
    assert pixel_maps.main(argv) == 0

    with open(os.path.join(workdir, "pixel_maps.json")) as f:
        out = json.load(f)
    s = out["settings"]
    assert s["samples"] == SAMPLES and s["population"] == 8 and s["generations"] == 2
    assert "REDUCED" in s["budget"] and s["scan_evaluations_per_image"] == 32 * 32 * 8
    assert min(s["dataset_indices"]) >= 4  # the first four mock images are mislabelled
    assert set(out["regions"]) == {"original", "foreground", "background"}
    for r in out["regions"].values():
        assert r["images"] == SAMPLES
        assert 0 <= r["missed_by_de"] <= r["scan_vulnerable"] <= SAMPLES
        assert r["scan_vulnerable"] - r["missed_by_de"] + r["de_only"] == r["de_success"]
    # The original region is the union of the two others, so it is vulnerable whenever
    # either is.
    reg = out["regions"]
    union = max(reg["foreground"]["scan_vulnerable"], reg["background"]["scan_vulnerable"])
    assert reg["original"]["scan_vulnerable"] >= union
    for part in ("foreground", "background"):
        share = out["mean_vulnerable_share"][part]
        assert 0.0 <= share <= 1.0
        per_image = out["per_image_share"][part]
        assert len(per_image) == SAMPLES and np.isclose(np.nanmean(per_image), share)
    assert os.path.getsize(os.path.join(workdir, "figures", "heatmaps.png")) > 1000
    printed = capsys.readouterr().out
    assert "| original |" in printed and "REDUCED" in printed


def test_bad_flag_is_a_clear_error(tmp_path, capsys, monkeypatch):
    def load(workdir):
        raise AssertionError("a classifier was loaded before the flags were checked")

    monkeypatch.setattr(train, "load_classifier", load)
    workdir = tmp_path / "w"
    assert pixel_maps.main(["--samples=0", f"--workdir={workdir}"]) == 2
    assert "--samples must be >= 1" in capsys.readouterr().err
    assert pixel_maps.main(["--seed=-1", f"--workdir={workdir}"]) == 2
    assert "--seed must be in [0, 2**32)" in capsys.readouterr().err
    assert pixel_maps.main(["--masks=/no/such.npz", f"--workdir={workdir}"]) == 2
    assert "--masks /no/such.npz does not exist" in capsys.readouterr().err
    assert not workdir.exists()


def test_pixel_maps_workdir_in_use_is_refused(tmp_path, monkeypatch, capsys):
    data = str(tmp_path / "mock.npz")
    mock_cifar(data)
    monkeypatch.setattr(train, "load_classifier", lambda w: (tiny_predict(), {"model": "tiny"}))
    workdir = str(tmp_path / "run")
    argv = [f"--data-file={data}", f"--workdir={workdir}", "--samples=2",
            "--population=4", "--generations=1", "--model=/nowhere/tiny"]  # fmt: skip
    with lock_held_by_another_process(workdir) as pid:
        assert pixel_maps.main(argv) == 2
        assert f"in use by another run (process {pid}" in capsys.readouterr().err
        assert snapshot(workdir) == {"run.lock": f"{pid}\n".encode()}
