"""Experiment workdirs (issue 12, items 8-12) through `python -m experiments.cifar`: one
writer at a time, classifiers and mask caches named by content, every flag checked before
anything is written, and one clear line instead of a traceback for bad input."""

import functools
import json
import os
import shutil

import numpy as np
import pytest

import train
from experiments import cifar, classifiers
from rpx import segment
from tests.experiments.tiny import (
    cifar_argv,
    lock_held_by_another_process,
    mock_cifar,
    mock_data,
    run_cifar,
    snapshot,
    tiny_predict,
)
from tests.train.test_checkpoint_errors import SHIPPED as COMPACT
from tests.train.test_checkpoint_errors import broken_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return mock_data(tmp_path_factory)


argv = functools.partial(
    cifar_argv, samples=2, population=4, generations=1, attack="untargeted", region="original"
)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(train, "load_classifier", lambda w: (tiny_predict(), {"model": "tiny"}))


@pytest.fixture
def no_loading(monkeypatch):
    """A run that gets as far as loading a classifier fails the test."""

    def load(workdir):
        raise AssertionError("a classifier was loaded before the flags were checked")

    monkeypatch.setattr(train, "load_classifier", load)


@pytest.fixture(scope="module")
def done(tmp_path_factory, data):
    """A finished small run: workdir with results, settings, masks and figures."""
    workdir = str(tmp_path_factory.mktemp("done") / "w")
    assert run_cifar(argv(data[0], workdir)) == 0
    return workdir


@pytest.fixture
def copy(done, tmp_path):
    """A copy of the finished run to change."""
    return shutil.copytree(done, str(tmp_path / "copy"))


# Item 8: one writer per workdir.


def test_a_workdir_in_use_is_refused_and_left_as_it_is(data, copy, tiny, capsys):
    before = snapshot(copy)
    with lock_held_by_another_process(copy) as pid:
        assert cifar.main(argv(data[0], copy)) == 2
        err = capsys.readouterr().err
        assert f"--workdir {copy} is in use by another run (process {pid}" in err
        assert err.count("\n") == 1
        assert snapshot(copy) == {**before, "run.lock": f"{pid}\n".encode()}
    # The holder died: its lock went with it, and the workdir resumes (nothing to do).
    assert cifar.main(argv(data[0], copy)) == 0
    assert "\n0 new results" in capsys.readouterr().out


def test_a_new_workdir_in_use_gets_no_masks(data, tmp_path, tiny, capsys):
    workdir = str(tmp_path / "new")
    with lock_held_by_another_process(workdir) as pid:
        assert cifar.main(argv(data[0], workdir)) == 2
        assert f"process {pid}" in capsys.readouterr().err
        assert snapshot(workdir) == {"run.lock": f"{pid}\n".encode()}


# Item 9: a classifier is named by its parameters.


def test_another_classifier_under_a_recorded_name_is_refused(data, copy, monkeypatch, capsys):
    settings = json.load(open(os.path.join(copy, "settings.json")))
    assert settings["models"] == {"tiny": classifiers.identity(tiny_predict(), (32, 32, 3))[1]}
    before = snapshot(copy)
    other = tiny_predict(seed=1)
    monkeypatch.setattr(train, "load_classifier", lambda w: (other, {"model": "tiny"}))
    assert cifar.main(argv(data[0], copy)) == 2
    err = capsys.readouterr().err
    assert "another classifier named 'tiny'" in err and err.count("\n") == 1
    assert snapshot(copy) == {**before, "run.lock": snapshot(copy)["run.lock"]}


def test_classifier_identity_is_the_parameters():
    shape = (32, 32, 3)
    k, a = classifiers.identity(tiny_predict(), shape)
    assert k == 10 and a == classifiers.identity(tiny_predict(), shape)[1]
    assert a != classifiers.identity(tiny_predict(seed=1), shape)[1]
    assert a != classifiers.identity(tiny_predict(scale=5.0), shape)[1]
    # A shipped checkpoint: the same digest from two loads, a different one from another net.
    one = classifiers.identity(train.load_classifier(COMPACT)[0], shape)
    assert one == classifiers.identity(train.load_classifier(COMPACT)[0], shape)
    assert one[0] == 10 and one[1] != a


# Item 10: mask caches are tied to their images.


def test_masks_of_other_images_are_refused(data, tmp_path, tiny, capsys):
    _, images, labels = data
    other = images.copy()
    other[0, 0, 0] ^= 1
    masks = np.zeros((len(images), 32, 32), bool)
    stale = str(tmp_path / "stale.npz")
    segment.save_masks(stale, masks, None, {}, data=segment.cache.data_identity(other, labels))
    workdir = tmp_path / "w"
    assert cifar.main(argv(data[0], workdir, f"--masks={stale}")) == 2
    err = capsys.readouterr().err
    assert f"--masks {stale}" in err and "masks of other images" in err
    unnamed = str(tmp_path / "unnamed.npz")  # a cache that does not say whose masks it holds
    segment.save_masks(unnamed, masks, None, {})
    assert cifar.main(argv(data[0], workdir, f"--masks={unnamed}")) == 2
    assert "does not record which images" in capsys.readouterr().err
    assert not workdir.exists()
    ours = str(tmp_path / "ours.npz")
    segment.save_masks(ours, masks, None, {}, data=segment.cache.data_identity(images, labels))
    assert cifar.main(argv(data[0], workdir, f"--masks={ours}")) == 0


# Item 11: every flag is checked before anything is written or loaded.


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--seed=-1", "--seed must be in [0, 2**32), got -1"),
        ("--seed=4294967296", "--seed must be in [0, 2**32)"),
        ("--restriction=all", "--restriction must be table, restore or both, got 'all'"),
        ("--restriction=clip", "--restriction must be table, restore or both, got 'clip'"),
        ("--models==x", "--models: '' is empty"),
        ("--models=a/b=x", "holds '/'"),
        ("--masks=/no/such.npz", "--masks /no/such.npz does not exist"),
        ("--data-file=/no/such.npz", "--data-file /no/such.npz does not exist"),
        ("--region=middle", "--region"),
        ("--pixels=0", "--pixels"),
        ("--attack=all", "--attack must be untargeted, targeted or both"),
        ("--samples=0", "--samples"),
        ("--population=2", "--population"),
        ("--generations=0", "--generations"),
        ("--batch-size=0", "--batch-size"),
        ("--preset=huge", "--preset"),
    ],
)
def test_bad_flags_fail_before_anything_is_loaded_or_written(
    data, tmp_path, no_loading, capsys, flag, message
):
    workdir = tmp_path / "w"
    assert cifar.main(argv(data[0], workdir, flag)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not workdir.exists()


def test_the_corrected_command_then_runs(data, tmp_path, tiny, capsys):
    workdir = tmp_path / "w"
    assert cifar.main(argv(data[0], workdir, "--seed=-1")) == 2
    assert not workdir.exists()
    assert cifar.main(argv(data[0], workdir, "--seed=0")) == 0


# Item 12: one clear line, exit 2 and nothing lost.


def test_a_data_file_without_labels_or_not_an_npz(data, tmp_path, no_loading, capsys):
    images = data[1]
    np.savez(tmp_path / "nolabel.npz", image=images)
    assert cifar.main(argv(str(tmp_path / "nolabel.npz"), tmp_path / "w")) == 2
    err = capsys.readouterr().err
    assert "missing key(s) ['label']" in err and err.count("\n") == 1
    (tmp_path / "text.npz").write_text("not an npz")
    assert cifar.main(argv(str(tmp_path / "text.npz"), tmp_path / "w")) == 2
    err = capsys.readouterr().err
    assert "is not a readable .npz file" in err and err.count("\n") == 1
    np.save(tmp_path / "array.npy", images)
    assert cifar.main(argv(str(tmp_path / "array.npy"), tmp_path / "w")) == 2
    assert "is not a readable .npz file" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("how", ["truncated", "not_a_checkpoint"])
def test_a_broken_checkpoint(data, tmp_path, capsys, how):
    ckpt = broken_checkpoint(str(tmp_path), how)
    args = argv(data[0], tmp_path / "w") + [f"--models=compact={ckpt}"]
    assert cifar.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: classifier 'compact': workdir '{ckpt}': the checkpoint")
    assert "cannot be read" in err and err.count("\n") == 1
    assert not (tmp_path / "w").exists()


def test_a_workdir_that_cannot_be_written(data, tmp_path, tiny, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    assert cifar.main(argv(data[0], tmp_path / "file" / "w")) == 2
    err = capsys.readouterr().err
    assert f"cannot write to --workdir {tmp_path / 'file' / 'w'}" in err and err.count("\n") == 1
    # A read-only folder (as root ignores permissions, the refusal is simulated).
    real_open = os.open

    def read_only(path, flags, *args, **kw):
        if str(path).startswith(str(tmp_path / "ro")) and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kw)

    os.makedirs(tmp_path / "ro")
    monkeypatch.setattr(os, "open", read_only)
    assert cifar.main(argv(data[0], tmp_path / "ro")) == 2
    err = capsys.readouterr().err
    assert f"cannot write to --workdir {tmp_path / 'ro'}: Permission denied" in err
    assert os.listdir(tmp_path / "ro") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_workdir(data, copy, tiny, capsys):
    before = snapshot(copy)
    os.chmod(copy, 0o555)
    try:
        assert cifar.main(argv(data[0], copy)) == 2
    finally:
        os.chmod(copy, 0o755)
    assert "cannot write to --workdir" in capsys.readouterr().err
    assert snapshot(copy) == before


def test_results_that_cannot_be_read_are_an_error_not_a_traceback(data, copy, tiny, capsys):
    results = os.path.join(copy, "results.jsonl")
    os.remove(results)
    os.mkdir(results)
    assert cifar.main(argv(data[0], copy)) == 2
    err = capsys.readouterr().err
    assert "Is a directory" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "bad", ["[1, 2]", '{"model": "tiny", "image": 3}', '"text"', "null", "not json"]
)
def test_a_malformed_results_line_is_refused_and_the_file_kept(data, copy, tiny, capsys, bad):
    results = os.path.join(copy, "results.jsonl")
    lines = open(results).read().splitlines(keepends=True)
    assert len(lines) == 2
    # A bad line between two good ones, and a line cut short by a kill at the end.
    with open(results, "w") as f:
        f.write(lines[0] + bad + "\n" + lines[1] + lines[1][:20])
    before = snapshot(copy)
    assert cifar.main(argv(data[0], copy, "--samples=3")) == 2
    err = capsys.readouterr().err
    assert f"{results}:2: not a result record" in err and err.count("\n") == 1
    assert snapshot(copy) == {**before, "run.lock": snapshot(copy)["run.lock"]}


def test_labels_outside_the_classifiers_classes(tmp_path, tiny, capsys):
    images, labels = mock_cifar(str(tmp_path / "d.npz"))
    labels = labels.astype(np.int64)
    labels[-3:] += 10
    np.savez(tmp_path / "d.npz", image=images, label=labels)
    assert cifar.main(argv(str(tmp_path / "d.npz"), tmp_path / "w")) == 2
    err = capsys.readouterr().err
    assert "labels in [0, " in err and "outside the 10 classes [0, 9] of classifier 'tiny'" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "w").exists()


# Issue 22 item 4: every record is checked against the workdir (data, classifier, settings).

EDITS = {
    "image past the data": (dict(image=10**6), "field 'image' holds 1000000: not an index"),
    "negative image": (dict(image=-1), "field 'image' holds -1: not an index"),
    "label past the classes": (dict(label=10), "field 'label' holds 10: not a class index"),
    "predicted past the classes": (dict(predicted=12), "field 'predicted'"),
    "top class past the classes": (dict(adv_top=[0, 99]), "field 'adv_top'"),
    "position outside the image": (dict(positions=[[32, 0]]), "inside 32 x 32 images"),
    "position not a pair": (dict(positions=[[1, 2, 3]]), "field 'positions'"),
    "two positions for one pixel": (dict(positions=[[1, 2], [3, 4]]), "field 'positions'"),
    "colour not a number": (dict(colors=[["red", 0, 0]]), "field 'colors'"),
    "model not in settings.json": (dict(model="other"), "not among the classifiers"),
    "num_classes of another model": (dict(num_classes=1000), "field 'num_classes'"),
    "fitness curve of text": (dict(fitness_curve=["low"]), "field 'fitness_curve'"),
    "empty fitness curve": (dict(fitness_curve=[]), "field 'fitness_curve'"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_record_outside_the_workdir_is_refused_naming_its_line(data, copy, tiny, capsys, edit):
    changes, message = EDITS[edit]
    results = os.path.join(copy, "results.jsonl")
    lines = open(results).read().splitlines(keepends=True)
    with open(results, "w") as f:
        f.write(lines[0] + json.dumps({**json.loads(lines[1]), **changes}) + "\n")
    before = snapshot(copy)
    assert cifar.main(argv(data[0], copy, "--samples=3")) == 2
    err = capsys.readouterr().err
    assert f"{results}:2: not a result record" in err and message in err, err
    assert err.count("\n") == 1
    assert snapshot(copy) == {**before, "run.lock": snapshot(copy)["run.lock"]}


def test_two_lines_of_one_attack_with_other_content_are_refused(data, copy, tiny, capsys):
    results = os.path.join(copy, "results.jsonl")
    lines = open(results).read().splitlines(keepends=True)
    other = json.dumps({**json.loads(lines[0]), "success": not json.loads(lines[0])["success"]})
    with open(results, "w") as f:
        f.write(lines[0] + lines[1] + lines[0] + other + "\n")  # a repeat is harmless
    before = snapshot(copy)
    assert cifar.main(argv(data[0], copy, "--samples=3")) == 2
    err = capsys.readouterr().err
    assert f"{results}:4: the attack of line 1 again with other content" in err, err
    assert err.count("\n") == 1
    assert snapshot(copy) == {**before, "run.lock": snapshot(copy)["run.lock"]}


# Issue 22 item 7: data that is not the classifier's is refused before the workdir is made.


def test_data_of_another_image_size_is_refused(data, tmp_path, capsys):
    # The shipped 32 x 32 net pools globally, so it would run on 16 x 16 images.
    small = tmp_path / "small.npz"
    np.savez(small, image=data[1][:, ::2, ::2], label=data[2])
    args = argv(str(small), tmp_path / "w") + [f"--models=compact={COMPACT}"]
    assert cifar.main(args) == 2
    err = capsys.readouterr().err
    assert "was trained on 32 x 32 images, but the data's are 16 x 16" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "w").exists()


def test_an_empty_data_file_is_refused_and_the_right_data_then_runs(data, tmp_path, tiny, capsys):
    empty = tmp_path / "empty.npz"
    np.savez(empty, image=np.zeros((0, 32, 32, 3), np.uint8), label=np.zeros(0, np.uint8))
    assert cifar.main(argv(str(empty), tmp_path / "w")) == 2
    err = capsys.readouterr().err
    assert f"--data-file {empty}: holds no images" in err and err.count("\n") == 1
    assert not (tmp_path / "w").exists()
    assert cifar.main(argv(data[0], tmp_path / "w")) == 0


def test_data_no_image_of_which_is_classified_right_leaves_no_workdir(tmp_path, tiny, capsys):
    images, labels = mock_cifar(str(tmp_path / "d.npz"))
    predicted = np.asarray(tiny_predict()(images.astype(np.float32))).argmax(1)
    np.savez(tmp_path / "d.npz", image=images, label=((predicted + 1) % 10).astype(np.uint8))
    assert cifar.main(argv(str(tmp_path / "d.npz"), tmp_path / "w")) == 2
    err = capsys.readouterr().err
    assert "classifier 'tiny' on" in err and "no image is classified correctly" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("masks_shape", [(24, 16, 16), (20, 32, 32)], ids=["size", "count"])
def test_masks_of_another_shape_claiming_these_images_are_refused(
    data, tmp_path, tiny, capsys, masks_shape
):
    _, images, labels = data
    liar = str(tmp_path / "liar.npz")  # records these images' identity over other masks
    segment.save_masks(liar, np.zeros(masks_shape, bool), None, {},
                       data=segment.cache.data_identity(images, labels))  # fmt: skip
    assert cifar.main(argv(data[0], tmp_path / "w", f"--masks={liar}")) == 2
    err = capsys.readouterr().err
    assert f"--masks {liar}: holds masks [N, H, W] = {masks_shape}, the images are" in err
    assert err.count("\n") == 1 and not (tmp_path / "w").exists()
