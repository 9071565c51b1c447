"""python -m experiments.gpu_run --smoke: the lent-GPU run's whole path, tiny, on CPU."""

import json
import os
import shutil

import numpy as np
import pytest

from experiments import gpu_run

pytestmark = pytest.mark.slow  # several minutes on the 2-core CPU


def _tiny_shared_data(path: str, train: int = 512, test: int = 200) -> str:
    """../shared/data with its JPEG packs cut to evenly spaced images (the packs are
    sorted by class), decoded by its own decode.py: the smoke's train step, decoding and
    the epoch's evaluation included, took 9.3 s instead of 18.6 s (-n 0, 2026-12-04)."""
    os.makedirs(path)
    for name in ("decode.py", "cifar10-test-first932.npz"):
        shutil.copy(os.path.join(gpu_run.SHARED, name), path)
    for split, count in (("train", train), ("test", test)):
        with np.load(os.path.join(gpu_run.SHARED, f"cifar10-jpeg-{split}.npz")) as d:
            jpeg, offsets, label = d["jpeg"], d["offsets"], d["label"]
        keep = np.linspace(0, len(label) - 1, count).astype(int)
        parts = [jpeg[offsets[i] : offsets[i + 1]] for i in keep]
        np.savez(
            os.path.join(path, f"cifar10-jpeg-{split}.npz"),
            jpeg=np.concatenate(parts),
            offsets=np.cumsum([0] + [len(p) for p in parts]),
            label=label[keep],
        )
    return path


@pytest.mark.skipif(not os.path.isdir(gpu_run.SHARED), reason="no ../shared/data")
def test_the_smoke_run_goes_through_every_step_and_resumes(
    tmp_path, monkeypatch, xla_optimised_level
):
    # Not the corner study's figures (11 s of this run, drawn three times): they are
    # tested in tests/experiments/corner_maps/test_main.py and test_de.py.
    monkeypatch.setattr("experiments.corner_maps.report.figures", lambda *a: [])
    # The corner study's steps (maps, certify, report) at XLA's full optimisation: their
    # scans and bound passes run longer than they compile; the other steps' programs do
    # not. Seconds at level 2 / at the suite's level, two runs each (-n 0, 2026-12-04):
    # train 8.7, 9.2 / 6.5, 8.7; maps 16.7, 16.1 / 16.1, 18.2; de 4.3, 4.1 / 3.0, 3.9;
    # bench 14.4, 12.1 / 10.6, 11.5; certify 15.1, 13.1 / 21.0, 21.9.
    corner_maps = gpu_run.corner_maps

    def corner_maps_optimised(argv):
        with xla_optimised_level():
            return corner_maps(argv)

    monkeypatch.setattr(gpu_run, "corner_maps", corner_maps_optimised)
    workdir, data = str(tmp_path / "w"), str(tmp_path / "data")
    shared = _tiny_shared_data(str(tmp_path / "shared"))
    argv = [f"--workdir={workdir}", f"--data-dir={data}", f"--shared-data={shared}", "--smoke"]
    assert gpu_run.main(argv) == 0
    with open(os.path.join(workdir, "gpu-run.json")) as f:
        log = json.load(f)
    assert list(log) == ["train", "maps", "de", "bench", "certify", "report"]
    assert 0 <= log["train"]["outcome"]["exact_accuracy"] <= 1
    net = os.path.join(workdir, "corner-maps", "compact_fast")
    assert sorted(os.listdir(net)) == ["cert-00000-00001.npz", "maps-00000-00002.npz"]
    report = open(os.path.join(workdir, "corner-maps", "report.md")).read()
    assert "## One pixel of any colour" in report and "## DE at the paper's budget" in report
    bench = sorted(os.listdir(os.path.join(workdir, "gpu-bench")))
    assert bench == [
        "compact_fast-certify_evaluation.txt",
        "compact_fast-incremental_throughput.txt",
    ]
    assert all(v in ("ok", "kept") for v in log["bench"]["outcome"].values())
    # A re-run finds everything done: nothing is scanned, attacked or certified again.
    before = {n: os.path.getmtime(os.path.join(net, n)) for n in os.listdir(net)}
    assert gpu_run.main([*argv, "--steps=maps,de,certify,bench"]) == 0
    assert {n: os.path.getmtime(os.path.join(net, n)) for n in os.listdir(net)} == before
