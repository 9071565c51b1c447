"""rpx.run: stream any number of images through a fixed number of search slots.

A compiled segment advances every slot a few populations on device (sharded over the
local devices); between segments the host collects the slots whose image stopped and
loads the next images into them. A stopped slot leaves the compacted evaluation at
once, so the classifier only ever evaluates live candidates, and memory follows the
number of slots, not the number of images. Every image's randomness derives from
(key, its row index), so each row equals what `rpx.attack` returns for it.

Targeted attacks to T targets per image take `target` int [N, T]: row n * T + t is
image n towards target[n, t]; images are gathered per slot, never copied per target.
"""

from __future__ import annotations

import functools
import time
import types
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from rpx import checks, slots
from rpx.attack import AttackResult, finish
from rpx.config import AttackConfig, resolve
from rpx.search import where_rows

AXIS = "slots"


def run(
    predict: Callable[[jax.Array], jax.Array],
    images,
    labels,
    region=None,
    target=None,
    *,
    config: AttackConfig | None = None,
    key: jax.Array,
    batch_size: int | None = None,
    refill_every: int | None = None,
    callback: Callable[[np.ndarray, AttackResult], None] | None = None,
    progress: bool = True,
    rows=None,
    params=None,
) -> AttackResult:
    """`rpx.attack` for any number of images, streamed through `batch_size` slots.

    Args:
      predict, images, labels, region, config, key, params: as in `rpx.attack`; images
        may be a host (numpy) array of any length; params (weights predict takes first,
        or None) are traced, so new weights of the same shapes reuse the compiled pieces.
      target: None, int [N], or int [N, T] (T targets per image; row n * T + t).
      batch_size: slots searched at once (rounded up to a multiple of the local device
        count); default 16 per device on CPU, 256 on accelerators.
      refill_every: at most this many populations per compiled segment (default 1 on
        CPU, 8 on accelerators); a segment also ends as soon as an image stops, so
        its result is reported and its slot refilled at once.
      callback: called as `callback(rows, partial)` whenever rows finish, with `rows`
        int64 [M] and an `AttackResult` of those M rows (numpy), e.g. to save them.
      progress: show a progress bar (rows done, successes, evaluations/s).
      rows: int [M], run only these rows of the N * T grid (e.g. the ones a killed run
        left undone); each keeps its own randomness, so row r equals row r of a run of
        all rows. The result then has M rows, in this order; `callback` gets row numbers.

    Returns:
      An `AttackResult` (numpy arrays) with one row per image (per image and target).
      On several hosts (after `jax.distributed.initialize()`), each host searches its
      share of the rows and every host returns all rows.
    """
    config = resolve(config)
    checks.check_key(key)
    for name, value in (("batch_size", batch_size), ("refill_every", refill_every)):
        if value is not None:
            checks.positive_int(name, value, 1)
    images, labels, region, target = checks.check_inputs(
        predict, images, labels, region, target, config, params=params,
        to_device=False, target_columns=True,
    )  # fmt: skip
    images, labels = np.asarray(images), np.asarray(labels, np.int32)
    n, h, w, c = images.shape
    per_image = 1 if target is None or np.ndim(target) == 1 else np.shape(target)[1]
    requested = _requested_rows(rows, n * per_image)
    # Slots hold positions into `requested`; each host takes every P-th position.
    mine = np.arange(len(requested))[jax.process_index() :: jax.process_count()]

    devices = jax.local_devices()
    backend_cpu = jax.default_backend() == "cpu"
    size = batch_size or (16 if backend_cpu else 256) * len(devices)
    size = -(-min(size, max(len(mine), 1)) // len(devices)) * len(devices)
    every = refill_every or (1 if backend_cpu else 8)
    num_classes = checks.num_classes_of(predict, images.shape, params)
    ctx = slots.make_context(
        predict,
        config,
        (size, h, w, c),
        images.dtype,
        num_classes,
        targeted=target is not None,
        with_params=params is not None,
        params=params,
    )
    fns = _compiled(ctx, Mesh(np.array(devices), (AXIS,)), images.dtype)

    region_np = None if region is None else np.asarray(region, bool)
    target_np = None if target is None else np.asarray(target, np.int32).reshape(n, per_image)
    out = _Results(len(requested), (h, w, c), images.dtype, config, num_classes)

    def host_batch(positions):
        # Slot data for `positions` into `requested` (int [S]; -1: keep the slot's image).
        row = requested[np.where(positions >= 0, positions, 0)]
        image_index, t = np.divmod(row, per_image)
        reg = np.ones((size, h, w), bool)
        if region_np is not None:
            reg = np.broadcast_to(region_np, (n, h, w))[image_index]
        # Placeholders (the spare slots of the rounding to the device count on the first
        # load) get an empty region, so they start inactive and search nothing.
        reg[positions < 0] = False
        goal = labels[image_index] if target_np is None else target_np[image_index, t]
        return (images[image_index], reg, labels[image_index], goal, row.astype(np.int32))

    slot_row = np.full(size, -1)
    queue = list(mine)
    inputs = state = None
    bar = _progress(progress, len(mine))
    started, evaluations = time.perf_counter(), 0
    while True:
        free = np.flatnonzero(slot_row < 0)
        if len(free) and queue:
            take = queue[: len(free)]
            del queue[: len(take)]
            new = np.full(size, -1)
            new[free[: len(take)]] = take
            fresh_inputs, fresh_state = fns.load(params, *host_batch(new))
            if inputs is None:
                inputs, state = fresh_inputs, fresh_state
            else:
                inputs, state = fns.merge(inputs, state, fresh_inputs, fresh_state, new >= 0)
            slot_row = np.where(new >= 0, new, slot_row)
        if (slot_row < 0).all():
            break
        busy = np.asarray(fns.active(state))
        if busy.any():
            state = fns.advance(params, key, inputs, state, every)
            busy = np.asarray(fns.active(state))
        done = np.flatnonzero((slot_row >= 0) & ~busy)
        if len(done):
            finished = fns.finish(params, inputs, state)
            finished = jax.tree.map(lambda v, done=done: np.asarray(v)[done], finished)
            checks.check_confirmed(finished.probs)
            rows = slot_row[done]
            out.put(rows, finished)
            slot_row[done] = -1
            evaluations += int(finished.queries.sum())
            if callback is not None:
                callback(requested[rows], finished)
            if bar is not None:
                bar.update(len(done))
                rate = evaluations / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(successes=out.successes, evals_per_s=f"{rate:,.0f}")
    if bar is not None:
        bar.close()
    return out.gather(mine)


def _requested_rows(rows, total: int) -> np.ndarray:
    if rows is None:
        return np.arange(total)
    rows = np.asarray(rows)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"rows must be a 1-D integer array, got {rows.dtype} {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= total):
        raise ValueError(
            f"rows must be row indices in [0, {total}), got [{rows.min()}, {rows.max()}]"
        )
    if len(np.unique(rows)) != len(rows):
        raise ValueError("rows must not repeat a row")
    return rows.astype(np.int64)


@functools.lru_cache(maxsize=16)
def _compiled(ctx, mesh, dtype):
    """The jitted, slot-sharded pieces for one search context."""
    spec = PartitionSpec(AXIS)
    shard = functools.partial(jax.shard_map, mesh=mesh, check_vma=False)

    def load(params, images, region, labels, goal, index):
        target = goal if ctx.targeted else None
        inputs = slots.load(ctx, images, region, labels, target, index, params)
        return inputs, slots.start(ctx, inputs)

    def advance(params, key, inputs, state, steps):
        return slots.advance(ctx, params, key, inputs, state, steps, stop_on_finish=True)

    def merge(inputs, state, new_inputs, new_state, mask):
        pick = lambda a, b: where_rows(mask, b, a)  # noqa: E731
        return jax.tree.map(pick, inputs, new_inputs), jax.tree.map(pick, state, new_state)

    fns = types.SimpleNamespace()
    fns.load = jax.jit(shard(load, in_specs=(PartitionSpec(), *[spec] * 5), out_specs=spec))
    fns.advance = jax.jit(
        shard(
            advance,
            in_specs=(PartitionSpec(), PartitionSpec(), spec, spec, PartitionSpec()),
            out_specs=spec,
        ),
        donate_argnums=3,
    )
    fns.merge = jax.jit(merge, donate_argnums=(0, 1))
    fns.active = jax.jit(slots.active)
    fns.finish = jax.jit(
        shard(
            lambda p, i, s: finish(ctx, p, i, s, dtype),
            in_specs=(PartitionSpec(), spec, spec),
            out_specs=spec,
        )
    )
    return fns


class _Results:
    """Host-side result rows, filled as slots finish."""

    def __init__(self, rows, image_shape, dtype, config, num_classes):
        k, c = config.pixels, image_shape[-1]
        self.arrays = dict(
            success=np.zeros(rows, bool),
            adversarial=np.zeros((rows, *image_shape), dtype),
            positions=np.zeros((rows, k, 2), np.int32),
            colors=np.zeros((rows, k, c), np.float32),
            probs=np.zeros((rows, num_classes), np.float32),
            generations=np.zeros(rows, np.int32),
            queries=np.zeros(rows, np.int32),
            fitness_curve=np.zeros((rows, config.generations + 1), np.float32),
        )
        self.successes = 0

    def put(self, rows, finished):
        for name, array in self.arrays.items():
            array[rows] = getattr(finished, name)
        self.successes += int(finished.success.sum())

    def gather(self, mine) -> AttackResult:
        if jax.process_count() > 1:  # each host filled its own rows; share them
            from jax.experimental import multihost_utils

            hosts = jax.process_count()
            longest = -(-len(self.arrays["success"]) // hosts)  # shares differ by <= 1 row
            for array in self.arrays.values():
                local = np.zeros((longest, *array.shape[1:]), array.dtype)
                local[: len(mine)] = array[mine]
                every = np.asarray(multihost_utils.process_allgather(local, tiled=False))
                for p in range(hosts):
                    share = np.arange(len(array))[p::hosts]
                    array[share] = every[p][: len(share)]
        return AttackResult(**self.arrays)


def _progress(enabled, total):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="image", desc="rpx.run", smoothing=0.1)
