"""Targeted 1-pixel rows answered by one all-class corner scan (`--targeted-from-scan`).

One `rpx.pixel_map` of an image's region (every region pixel times the 8 corners of the
colour cube) gives the class each (pixel, corner) pair makes the classifier predict,
so it answers the targeted 1-pixel attack towards every other class at once: the attack
towards t succeeds when some pair's class is t. Its record (search "scan", init None,
restriction "table", generations 0) holds the first such pair in row-major pixel, then
corner order, and the probabilities of that adversarial image; queries are the scan's,
region pixels x 8, the same for every target of the image (one scan serves them all, so
they are not to be summed over targets). An unsuccessful row reports the clean image:
positions [[-1, -1]], colours 0 and the clean probabilities.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from tqdm import tqdm

import rpx
from experiments import metrics
from experiments.store import record_key
from rpx.pixel_map import corner_colors


class Rows(NamedTuple):
    """Scan rows as `experiments.metrics.records` reads an `rpx.AttackResult`'s: one per
    (image, target), image-major."""

    success: np.ndarray
    probs: np.ndarray
    positions: np.ndarray
    colors: np.ndarray
    generations: np.ndarray
    queries: np.ndarray
    fitness_curve: np.ndarray


def answers(classes, region, targets):
    """Each image's answer for each of its targets, from a scan's classes.

    Args:
      classes: int [N, H, W, M], `rpx.PixelMap.classes` (-1 outside the region).
      region: bool [N, H, W], the pixels scanned; targets: int [N, T].

    Returns:
      (success bool [N, T], positions int [N, T, 2], corner int [N, T], queries int [N]):
      whether a (region pixel, colour) pair makes the classifier predict the target,
      the first such pair in row-major pixel, then colour order ((-1, -1) and 0 where
      none does), and the scan's evaluations (region pixels x M).
    """
    classes, region = np.asarray(classes), np.asarray(region, bool)
    n, h, w, m = classes.shape
    inside = np.repeat(region.reshape(n, 1, h * w), m, axis=2)
    hits = (classes.reshape(n, 1, h * w * m) == np.asarray(targets)[:, :, None]) & inside
    success = hits.any(-1)
    first = np.where(success, hits.argmax(-1), 0)
    pixel = first // m
    positions = np.where(success[..., None], np.stack([pixel // w, pixel % w], -1), -1)
    return success, positions, np.where(success, first % m, 0), region.sum((1, 2)) * m


def records(predict, images, clean, region, targets) -> list[dict]:
    """Records of the targeted 1-pixel attacks of images [N, H, W, C] (uint8) towards
    targets int [N, T], image-major, from one scan of regions bool [N, H, W]; clean:
    float [N, K], the clean probabilities (labels = their argmax). Fields as
    `experiments.metrics.records` makes them; the caller adds the cell's and image's.
    A success is the model's word: the adversarial image the scan found is run through
    the full forward pass, which must predict the target (else the row is a failure
    with the clean probabilities), and its probabilities are the ones recorded."""
    labels = np.asarray(clean).argmax(1).astype(np.int32)
    found = rpx.pixel_map(predict, images, labels, region)
    success, positions, corner, queries = answers(found.classes, region, targets)
    n, t = np.shape(targets)
    corners = corner_colors(images.shape[-1])
    colors = np.where(success[..., None], corners[corner], 0.0).astype(np.float32)
    probs = np.repeat(np.asarray(clean, np.float32)[:, None], t, axis=1)
    if success.any():  # the model's full forward pass on each adversarial image found
        tried = np.asarray(rpx.one_pixel_probs(
            predict, images, np.maximum(positions, 0), colors, evaluation="full"))  # fmt: skip
        success &= np.all(np.isfinite(tried), -1) & (tried.argmax(-1) == np.asarray(targets))
        probs = np.where(success[..., None], tried, probs)
        positions = np.where(success[..., None], positions, -1)
        colors = np.where(success[..., None], colors, 0.0).astype(np.float32)
    rows = Rows(
        success=success.reshape(-1), probs=probs.reshape(n * t, -1),
        positions=positions.reshape(n * t, 1, 2), colors=colors.reshape(n * t, 1, -1),
        generations=np.zeros(n * t, np.int32), queries=np.repeat(queries, t),
        fitness_curve=np.zeros((n * t, 1), np.float32),
    )  # fmt: skip
    clean_rows = np.repeat(np.asarray(clean), t, axis=0)
    return metrics.records(rows, clean_rows, np.repeat(labels, t), np.ravel(targets))


def run(store, cell, predict, images, idx, clean, region, targets, batch_size) -> None:
    """Append the scan rows of one (model, region) cell that `store` lacks, scanning
    `batch_size` images at a time, only those with a row missing.

    Args:
      cell: the scan's `experiments.grid.cells.Cell` (1 pixel, restriction table, attack
      targeted, method `methods.SCAN`); images uint8 [N, H, W, C]; idx int [N],
      their dataset indices; clean float [N, K]; region bool [N, H, W]; targets int
      [N, T], as `experiments.grid.runner.run_grid` gives its targeted cells.
    """
    fields = cell.fields()
    missing = [
        i for i in range(len(idx))
        if any(record_key(dict(fields, image=int(idx[i]), target=int(t))) not in store
               for t in targets[i])
    ]  # fmt: skip
    if not missing:
        return
    name = f"{cell.model}/{cell.region}/{cell.pixels}/{cell.attack}/{cell.method.search}"
    tqdm.write(f"{name}: {len(missing)} of {len(idx)} images to scan")
    for at in range(0, len(missing), batch_size):
        part = np.asarray(missing[at : at + batch_size])
        recs = records(predict, images[part], clean[part], region[part], targets[part])
        for r, i in zip(recs, np.repeat(idx[part], targets.shape[1]), strict=True):
            r.update(fields, image=int(i), num_classes=clean.shape[1])
        store.append(recs)
