"""Train step, training loop, checkpoints, resume, load_classifier, command line."""

import dataclasses
import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tests.train.tiny  # noqa: F401  (registers the "tiny" model)
import train
from train import checkpoint, loop, models
from train.__main__ import main
from train.evaluate import main as evaluate_main
from train.state import Hyper, create_state, optimizer, train_step

ASSETS = os.path.join(os.path.dirname(train.__file__), "assets")


def _separable(n, seed=0):
    """Dark images are class 0, bright ones class 1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.uint8)
    base = np.where(labels[:, None, None, None] == 1, 170, 60)
    images = np.clip(base + rng.integers(-40, 40, (n, 8, 8, 3)), 0, 255).astype(np.uint8)
    return images, labels


def _write_data(tmp_path, n_train=64, n_test=32):
    images, labels = _separable(n_train + n_test)
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    np.savez(d / "toy-train.npz", image=images[:n_train], label=labels[:n_train])
    np.savez(d / "toy-test.npz", image=images[n_train:], label=labels[n_train:])
    return str(d)


def _config(tmp_path, workdir="run", **kw):
    # 32 steps: enough for BatchNorm's running averages (momentum 0.9) to settle.
    kw = {"epochs": 4, "batch_size": 8, "eval_batch_size": 16, "warmup_epochs": 0.5, **kw}
    return loop.Config(
        model="tiny",
        dataset="toy",
        workdir=str(tmp_path / workdir),
        data_dir=_write_data(tmp_path),
        learning_rate=0.2,
        **kw,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run of the tiny net, shared by the tests that only read it."""
    base = tmp_path_factory.mktemp("trained")
    return base, loop.fit(_config(base))


def test_train_steps_reduce_the_loss():
    model = models.module("tiny")
    images, labels = _separable(64)
    h = Hyper(learning_rate=0.2, total_steps=30, warmup_steps=3, augment=True)
    tx = optimizer(h)
    state = create_state(models.init_variables(model, jax.random.key(0), 8), tx)
    step = jax.jit(functools.partial(train_step, model, tx, h, jax.random.key(1)))
    losses = []
    for _ in range(30):
        state, m = step(state, jnp.asarray(images), jnp.asarray(labels, jnp.int32))
        losses.append(float(m["loss"] / m["count"]))
    assert int(state.step) == 30
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3])
    assert np.isfinite(losses).all()


def test_fit_logs_checkpoints_and_loads(trained):
    tmp_path, result = trained
    assert result["step"] == 32 and result["test_accuracy"] > 0.9
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [8, 16, 24, 32]
    assert {"train_loss", "test_accuracy", "images_per_second", "learning_rate"} <= set(records[0])

    # The manager keeps the latest and the best (any of tied ones), nothing else.
    mngr = checkpoint.manager(str(tmp_path / "run"), read_only=True)
    accuracy = {r["step"]: r["test_accuracy"] for r in records}
    assert accuracy[mngr.best_step()] == max(accuracy.values())
    assert set(mngr.all_steps()) == {32, mngr.best_step()}

    predict, info = train.load_classifier(str(tmp_path / "run"))
    assert info["model"] == "tiny" and info["dataset"] == "toy"
    assert info["accuracy"] == pytest.approx(max(r["test_accuracy"] for r in records))
    images, labels = _separable(16, seed=5)
    probs = jax.jit(predict)(images.astype(np.float32))  # traceable inside jit
    assert probs.shape == (16, 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert (np.argmax(probs, -1) == labels).mean() > 0.9
    # bf16 evaluation: same classifier, float32 probabilities close to the float32 ones.
    predict_bf16, _ = train.load_classifier(str(tmp_path / "run"), dtype="bfloat16")
    probs_bf16 = jax.jit(predict_bf16)(images.astype(np.float32))
    assert probs_bf16.dtype == np.float32
    np.testing.assert_allclose(probs_bf16, probs, atol=0.05)


def test_resume_after_interruption_continues_from_the_saved_step(tmp_path, trained):
    full_dir, full = trained
    # stop_after=0 stops after the first step, as a kill right after a checkpoint would.
    first = loop.fit(_config(tmp_path, "cut", stop_after=0.0))
    assert first["step"] == 1
    resumed = loop.fit(_config(tmp_path, "cut"))
    with open(tmp_path / "cut" / "metrics.jsonl") as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == [1, 8, 16, 24, 32]  # went on from step 1, not from scratch
    # Batch order and randomness depend only on (seed, epoch, step): same end point.
    assert resumed["test_loss"] == pytest.approx(full["test_loss"], rel=1e-4)
    cut_predict, _ = train.load_classifier(str(tmp_path / "cut"), step=32)
    full_predict, _ = train.load_classifier(str(full_dir / "run"), step=32)
    x = _separable(8, seed=3)[0].astype(np.float32)
    np.testing.assert_allclose(cut_predict(x), full_predict(x), atol=1e-5)
    # Running again when done changes nothing.
    assert loop.fit(_config(tmp_path, "cut")) == {}


def test_killed_mid_epoch_resumes_from_the_mid_epoch_checkpoint(tmp_path, trained):
    config = _config(tmp_path, "killed", checkpoint_every=3)
    r = loop.setup(config)
    real_step, steps_run = r.step_fn, []

    def dies_at_step_5(state, *batch):
        if len(steps_run) == 5:
            raise KeyboardInterrupt  # a kill in the middle of the first epoch
        steps_run.append(1)
        return real_step(state, *batch)

    r.step_fn = dies_at_step_5
    with pytest.raises(KeyboardInterrupt):
        loop.run(r)
    r.mngr.wait_until_finished()
    r.mngr.close()
    assert checkpoint.manager(config.workdir, read_only=True).latest_step() == 3
    resumed = loop.fit(config)
    assert resumed["step"] == 32
    assert resumed["test_loss"] == pytest.approx(trained[1]["test_loss"], rel=1e-4)


def test_resume_refuses_a_checkpoint_whose_weights_changed(tmp_path):
    first = loop.fit(_config(tmp_path, "rot", stop_after=0.0))
    assert first["step"] == 1
    meta_path = tmp_path / "rot" / "checkpoints" / "1" / "meta" / "metadata"
    meta = json.loads(meta_path.read_text())
    assert meta["digest"].startswith("sha256:")  # every save records one
    # The weights on disk no longer match their digest (as after a bit flip).
    meta_path.write_text(json.dumps({**meta, "digest": "sha256:" + "0" * 64}))
    with pytest.raises(ValueError, match=r"workdir '.*rot': the checkpoint at step 1 holds other"):
        loop.fit(_config(tmp_path, "rot"))


def test_workdir_of_another_model_is_refused(trained):
    tmp_path, _ = trained
    other = dataclasses.replace(_config(tmp_path), model="compact", image_size=8)
    with pytest.raises(ValueError, match="holds a checkpoint of tiny on toy"):
        loop.setup(other)


_FOUR_DEVICES = """
import json, sys
import tests.train.tiny
from tests.train.test_training import _config
import pathlib, jax
assert jax.device_count() == 4, jax.devices()
print(json.dumps(__import__("train.loop").loop.fit(_config(pathlib.Path(sys.argv[1])))))
"""


@pytest.mark.slow
def test_data_parallel_over_four_devices_matches_one(tmp_path, trained):
    # Fake CPU devices (big_vision's trick): batches sharded over 4 devices, BatchNorm
    # statistics over the global batch, so the run must end where the 1-device one did.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    out = subprocess.run(
        [sys.executable, "-c", _FOUR_DEVICES, str(tmp_path)],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        env={**os.environ, "XLA_FLAGS": flags},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["step"] == trained[1]["step"]
    assert result["test_loss"] == pytest.approx(trained[1]["test_loss"], rel=1e-4)


def test_bad_settings_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="batch_size=1000 exceeds the 64 examples"):
        loop.setup(_config(tmp_path, batch_size=1000))
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        loop.setup(_config(tmp_path, epochs=0))
    with pytest.raises(ValueError, match="optimizer must be 'sgd' or 'adamw'"):
        loop.setup(_config(tmp_path, optimizer="rmsprop"))
    with pytest.raises(ValueError, match=r"images are \(8, 8\) but the model takes 32x32"):
        loop.setup(_config(tmp_path, image_size=32))


def test_cli_bad_input_exits_nonzero_with_a_message(tmp_path, capsys):
    data_dir = _write_data(tmp_path)
    base = [f"--workdir={tmp_path / 'w'}", "--dataset=toy", f"--data-dir={data_dir}"]
    assert main(["--model=resnet18", *base]) == 2
    assert "unknown model 'resnet18'" in capsys.readouterr().err
    assert main(["--model=tiny", *base[:2], f"--data-dir={tmp_path / 'nope'}"]) == 2
    assert "decode.py" in capsys.readouterr().err
    np.savez(
        os.path.join(data_dir, "toy-train.npz"), image=np.zeros((4, 8, 8), np.uint8), label=[0] * 4
    )
    assert main(["--model=tiny", *base]) == 2
    assert "toy-train.npz: `image` must have shape [N, H, W, 3]" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: a missing required flag
        main(["--model=tiny"])


def test_flip_tta_averages_each_image_and_its_mirror(trained):
    workdir = str(trained[0] / "run")
    predict, _ = train.load_classifier(workdir)
    tta, info = train.load_classifier(workdir, flip_tta=True)
    assert info["flip_tta"]
    x = _separable(8, seed=4)[0].astype(np.float32)
    mirror = x[:, :, ::-1]
    assert not np.allclose(predict(mirror), predict(x), atol=1e-6)  # the net is not symmetric
    np.testing.assert_allclose(jax.jit(tta)(x), (predict(x) + predict(mirror)) / 2, atol=1e-6)
    np.testing.assert_allclose(tta(mirror), tta(x), atol=1e-6)  # mirror-invariant


def test_evaluate_refuses_data_of_another_image_size(trained, tmp_path, capsys):
    images, labels = _separable(6)
    bigger = np.repeat(np.repeat(images, 2, 1), 2, 2)  # 16 x 16 for a net trained on 8 x 8
    np.savez(tmp_path / "toy-test.npz", image=bigger, label=labels)
    assert evaluate_main([str(trained[0] / "run"), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "test: images are 16 x 16, but" in err and "trained on 8 x 8" in err
    assert err.count("\n") == 1


def test_evaluate_command_reports_the_accuracy_of_the_checkpoint(trained, capsys):
    base, _ = trained
    workdir, data_dir = str(base / "run"), str(base / "data")
    test_split = np.load(base / "data" / "toy-test.npz")
    images, labels = test_split["image"], test_split["label"]
    for flags, flip in [([], False), (["--flip-tta"], True)]:
        assert evaluate_main([workdir, "--data-dir", data_dir, "--batch-size", "5", *flags]) == 0
        record = json.loads(capsys.readouterr().out)
        predict, _ = train.load_classifier(workdir, flip_tta=flip)
        expected = (np.argmax(predict(images.astype(np.float32)), -1) == labels).mean()
        assert record["split"] == "test" and record["n"] == len(labels) == 32
        assert record["flip_tta"] is flip
        assert record["test_accuracy"] == pytest.approx(expected)
    assert evaluate_main([str(base / "nothing"), "--data-dir", data_dir]) == 2
    assert "has no checkpoints/ folder" in capsys.readouterr().err


def test_load_classifier_missing_workdir(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m train"):
        train.load_classifier(str(tmp_path))


@pytest.mark.parametrize(
    "asset, model, accuracy",
    [
        ("cifar10_compact", "compact", 0.85),
        ("cifar10_compact_cpu", "compact", 0.84),
        ("cifar10_compact_fast", "compact_fast", 0.85),
    ],
)
def test_shipped_compact_classifier_on_the_shipped_sample(asset, model, accuracy):
    predict, info = train.load_classifier(os.path.join(ASSETS, asset))
    assert info["model"] == model and info["dataset"] == "cifar10"
    assert info["accuracy"] > accuracy
    sample = np.load(os.path.join(ASSETS, "cifar10_test_sample100.npz"))
    assert sample["image"].shape == (100, 32, 32, 3) and sample["image"].dtype == np.uint8
    probs = np.asarray(jax.jit(predict)(sample["image"].astype(np.float32)))
    assert probs.shape == (100, 10)
    assert (probs.argmax(-1) == sample["label"]).mean() >= 0.8
