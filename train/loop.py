"""The training loop: data parallel over all devices, per-epoch evaluation, JSONL
metrics, Orbax checkpoints and resumption.

Re-running `fit` with the same workdir resumes from the latest checkpoint: the batch
order is a pure function of (seed, epoch) and the step's randomness of (seed, step), so a
resumed run continues exactly where the saved one was.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from train import checkpoint, data, models
from train.state import Hyper, create_state, eval_step, optimizer, schedule, train_step

# Peak SGD learning rate at batch 256 (scaled linearly with the batch size); 0.1 for the
# rest. The nets without BatchNorm get a lower rate, as their papers used (not tuned here).
BASE_LR = {"allconv": 0.05, "nin": 0.05, "alexnet": 0.02, "vgg16_imagenet": 0.02}


@dataclasses.dataclass
class Config:
    """A training run (the command line's flags)."""

    model: str
    workdir: str
    dataset: str = "cifar10"
    data_dir: str | None = None
    train_split: str = "train"
    eval_split: str | None = None  # default: "test" ("validation" for ImageNet)
    epochs: int = 30
    batch_size: int = 256
    eval_batch_size: int = 500
    optimizer: str = "sgd"
    learning_rate: float | None = None  # default: BASE_LR * batch/256 (sgd), 1e-3 (adamw)
    weight_decay: float = 5e-4
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    bf16: bool = False
    seed: int = 0
    image_size: int | None = None  # default: the model's native input size
    stop_after: float | None = None  # seconds: save and stop when exceeded
    checkpoint_every: int | None = None  # steps between mid-epoch checkpoints
    train_limit: int | None = None  # use a random subset of N training examples


def validate(c: Config) -> None:
    """Raise ValueError naming the setting that is wrong."""
    models.spec(c.model)
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if not isinstance(getattr(c, name), int) or getattr(c, name) < 1:
            raise ValueError(f"{name} must be a positive int, got {getattr(c, name)!r}")
    n_dev = jax.device_count()
    for name in ("batch_size", "eval_batch_size"):
        if getattr(c, name) % n_dev:
            raise ValueError(f"{name}={getattr(c, name)} is not divisible by {n_dev} devices")
    if c.learning_rate is not None and not c.learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {c.learning_rate}")
    if c.stop_after is not None and c.stop_after < 0:
        raise ValueError(f"stop_after must be >= 0 seconds, got {c.stop_after}")
    if not 0 <= c.label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {c.label_smoothing}")
    if c.optimizer not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {c.optimizer!r}")
    if not c.workdir:
        raise ValueError("workdir must be given")


def _check_images(split: data.Split, size: int) -> None:
    if split.images is not None and split.images.shape[1:3] != (size, size):
        raise ValueError(
            f"{split.name}: images are {split.images.shape[1:3]} but the model takes "
            f"{size}x{size} (set image_size to train at another size)"
        )


class _Log:
    """Appends one JSON object per line to workdir/metrics.jsonl (process 0 only)."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.active = jax.process_index() == 0

    def write(self, record: dict) -> None:
        if self.active:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def _global_batch(sharding, images, labels, *extra):
    """This host's slice of a global batch -> arrays sharded over all devices."""
    arrays = (images, labels, *extra)
    return tuple(jax.make_array_from_process_local_data(sharding, a) for a in arrays)


def evaluate(eval_fn, state, split, c: Config, size: int, sharding) -> dict:
    """Test loss and accuracy over the whole split."""
    n_proc, pid = jax.process_count(), jax.process_index()
    local = c.eval_batch_size // n_proc
    totals = None
    for images, labels, mask in data.eval_batches(split, c.eval_batch_size, size):
        part = slice(pid * local, (pid + 1) * local)  # every host reads the same batch
        m = eval_fn(state, *_global_batch(sharding, images[part], labels[part], mask[part]))
        totals = m if totals is None else jax.tree.map(jnp.add, totals, m)
    totals = jax.device_get(totals)
    return {
        "test_loss": float(totals["loss"] / totals["count"]),
        "test_accuracy": float(totals["correct"] / totals["count"]),
    }


@dataclasses.dataclass
class Run:
    """A training run ready to start: data, models, jitted steps, state, checkpoints."""

    config: Config
    train_split: data.Split
    test_split: data.Split
    image_size: int
    steps_per_epoch: int
    hyper: Hyper
    state: object
    step_fn: object
    eval_fn: object
    batch_sharding: NamedSharding
    mngr: object
    meta: dict


def setup(c: Config) -> Run:
    """Validate `c`, load the data, build the model and state, restore the latest
    checkpoint of c.workdir if there is one. Bad settings raise ValueError and missing
    data FileNotFoundError here, before any training."""
    validate(c)
    eval_split = c.eval_split or data.EVAL_SPLIT.get(c.dataset, "test")
    train_split = data.load_split(c.dataset, c.train_split, c.data_dir)
    test_split = data.load_split(c.dataset, eval_split, c.data_dir)
    if c.train_limit and train_split.source is None:
        # A random subset: array files may be sorted by class (the shared CIFAR-10 is).
        keep = np.sort(np.random.default_rng(c.seed).permutation(len(train_split))[: c.train_limit])
        train_split = dataclasses.replace(
            train_split, images=train_split.images[keep], labels=train_split.labels[keep]
        )
    size = c.image_size or models.spec(c.model).image_size
    _check_images(train_split, size)
    _check_images(test_split, size)
    k = data.num_classes(c.dataset, train_split)
    steps_per_epoch = len(train_split) // c.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={c.batch_size} exceeds the {len(train_split)} examples")
    lr = c.learning_rate or (
        1e-3 if c.optimizer == "adamw" else BASE_LR.get(c.model, 0.1) * c.batch_size / 256
    )
    h = Hyper(
        optimizer=c.optimizer,
        learning_rate=lr,
        weight_decay=c.weight_decay,
        warmup_steps=int(c.warmup_epochs * steps_per_epoch),
        total_steps=steps_per_epoch * c.epochs,
        label_smoothing=c.label_smoothing,
        augment=train_split.source is None,
    )
    tx = optimizer(h)
    compute = jnp.bfloat16 if c.bf16 else jnp.float32
    # Evaluation and checkpoints stay float32 whatever the training compute dtype.
    train_model, eval_model = models.module(c.model, k, compute), models.module(c.model, k)

    # Auto axes: plain data parallelism, XLA propagates the batch sharding (the default
    # Explicit axes would make every op inside the step spell out its sharding).
    mesh = jax.make_mesh((jax.device_count(),), ("data",), (jax.sharding.AxisType.Auto,))
    replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    os.makedirs(c.workdir, exist_ok=True)
    mngr = checkpoint.manager(c.workdir)
    meta = {"model": c.model, "dataset": c.dataset, "num_classes": k, "image_size": size}
    latest = mngr.latest_step()
    if latest is not None:
        saved = checkpoint.read_meta(mngr, latest)
        if {x: saved.get(x) for x in meta} != meta:
            mngr.close()
            raise ValueError(
                f"workdir {c.workdir!r} holds a checkpoint of {saved.get('model')} on "
                f"{saved.get('dataset')} ({saved.get('image_size')} px); use another "
                f"--workdir for {c.model} on {c.dataset}"
            )
    key = jax.random.key(c.seed)
    init_vars = models.init_variables(eval_model, jax.random.fold_in(key, 1), size)
    state = jax.device_put(create_state(init_vars, tx), replicated)
    if latest is not None:
        state = checkpoint.restore_state(mngr, state, latest)
    meta["config"] = dataclasses.asdict(c)

    step_fn = jax.jit(
        functools.partial(train_step, train_model, tx, h, key),
        in_shardings=(replicated, batch, batch),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    eval_fn = jax.jit(
        functools.partial(eval_step, eval_model),
        in_shardings=(replicated, batch, batch, batch),
        out_shardings=replicated,
    )
    return Run(c, train_split, test_split, size, steps_per_epoch, h, state, step_fn,
               eval_fn, batch, mngr, meta)  # fmt: skip


def _add(sums: dict | None, metrics: list[dict]) -> dict:
    """Add fetched per-step metric dicts to running float sums."""
    sums = dict(sums or {"loss": 0.0, "correct": 0.0, "count": 0.0})
    for m in metrics:
        for name in sums:
            sums[name] += float(m[name])
    return sums


def _train_epoch(r: Run, epoch: int, first: int, t_start: float) -> tuple[dict, int, bool]:
    """Steps `first`.. of `epoch`; returns (metric sums, steps done, stopped early)."""
    c, pid = r.config, jax.process_index()
    local = c.batch_size // jax.process_count()
    order = data.epoch_order(len(r.train_split), c.seed, epoch)

    def host_batch(s):
        idx = order[s * c.batch_size : (s + 1) * c.batch_size][pid * local : (pid + 1) * local]
        return data.gather(r.train_split, idx, r.image_size, train=True, seed=(c.seed, epoch, s))

    steps = range(first, r.steps_per_epoch)
    bar = tqdm(total=r.steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{c.epochs}",
               disable=None if pid == 0 else True, dynamic_ncols=True)  # fmt: skip
    # disable=None: no bar when stderr is not a terminal, so logs get the JSON lines only.
    pending, sums, done = [], None, 0
    batches = data.prefetch(host_batch, ((s,) for s in steps))
    for s, (images, labels) in zip(steps, batches, strict=True):
        r.state, m = r.step_fn(r.state, *_global_batch(r.batch_sharding, images, labels))
        pending.append(m)
        done += 1
        if len(pending) == 50:  # fetching syncs with the device: only every 50 steps
            sums, pending = _add(sums, jax.device_get(pending)), []
            bar.set_postfix(loss=f"{sums['loss'] / sums['count']:.3f}",
                            acc=f"{sums['correct'] / sums['count']:.3f}")  # fmt: skip
        bar.update(1)
        step = epoch * r.steps_per_epoch + s + 1
        if c.checkpoint_every and step % c.checkpoint_every == 0 and s < steps[-1]:
            meta = {**r.meta, "epoch": epoch + (s + 1) / r.steps_per_epoch, "accuracy": None}
            checkpoint.save(r.mngr, r.state, meta, None)
        if c.stop_after is not None and time.time() - t_start > c.stop_after and s < steps[-1]:
            bar.close()
            return _add(sums, jax.device_get(pending)), done, True
    bar.close()
    return _add(sums, jax.device_get(pending)), done, False


def run(r: Run) -> dict:
    """Train from r.state's step to the end (or until config.stop_after seconds),
    evaluating, logging and checkpointing each epoch; returns the last epoch's record."""
    c, spe = r.config, r.steps_per_epoch
    start, total = int(r.state.step), spe * c.epochs
    log, t_start, result = _Log(c.workdir), time.time(), {}
    if start >= total:
        print(f"{c.workdir}: already trained for {start} steps ({c.epochs} epochs); nothing to do")
    for epoch in range(start // spe, c.epochs):
        first = max(start - epoch * spe, 0)
        t0 = time.time()
        sums, done, stopped = _train_epoch(r, epoch, first, t_start)
        jax.block_until_ready(r.state)
        train_time = time.time() - t0
        ev = evaluate(r.eval_fn, r.state, r.test_split, c, r.image_size, r.batch_sharding)
        step = int(r.state.step)
        result = {
            "epoch": round(step / spe, 4),
            "step": step,
            "train_loss": sums["loss"] / max(sums["count"], 1),
            "train_accuracy": sums["correct"] / max(sums["count"], 1),
            **ev,
            "train_seconds": round(train_time, 3),
            "images_per_second": round(done * c.batch_size / train_time, 1),
            "eval_seconds": round(time.time() - t0 - train_time, 3),
            "learning_rate": float(schedule(r.hyper)(step)),
        }
        log.write(result)
        if jax.process_index() == 0:
            print(json.dumps(result), flush=True)
        meta = {**r.meta, "epoch": result["epoch"], "accuracy": ev["test_accuracy"]}
        checkpoint.save(r.mngr, r.state, meta, ev["test_accuracy"])
        if stopped:
            print(f"stopped after {c.stop_after} s at step {step}; run again to resume")
            break
    r.mngr.wait_until_finished()
    return result


def fit(c: Config) -> dict:
    """Train (or resume) the run described by `c`; returns the last epoch's record."""
    r = setup(c)
    try:
        return run(r)
    finally:
        r.mngr.close()
