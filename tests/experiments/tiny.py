"""A tiny CIFAR-shaped classifier, made-up data and workdir helpers for the experiment tests."""

import contextlib
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest


@functools.cache
def tiny_predict(num_classes=10, seed=0, scale=6.0, peak_scale=6.0):
    """float32 [B, 32, 32, 3] in [0, 255] -> probs [B, K]: a random linear map of 8x8
    block means plus, per class, the image's peak of a random colour direction, so one
    pixel of the right colour can lift a class (a one-pixel attack often, not always,
    succeeds on the mock images). One function per setting for the whole test process, so
    every run of the same program on it compiles once: jax caches compiled programs by
    function object."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    w = jax.random.normal(k1, (48, num_classes)) * scale
    u = jax.random.normal(k2, (3, num_classes))

    def predict(images):
        b = images.shape[0]
        blocks = images.reshape(b, 4, 8, 4, 8, 3).mean((2, 4)) / 255.0 - 0.5
        peak = jnp.max((images / 255.0 - 0.5) @ u, axis=(1, 2))
        return jax.nn.softmax(blocks.reshape(b, 48) @ w + peak_scale * peak, axis=-1)

    return predict


def mock_cifar(path, n=24, seed=0, wrong=4):
    """Write path.npz: uint8 [n, 32, 32, 3] images with a centre square of one colour on
    a noisy background of another (so GrabCut finds a foreground), labels = the tiny model's
    predictions except the first `wrong` (to test that only correct images are picked)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 200, (n, 1, 1, 3)) + rng.integers(0, 40, (n, 32, 32, 3))
    images[:, 10:22, 10:22] = rng.integers(0, 255, (n, 1, 1, 3))
    images = images.astype(np.uint8)
    predicted = np.asarray(tiny_predict()(jnp.asarray(images, jnp.float32))).argmax(1)
    labels = predicted.copy()
    labels[:wrong] = (predicted[:wrong] + 1) % 10
    np.savez(path, image=images, label=labels.astype(np.uint8))
    return images, labels


def mock_data(tmp_path_factory, n=24):
    """(path, images, labels) of a mock_cifar file of `n` images in a new temporary folder
    (the body of a module-scoped `data` fixture)."""
    path = str(tmp_path_factory.mktemp("data") / "mock.npz")
    images, labels = mock_cifar(path, n=n)
    return path, images, labels


def cifar_argv(data_path, workdir, *extra, samples, population, generations, attack, region):
    """`python -m experiments.cifar` arguments for the tiny model on `data_path`: one pixel,
    `samples` images, a DE budget of `population` x `generations`, then `extra` (which
    override the flags before them)."""
    return [
        "--models=tiny=/nowhere/tiny",
        f"--data-file={data_path}",
        f"--workdir={workdir}",
        f"--samples={samples}",
        "--pixels=1",
        f"--population={population}",
        f"--generations={generations}",
        f"--attack={attack}",
        f"--region={region}",
        *extra,
    ]


def run_cifar(args, predict=None) -> int:
    """experiments.cifar.main(args) with train.load_classifier giving `predict` (a new
    tiny_predict() by default) for every model; the patch is undone after (for the
    module-scoped fixtures, which cannot use `monkeypatch`)."""
    import train
    from experiments import cifar

    def load(workdir):
        return tiny_predict() if predict is None else predict, {"model": "tiny"}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "load_classifier", load)
        return cifar.main(args)


def killed_run(args, at: int) -> None:
    """experiments.cifar.main(args) killed (KeyboardInterrupt) at its `at`-th
    ResultStore.append, between two appends; ResultStore is restored after."""
    from experiments import cifar
    from experiments.store import ResultStore

    calls = {"n": 0}
    append = ResultStore.append

    def dying_append(self, records):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt  # killed between two appends
        return append(self, records)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ResultStore, "append", dying_append)
        with pytest.raises(KeyboardInterrupt):
            cifar.main(args)


@contextlib.contextmanager
def lock_held_by_another_process(workdir):
    """Another process holding WORKDIR's run lock (as a running experiment does): yields
    its pid; the process is killed on exit, which releases the lock."""
    os.makedirs(workdir, exist_ok=True)
    script = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(os.path.join(sys.argv[1], 'run.lock'), os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.ftruncate(fd, 0); os.write(fd, b'%d\\n' % os.getpid())\n"
        "print('locked', flush=True); time.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, workdir], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"locked\n"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def snapshot(folder) -> dict:
    """{relative path: bytes} of every file under `folder` (to show nothing changed)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out
