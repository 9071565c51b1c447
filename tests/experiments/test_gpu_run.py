"""python -m experiments.gpu_run --smoke: the lent-GPU run's whole path, tiny, on CPU."""

import json
import os

import pytest

from experiments import gpu_run

pytestmark = pytest.mark.slow  # several minutes on the 2-core CPU


@pytest.mark.skipif(not os.path.isdir(gpu_run.SHARED), reason="no ../shared/data")
def test_the_smoke_run_goes_through_every_step_and_resumes(tmp_path, monkeypatch):
    # Not the corner study's figures (11 s of this run, drawn three times): they are
    # tested in tests/experiments/corner_maps/test_main.py and test_de.py.
    monkeypatch.setattr("experiments.corner_maps.report.figures", lambda *a: [])
    workdir, data = str(tmp_path / "w"), str(tmp_path / "data")
    argv = [f"--workdir={workdir}", f"--data-dir={data}", "--smoke"]
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
