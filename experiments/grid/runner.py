"""Running a `Grid` (`run_grid`).

For each classifier: pick the samples (seeded, among correctly classified images), get
their foreground masks, then for each (pixel count, restriction, method, region, attack)
cell run the rows that results.jsonl does not hold yet with `rpx.run(rows=...)` and
append each record as soon as its row is done. Rows are image-major, as in `rpx.run`:
with targets [N, T], row n * T + t attacks image n towards target[n, t]. Each cell has
its own key (seed and cell name, the method's included unless it is the paper's DE with
LHS, `experiments.grid.methods`) and each row its own index, so a resumed run gives the same
records as an uninterrupted one. With `targeted_from_scan`, the targeted 1-pixel cells
come from one corner scan per image and region (`experiments.grid.scan_targets`) instead.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

import rpx
from experiments import metrics
from experiments.grid import Grid, methods, scan_targets
from experiments.grid.cells import Cell, other_classes
from experiments.store import ResultStore, record_key
from rpx import regions


def run_grid(
    grid: Grid,
    store: ResultStore,
    images,
    classifiers: dict,
    foreground: Callable[[np.ndarray, np.ndarray], np.ndarray],
    picks: dict,
    log: Callable[[str], None] = print,
) -> None:
    """Run every missing row of the grid, appending records to `store` as they finish,
    then log how many are new and how long they took.

    Args:
      images: the test images (`experiments.images`): `images.total` of them, and
        `images(indices int [M]) -> (uint8 [M, H, W, 3], true labels int [M])`.
      classifiers: {model name: (predict, info)} for every model of the grid.
      foreground: (indices [M], images [M, H, W, 3]) -> bool [M, H, W] foreground masks.
      picks: `experiments.grid.samples.pick_all`'s {model: (indices, clean probs)}.
    """
    before, start = len(store), time.perf_counter()
    for model in grid.models:
        predict, _ = classifiers[model]
        idx, clean = picks[model]
        x = images(idx)[0]
        fg = np.asarray(foreground(idx, x))
        for pixels, restriction, method in itertools.product(
            grid.pixels, grid.restrictions, grid.methods()
        ):
            config = rpx.AttackConfig(
                pixels=pixels,
                population=grid.population,
                generations=grid.generations,
                restriction=restriction,
                search=method.search,
                init=method.init or "lhs",
            )
            for region, attack in itertools.product(grid.regions, grid.attacks):
                cell = Cell(model, region, pixels, restriction, attack, method)
                if not _from_scan(grid, cell):
                    mask = regions.mask(region, fg)
                    _run_cell(grid, store, cell, predict, x, idx, clean, mask, config)
        if grid.targeted_from_scan:
            targets = other_classes(clean.argmax(1), clean.shape[1])
            for region in grid.regions:
                cell = Cell(model, region, 1, "table", "targeted", methods.SCAN)
                mask = regions.mask(region, fg)
                scan_targets.run(store, cell, predict, x, idx, clean, mask, targets,
                                 grid.batch_size)  # fmt: skip
    log(
        f"{len(store) - before} new results in {time.perf_counter() - start:.1f} s "
        f"({before} already in {store.path})"
    )


def _from_scan(grid: Grid, cell: Cell) -> bool:
    """Whether the scan answers this cell (`--targeted-from-scan`) instead of a search."""
    answered = (cell.pixels, cell.restriction, cell.attack) == (1, "table", "targeted")
    return grid.targeted_from_scan and answered


def _run_cell(grid, store, cell: Cell, predict, images, idx, clean, mask, config) -> None:
    """Attack the rows of one cell missing from `store`; append records as they finish."""
    labels = clean.argmax(1).astype(np.int32)
    num_classes = clean.shape[1]
    targets = other_classes(labels, num_classes) if cell.attack == "targeted" else None
    fields = cell.fields()
    per_image = 1 if targets is None else targets.shape[1]
    rows_target = (lambda r: None) if targets is None else (
        lambda r: int(targets[r // per_image, r % per_image]))  # fmt: skip
    missing = [
        r
        for r in range(len(idx) * per_image)
        if record_key(dict(fields, image=int(idx[r // per_image]), target=rows_target(r)))
        not in store
    ]
    if not missing:
        return

    def write(rows, partial):
        img = rows // per_image
        tgt = None if targets is None else targets[img, rows % per_image]
        recs = metrics.records(partial, clean[img], labels[img], tgt)
        for r, i in zip(recs, img, strict=True):
            r.update(fields, image=int(idx[i]), num_classes=num_classes)
        store.append(recs)

    tqdm.write(f"{cell.name()}: {len(missing)} of {len(idx) * per_image} rows to run")
    rpx.run(
        predict,
        images,
        labels,
        mask,
        targets,
        config=config,
        key=cell.key(grid.seed),
        batch_size=grid.batch_size,
        callback=write,
        rows=np.asarray(missing),
    )
