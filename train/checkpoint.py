"""Orbax checkpoints of a training run and `load_classifier`.

A workdir holds `checkpoints/<step>/` with three items: `model` ({"params",
"batch_stats"}), `opt` ({"step", "opt_state"}) and `meta` (JSON: model name, dataset,
classes, input size, epoch, accuracy, the training config). The manager keeps the latest
checkpoint (for resuming) and the one with the best test accuracy (for use). `model` and
`meta` alone are enough to load a classifier, so a shipped checkpoint may omit `opt`.

`meta` also records "digest", a SHA-256 of the saved weights (`variables_digest`), and
loading checks it: orbax reads a bit-flipped data file without complaint (the weights
come back changed, even NaN), so a mismatch is a ValueError naming the workdir and step.
A checkpoint saved before digests existed has none and loads unchecked (digests came
after many runs; refusing them would strand their results); every classifier shipped in
train/assets carries one (tested).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from train import models

CHECKPOINT_DIR = "checkpoints"


def _accuracy(metrics) -> float:
    return float(metrics["accuracy"])


def manager(workdir: str, read_only: bool = False) -> ocp.CheckpointManager:
    """A CheckpointManager over `workdir/checkpoints` keeping the latest and the best."""
    policy = ocp.checkpoint_managers.AnyPreservationPolicy(
        [
            ocp.checkpoint_managers.LatestN(n=1),
            ocp.checkpoint_managers.BestN(
                get_metric_fn=_accuracy, n=1, keep_checkpoints_without_metrics=False
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        best_fn=_accuracy,
        best_mode="max",
        preservation_policy=policy,
        read_only=read_only,
        create=not read_only,
        save_interval_steps=0 if read_only else 1,  # orbax warns when it has to set it
    )
    path = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    absl = logging.getLogger("absl")
    absl.addFilter(_read_only_notice)  # orbax warns of every read-only manager
    try:
        return ocp.CheckpointManager(path, options=options, item_names=("model", "opt", "meta"))
    finally:
        absl.removeFilter(_read_only_notice)


def _read_only_notice(record: logging.LogRecord) -> bool:
    """False for orbax's warning that a read-only manager's directory is read only."""
    return not record.getMessage().startswith("Given directory is read only")


def variables_digest(model: dict) -> str:
    """The digest "sha256:<hex>" of a checkpoint's `model` item ({"params", "batch_stats"}): every
    array's path, dtype, shape and bytes, in path order (empty collections add nothing)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(model)[0]:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            leaf = leaf.addressable_data(0)  # training keeps the weights replicated
        a = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)} {a.dtype} {a.shape}\n".encode())
        digest.update(a.tobytes())
    return "sha256:" + digest.hexdigest()


def check_digest(workdir: str, step: int, model: dict, meta: dict) -> None:
    """ValueError naming `workdir` and `step` unless the restored `model` item has the
    digest `meta` recorded when it was saved (none recorded: an older checkpoint, unchecked)."""
    saved = meta.get("digest")
    found = None if saved is None else variables_digest(model)
    if found != saved:
        raise ValueError(
            f"workdir {workdir!r}: the checkpoint at step {step} holds other weights than "
            f"were saved (their digest is {found}, saved {saved}): the "
            "files changed on disk (bit rot, an edit or a bad copy); restore them or retrain"
        )


def save(mngr: ocp.CheckpointManager, state, meta: dict, accuracy: float | None) -> None:
    """Save `state` (a TrainState) at state.step; `accuracy` None marks a mid-epoch save.
    `meta` is saved with the weights' digest added."""
    model = {"params": state.params, "batch_stats": state.batch_stats}
    opt = {"step": state.step, "opt_state": state.opt_state}
    mngr.save(
        int(state.step),
        args=ocp.args.Composite(
            model=ocp.args.StandardSave(model),
            opt=ocp.args.StandardSave(opt),
            meta=ocp.args.JsonSave({**meta, "digest": variables_digest(model)}),
        ),
        metrics=None if accuracy is None else {"accuracy": float(accuracy)},
    )


def restore_state(mngr: ocp.CheckpointManager, state, step: int):
    """Restore the latest `step` into the structure and shardings of `state`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            model=ocp.args.StandardRestore(
                {"params": abstract.params, "batch_stats": abstract.batch_stats}
            ),
            opt=ocp.args.StandardRestore({"step": abstract.step, "opt_state": abstract.opt_state}),
        ),
    )
    workdir = os.path.dirname(str(mngr.directory))
    check_digest(workdir, step, restored.model, read_meta(mngr, step))
    return state.replace(
        step=restored.opt["step"],
        params=restored.model["params"],
        batch_stats=restored.model["batch_stats"],
        opt_state=restored.opt["opt_state"],
    )


def read_meta(mngr: ocp.CheckpointManager, step: int) -> dict:
    """The JSON metadata saved with `step`."""
    return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


@contextlib.contextmanager
def _unreadable(workdir: str, step: int | None):
    """Turn any failure to read checkpoint `step` into one ValueError naming it."""
    previous = sys.unraisablehook
    sys.unraisablehook = functools.partial(_drop_failed_reads, previous)
    try:
        yield
    except Exception as err:  # orbax/tensorstore raise bare Exception, KeyError, JSON errors
        what = "checkpoints" if step is None else f"checkpoint at step {step}"
        root = err
        while root.__cause__ is not None:  # the first error says most (tensorstore's)
            root = root.__cause__
        cause = (str(root).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"workdir {workdir!r}: the {what} cannot be read "
            f"({type(root).__name__}: {cause}): truncated, corrupt or not a classifier's"
        ) from err
    else:  # nothing is left pending after a restore that worked
        sys.unraisablehook = previous


def _drop_failed_reads(previous, unraisable) -> None:
    """An unraisable-exception hook for a restore that may fail: orbax then leaves its
    other array reads pending; each prints "Exception ignored in <coroutine>" when Python
    finalises it, and one finishing after its event loop closed prints "Event loop is
    closed" (during the restore or at exit). Drop those reports, pass on the others."""
    pending = "_read_array_index" in getattr(unraisable.object, "__qualname__", "")
    late = isinstance(unraisable.exc_value, RuntimeError) and (
        str(unraisable.exc_value) == "Event loop is closed"
    )
    if not (pending or late):
        previous(unraisable)


def load_classifier(workdir: str, step: int | None = None, dtype="float32", flip_tta: bool = False):
    """Load a trained classifier from a workdir (or a shipped copy of one) as one function
    with its weights closed over; `load_parts` gives the weights separately.

    Args:
      workdir: the `--workdir` of a training run (holding `checkpoints/`).
      step: a saved step; default: the best test accuracy (else the latest) checkpoint.
      dtype: the compute dtype of the forward pass, e.g. "bfloat16" for faster
        evaluation on GPU/TPU (parameters stay float32; probabilities are float32).
      flip_tta: test-time augmentation: `predict` averages the probabilities of each
        image and its left-right mirror (two forward passes per image), a classifier that
        is a little more accurate and, by construction, mirror-invariant.

    Returns:
      predict: `predict(images float32 [B,H,W,3] in [0,255]) -> probabilities float32
        [B, K]`; jax-traceable, usable inside jit/vmap (parameters are closed over).
      info: dict with "model", "dataset", "num_classes", "image_size", "accuracy"
        (test accuracy at that checkpoint as training measured it, without flip_tta;
        None for a mid-epoch one), "step", "epoch", "flip_tta".

    Raises:
      FileNotFoundError: no checkpoint in `workdir`.
      ValueError: the checkpoint is there but cannot be read (truncated or corrupt files,
        unreadable metadata, an unknown model) or its weights differ from the digest saved
        with them; the message names the workdir and step.
    """
    apply, variables, info = load_parts(workdir, step, dtype, flip_tta)
    return functools.partial(apply, variables), info


def load_parts(workdir: str, step: int | None = None, dtype="float32", flip_tta: bool = False):
    """`load_classifier` with the weights as an argument: (apply, variables, info).

    `apply(variables, images float32 [B,H,W,3]) -> probabilities float32 [B, K]` is the
    same function object for every checkpoint of the same model, dtype and flip_tta, so
    an attack given `predict=apply, params=variables` (e.g. `rpx.attack(...,
    params=variables)`) reuses its compiled program across checkpoints and epochs.
    `variables` is the restored pytree, `info` as in `load_classifier`. Raises as
    `load_classifier` does.
    """
    path = os.path.join(workdir, CHECKPOINT_DIR)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"workdir {workdir!r} has no {CHECKPOINT_DIR}/ folder: train one with "
            "`python -m train --model=NAME --workdir=DIR`"
        )
    with _unreadable(workdir, step):
        mngr = manager(workdir, read_only=True)
        saved = list(mngr.all_steps())
        step = step if step is not None else (mngr.best_step() or mngr.latest_step())
    if step is None or step not in saved:
        raise FileNotFoundError(
            f"workdir {workdir!r}: no checkpoint{'' if step is None else f' at step {step}'}"
            f" (saved steps: {saved})"
        )
    with _unreadable(workdir, step):
        meta = read_meta(mngr, step)
        shapes = _variable_shapes(
            meta["model"], meta["num_classes"], jnp.dtype(dtype).name, meta["image_size"]
        )
        # Restore onto the first local device whatever devices saved it (GPU -> CPU works).
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = {
            "params": shapes["params"],
            "batch_stats": shapes.get("batch_stats", {}),
        }
        target = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), target
        )
        variables = mngr.restore(
            step, args=ocp.args.Composite(model=ocp.args.StandardRestore(target))
        ).model
    mngr.close()
    check_digest(workdir, step, variables, meta)
    if not variables["batch_stats"]:
        variables = {"params": variables["params"]}
    apply = classifier_apply(meta["model"], meta["num_classes"], jnp.dtype(dtype).name, flip_tta)

    info = {
        "model": meta["model"],
        "dataset": meta["dataset"],
        "num_classes": meta["num_classes"],
        "image_size": meta["image_size"],
        "accuracy": meta.get("accuracy"),
        "step": int(step),
        "epoch": meta.get("epoch"),
        "flip_tta": flip_tta,
    }
    return apply, variables, info


@functools.cache
def _variable_shapes(model_name: str, num_classes: int, dtype: str, image_size: int):
    """The variables' shapes and dtypes of a model, traced once per model and size (every
    load traced the model's initialisation again)."""
    model = models.module(model_name, num_classes, dtype=jnp.dtype(dtype))
    return jax.eval_shape(lambda k: models.init_variables(model, k, image_size), jax.random.key(0))


@functools.cache
def classifier_apply(model_name: str, num_classes: int, dtype: str, flip_tta: bool):
    """apply(variables, images) -> probabilities float32 [B, K] of one model; cached, so
    the same arguments give the same function object (a stable jit key)."""
    model = models.module(model_name, num_classes, dtype=jnp.dtype(dtype))

    def probabilities(variables, images):
        logits = model.apply(variables, images, train=False)
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    def apply(variables, images):
        images = jnp.asarray(images, jnp.float32)
        if not flip_tta:
            return probabilities(variables, images)
        flipped = probabilities(variables, images[:, :, ::-1])
        return (probabilities(variables, images) + flipped) / 2

    return apply
