"""The all-class corner-map study: every pixel x the 8 colour-cube corners of each
classifier's first N correctly classified images, scanned batch by batch, resumably.

For each classifier the pick list is the first `count` images (dataset order) that it
classifies right; `rpx.pixel_map` scans each batch of them (labels = the true labels,
which equal the clean predictions) and the batch's `PixelMap.classes` (the predicted
class of every (pixel, corner), int8 [B, H, W, 8]) is written to WORKDIR/NET/ as soon
as the batch ends (`experiments.corner_maps.batches`). A killed run loses at most the batch
in flight; the next run scans only the positions no file covers. Regions are applied
afterwards, from the maps alone (`experiments.corner_maps.regions`), so one scan answers the
untargeted and all nine targeted one-pixel questions for every region at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import jax
import numpy as np
from tqdm import tqdm

import rpx
from experiments.corner_maps.batches import BatchFolder, batches_of
from experiments.grid.samples import pick_samples
from experiments.images import ArrayImages

CORNERS = 8  # the corners of the RGB colour cube [0, 255]^3, `rpx.pixel_map`'s default


def settings(data: str, evaluation: str) -> dict:
    """What settings.json records besides the classifiers: a re-run with other data (by
    content, `rpx.segment.data_identity`), another pick rule or another scan is refused."""
    return dict(
        data=data,
        pick="the first N images (dataset order) the classifier gets right; labels = true labels",
        scan="rpx.pixel_map: every pixel x the 8 corners of [0, 255]^3, whole image",
        evaluation=evaluation,
        masks=dict(method="grabcut", settings=rpx.segment.GrabCutSettings().to_dict()),
        format="WORKDIR/NET/maps-START-STOP.npz: classes int8 [B, 32, 32, 8], index, label",
    )


def scan(
    name: str,
    predict,
    images,
    labels,
    picks,
    folder: BatchFolder,
    batch_size: int,
    evaluation: str = "auto",
    pixel_map: Callable | None = None,
) -> dict:
    """Scan the picked images no batch file covers yet, `batch_size` at a time.

    Args:
      name: the classifier's name (progress and log lines).
      predict: float32 [B, H, W, C] in [0, 255] -> probabilities [B, K].
      images: uint8 [P, H, W, C], the whole data set; labels: int [P].
      picks: int [M], dataset indices in pick order (position p scans images[picks[p]]).
      folder: where the batches go; evaluation: `rpx.pixel_map`'s.
      pixel_map: the scan; None: `rpx.pixel_map` (a test can count its calls).

    Returns:
      {"scanned": images scanned now, "batches": batch files written now,
       "wall_seconds", "cpu_seconds", "evaluations": of this call's batches}.
    """
    pixel_map = pixel_map or rpx.pixel_map
    picks = np.asarray(picks)
    todo = batches_of(folder.missing(len(picks)), batch_size)
    h, w = images.shape[1:3]
    per_image = h * w * CORNERS
    total = dict(scanned=0, batches=0, wall_seconds=0.0, cpu_seconds=0.0, evaluations=0)
    remaining = sum(len(b) for b in todo)
    bar = tqdm(
        total=remaining * per_image,
        desc=f"{name} corner maps",
        unit="eval",
        unit_scale=True,
        smoothing=0.1,
        mininterval=5.0,
    )
    with bar:
        for positions in todo:
            idx = picks[positions]
            wall, cpu = time.perf_counter(), time.process_time()
            found = pixel_map(
                predict, images[idx], np.asarray(labels[idx], np.int32), evaluation=evaluation
            )
            classes = np.asarray(jax.device_get(found.classes))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            evaluations = len(idx) * per_image
            folder.write(
                positions[0],
                classes,
                idx,
                labels[idx],
                wall_seconds=wall,
                cpu_seconds=cpu,
                evaluations=evaluations,
            )
            for key, value in dict(
                scanned=len(idx),
                batches=1,
                wall_seconds=wall,
                cpu_seconds=cpu,
                evaluations=evaluations,
            ).items():
                total[key] += value
            bar.update(evaluations)
            other = (classes != np.asarray(labels[idx])[:, None, None, None]) & (classes >= 0)
            fooled = int(other.any((1, 2, 3)).sum())
            bar.write(
                f"{name}: positions {positions[0]}-{positions[-1]} ({len(idx)} images, "
                f"{fooled} with a fooling pixel) in {wall:.1f} s wall, {cpu:.1f} s CPU, "
                f"{evaluations / wall:.0f} evaluations/s"
            )
    return total


def scan_models(workdir, loaded, images, labels, count, batch_size, evaluation) -> int:
    """`scan` each classifier of `loaded` ({name: (predict, info)}) into WORKDIR/NAME/ on
    its first `count` correct images (refusing batches of other images before scanning
    more); returns how many images were scanned now."""
    scanned = 0
    for name, (predict, _) in loaded.items():
        picks = pick_list(name, predict, images, labels, count)
        folder = BatchFolder(os.path.join(workdir, name))
        folder.read(picks)
        done = scan(name, predict, images, labels, picks, folder, batch_size, evaluation)
        print(f"{name}: {done['scanned']} images scanned now in {done['wall_seconds']:.0f} s")
        scanned += done["scanned"]
    return scanned


def pick_list(name: str, predict, images, labels, count: int) -> np.ndarray:
    """int32 [M]: the dataset indices of the first `count` images (dataset order) that
    `predict` classifies right (M < count, with a message, when fewer are)."""
    source = ArrayImages(images, labels, name)
    picks = pick_samples(predict, source, count, seed=0, order="first")[0].astype(np.int32)
    if len(picks) < count:
        print(f"{name}: only {len(picks)} of {len(images)} images are classified right")
    return picks


def mask_path(workdir: str) -> str:
    """WORKDIR/masks.npz: the GrabCut cache of all the data set's images."""
    return os.path.join(workdir, "masks.npz")
