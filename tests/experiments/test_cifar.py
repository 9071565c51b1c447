"""python -m experiments.cifar end to end on made-up data with a tiny model and budget."""

import json
import os
import shutil

import numpy as np
import pytest

import train
from experiments import cifar
from experiments.store import record_key
from tests.experiments.tiny import cifar_argv, killed_run, mock_data, run_cifar, tiny_predict

SAMPLES = 5


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return mock_data(tmp_path_factory)


@pytest.fixture
def tiny_classifier(monkeypatch):
    def load(workdir):
        if os.path.basename(workdir) != "tiny":
            raise FileNotFoundError(f"no checkpoints in {workdir}")
        return tiny_predict(), {"model": "tiny", "accuracy": None}

    monkeypatch.setattr(train, "load_classifier", load)


def argv(data_path, workdir, *extra):
    return cifar_argv(
        data_path,
        workdir,
        "--batch-size=16",
        *extra,
        samples=SAMPLES,
        population=8,
        generations=3,
        attack="both",
        region="all",
    )


def read_lines(workdir):
    with open(os.path.join(workdir, "results.jsonl")) as f:
        return [json.loads(line) for line in f]


def key(r):
    return record_key(r)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data):
    """One uninterrupted run (module-scoped: the other tests compare against it)."""
    workdir = str(tmp_path_factory.mktemp("full"))
    assert run_cifar(argv(data[0], workdir)) == 0
    return workdir


def test_full_run_writes_every_row_table_and_figures(full_run, data):
    _, images, labels = data
    lines = read_lines(full_run)
    assert len(lines) == SAMPLES * (1 + 9) * 3
    assert len({key(r) for r in lines}) == len(lines)
    # Only correctly classified images are attacked; the first four are mislabelled.
    picked = {r["image"] for r in lines}
    assert len(picked) == SAMPLES and min(picked) >= 4
    for r in lines:
        assert r["label"] == labels[r["image"]]
        assert r["target"] is None or r["target"] != r["label"]
    assert any(r["success"] for r in lines) and not all(r["success"] for r in lines)
    table = open(os.path.join(full_run, "table.md")).read()
    assert "## Table II" in table and "## Table IV" in table
    assert "| untargeted2 |" in table and "(12.60%)" not in table  # not a paper model
    assert "REDUCED" in table
    assert "| images (untargeted/targeted) | 5/5 | 5/5 | 5/5 |" in table
    figures = sorted(os.listdir(os.path.join(full_run, "figures")))
    assert figures == [
        "examples_tiny.png",
        "fig3_targets_tiny.png",
        "fig4_untargeted_pairs_tiny.png",
        "fig5_targeted_pairs_tiny.png",
        "fig6_fitness_tiny.png",
    ]


def test_interrupted_run_resumes_to_the_same_table(tmp_path, data, full_run, tiny_classifier):
    workdir = str(tmp_path / "resumed")
    killed_run(argv(data[0], workdir), at=4)  # killed between two results
    partial = read_lines(workdir)
    assert 0 < len(partial) < SAMPLES * 30
    with open(os.path.join(workdir, "results.jsonl"), "a") as f:
        f.write('{"model": "tiny", "regi')  # a line cut short by the kill
    assert cifar.main(argv(data[0], workdir)) == 0
    resumed = read_lines(workdir)
    assert resumed[: len(partial)] == partial  # nothing redone or rewritten
    assert len({key(r) for r in resumed}) == len(resumed) == SAMPLES * 30
    full = {key(r): r for r in read_lines(full_run)}
    assert {key(r): r for r in resumed} == full
    table = open(os.path.join(workdir, "table.md")).read()
    assert table == open(os.path.join(full_run, "table.md")).read()
    # A third run has nothing left to do.
    assert cifar.main(argv(data[0], workdir)) == 0
    assert read_lines(workdir) == resumed


def test_moved_workdir_and_data_file_resume_but_other_images_are_refused(
    tmp_path, data, full_run, tiny_classifier, capsys
):
    # The same images at another path, the workdir copied elsewhere: nothing to redo.
    moved, moved_data = str(tmp_path / "moved"), str(tmp_path / "elsewhere.npz")
    shutil.copytree(full_run, moved)
    shutil.copy(data[0], moved_data)
    assert cifar.main(argv(moved_data, moved)) == 0
    assert read_lines(moved) == read_lines(full_run)
    assert "\n0 new results" in capsys.readouterr().out
    # Other images under the same name: the workdir's masks and results are not theirs.
    images, labels = data[1].copy(), data[2]
    images[0, 0, 0] ^= 1
    np.savez(moved_data, image=images, label=labels)
    assert cifar.main(argv(moved_data, moved)) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "'data'" in err


def test_other_settings_in_the_same_workdir_are_refused(data, full_run, tiny_classifier, capsys):
    assert cifar.main(argv(data[0], full_run, "--population=9")) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--region=middle", "--region"),
        ("--pixels=0", "--pixels"),
        ("--pixels=one", "--pixels"),
        ("--attack=all", "--attack"),
        ("--preset=huge", "--preset"),
        ("--samples=0", "--samples"),
        ("--restriction=clip", "--restriction"),
        ("--population=2", "--population"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(tmp_path, data, tiny_classifier, capsys, flag, message):
    assert cifar.main(argv(data[0], str(tmp_path), flag)) == 2
    assert message in capsys.readouterr().err


def test_missing_classifier_says_how_to_train_it(tmp_path, data, capsys):
    args = argv(data[0], str(tmp_path)) + [f"--models=allconv={tmp_path / 'none'}"]
    assert cifar.main(args) == 2
    err = capsys.readouterr().err
    assert "python -m train --model=allconv --dataset=cifar10" in err


def test_missing_data_file_is_a_clear_error(tmp_path, tiny_classifier, capsys):
    assert cifar.main(argv(str(tmp_path / "no.npz"), str(tmp_path))) == 2
    assert "--data-file" in capsys.readouterr().err


def test_demo_preset_is_a_valid_reduced_grid():
    from experiments import cli

    p = cifar.argparse.ArgumentParser()
    cli.add_grid_flags(p, cifar.DEFAULTS)
    args = cli.resolve(p.parse_args(["--preset=demo"]), cifar.PRESETS, cifar.DEFAULTS)
    grid = cli.grid_from(args, "cifar10")
    assert args.data_file.endswith(os.path.join("train", "assets", "cifar10_test_sample100.npz"))
    assert grid.models["compact_fast"].endswith(os.path.join("assets", "cifar10_compact_fast"))
    assert list(grid.models) == ["compact_fast"] and grid.regions == (
        "original",
        "foreground",
        "background",
    )
    assert "REDUCED" in grid.budget_line(paper_samples=500)


def test_masks_flag_reuses_a_cache_of_the_same_images(tmp_path, data, full_run, tiny_classifier,
                                                     capsys):  # fmt: skip
    from rpx import segment

    masks = os.path.join(full_run, "masks.npz")
    workdir = str(tmp_path / "w")
    args = argv(data[0], workdir, f"--masks={masks}", "--region=foreground", "--attack=untargeted")
    assert cifar.main(args) == 0
    assert not os.path.exists(os.path.join(workdir, "masks.npz"))
    # Same images, same masks: the same records as the full run's for that cell.
    full = {key(r): r for r in read_lines(full_run)}
    for r in read_lines(workdir):
        assert full[key(r)] == r
    small = str(tmp_path / "small.npz")
    segment.save_masks(small, np.zeros((3, 32, 32), bool), np.zeros(3, int), {})
    assert cifar.main(argv(data[0], str(tmp_path / "v"), f"--masks={small}")) == 2
    assert "--masks" in capsys.readouterr().err
