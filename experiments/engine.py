"""The one place experiments call the attack engine: `attack_rows`.

Rows are image-major, as in `rpx.run`: with targets [N, T], row n * T + t attacks image
n towards target[n, t], and row r draws its randomness from (key, r). A fresh cell runs
all its rows through `rpx.run` (streamed slots); a resumed one attacks only the rows
still missing, each with its own row index (rpx.run has no way to name rows yet), so its
results equal those of an uninterrupted run row by row.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import jax
import numpy as np
from tqdm import tqdm

import rpx
from rpx import checks, regions

# The module, not the function `rpx.attack` that the package exports under that name.
attack_module = importlib.import_module("rpx.attack")


def attack_rows(
    predict: Callable,
    images,
    labels,
    region=None,
    target=None,
    rows=None,
    *,
    config: rpx.AttackConfig,
    key: jax.Array,
    callback: Callable[[np.ndarray, object], None],
    batch_size: int = 16,
    desc: str = "attack",
) -> None:
    """Attack rows of (images x targets) and hand each finished group to `callback`.

    Args:
      predict: float32 [B, H, W, C] -> probabilities [B, K].
      images: [N, H, W, C]; labels: int [N]; region: bool [N, H, W] or None.
      target: None (untargeted, one row per image), int [N] or int [N, T].
      rows: int [M], the row indices to run (None: all N * T). Row r's result equals
        row r of `rpx.run` / `rpx.attack` on all rows with the same key.
      config, key: as in `rpx.attack`.
      callback: `callback(rows int [M'], partial)`, partial an AttackResult of numpy
        arrays with M' rows, called as soon as those rows are done.
      batch_size: rows searched at once (rpx.run's slots; rows per call on resume).
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    n = len(images)
    per_image = 1 if target is None else (1 if np.ndim(target) == 1 else np.shape(target)[1])
    flat_target = None if target is None else np.asarray(target).reshape(n, per_image)
    all_rows = np.arange(n * per_image)
    rows = all_rows if rows is None else np.asarray(rows, np.int64)
    if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n * per_image)):
        raise ValueError(f"rows must be row indices in [0, {n * per_image}), got {rows}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if rows.size == 0:
        return
    if np.array_equal(rows, all_rows):
        rpx.run(predict, images, labels, region, target, config=config, key=key,
                batch_size=batch_size, callback=callback)  # fmt: skip
        return
    region = regions.broadcast(region, n, *images.shape[1:3])
    region = np.asarray(region)
    with tqdm(total=len(rows), desc=desc, unit="row", leave=False) as bar:
        for start in range(0, len(rows), batch_size):
            group = rows[start : start + batch_size]
            img = group // per_image
            group_target = None if flat_target is None else flat_target[img, group % per_image]
            result = _fused(
                predict, images[img], labels[img], region[img], group_target, group, config, key,
                batch_size,
            )  # fmt: skip
            callback(group, result)
            bar.update(len(group))


def _fused(predict, images, labels, region, target, index, config, key, size):
    """rpx.attack's fused search on one group, with explicit randomness indices; the group
    is padded to `size` rows with empty regions (frozen at once, never evaluated) so every
    call has one shape and compiles once."""
    images, labels, region, target = checks.check_inputs(
        predict, images, labels, region, target, config
    )
    m = len(index)
    pad = size - m

    def padded(x, value=None):
        x = np.asarray(x)
        fill = np.repeat(x[:1], pad, 0) if value is None else np.full((pad, *x.shape[1:]), value)
        return np.concatenate([x, fill.astype(x.dtype)])

    if pad:
        images, labels = padded(images), padded(labels)
        region = padded(region, False)
        target = None if target is None else padded(target)
        index = padded(index)
    result = attack_module.fused_attack(
        predict,
        config,
        jax.numpy.asarray(images),
        jax.numpy.asarray(labels),
        jax.numpy.asarray(region),
        None if target is None else jax.numpy.asarray(target),
        key,
        jax.numpy.asarray(index, jax.numpy.int32),
    )
    return jax.tree.map(lambda a: np.asarray(a)[:m], result)
