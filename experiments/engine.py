"""The one place experiments call the attack engine: `attack_rows`.

Rows are image-major, as in `rpx.run`: with targets [N, T], row n * T + t attacks image
n towards target[n, t], and row r draws its randomness from (key, r). A resumed cell
runs only the rows still missing (`rpx.run(rows=...)`), so its results equal those of
an uninterrupted run row by row.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

import rpx


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
      batch_size: rows searched at once (rpx.run's slots).
    """
    rpx.run(predict, images, labels, region, target, config=config, key=key,
            batch_size=batch_size, callback=callback, rows=rows)  # fmt: skip
