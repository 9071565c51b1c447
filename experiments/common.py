"""The experiment grid shared by experiments.cifar and experiments.imagenet.

For each classifier: pick the samples (seeded, among correctly classified images), get
their foreground masks, then for each (pixel count, restriction, region, attack) cell run
the rows that results.jsonl does not hold yet and append each record as soon as its row
is done. Each cell has its own key (seed and cell name) and each row its own index
(image position x targets), so a resumed run gives the same records as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import rpx
from experiments import engine, metrics
from experiments.store import ResultStore, record_key
from rpx import regions
from rpx.segment.cache import data_identity  # noqa: F401  (count + SHA-256 of images, labels)

ATTACKS = ("untargeted", "targeted")


@dataclasses.dataclass(frozen=True)
class Grid:
    """What to run. models: name -> classifier workdir. samples: images per model."""

    models: dict
    regions: tuple[str, ...]
    pixels: tuple[int, ...]
    attacks: tuple[str, ...]
    restrictions: tuple[str, ...] = ("table",)
    samples: int = 500
    seed: int = 0
    population: int = 400
    generations: int = 100
    batch_size: int = 16


def parse_list(flag: str, text: str, choices=None, kind=str) -> tuple:
    """A comma list flag -> tuple; "all" means every choice. ValueError names the flag."""
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if choices is not None and items == ["all"]:
        return tuple(choices)
    if not items:
        raise ValueError(f"--{flag} must not be empty")
    try:
        values = tuple(kind(s) for s in items)
    except ValueError:
        raise ValueError(
            f"--{flag} must be a comma list of {kind.__name__}, got {text!r}"
        ) from None
    if choices is not None:
        bad = [v for v in values if v not in choices]
        if bad:
            raise ValueError(f"--{flag}: {bad} not among {', '.join(map(str, choices))} (or all)")
    if len(set(values)) != len(values):
        raise ValueError(f"--{flag} lists a value twice: {text!r}")
    return values


def attacks_flag(text: str) -> tuple[str, ...]:
    """--attack: untargeted, targeted or both."""
    if text == "both":
        return ATTACKS
    if text not in ATTACKS:
        raise ValueError(f"--attack must be untargeted, targeted or both, got {text!r}")
    return (text,)


def pick_samples(predict, get, total: int, count: int, seed: int, batch: int = 256):
    """`count` images picked at random (seeded) among those `predict` classifies right.

    Walks a seeded permutation of all `total` images, classifying batch by batch, so a
    larger `count` with the same seed extends the same list (a grown run keeps its
    records). `get(indices int [M]) -> (uint8 images [M, H, W, 3], labels int [M])`.

    Returns:
      indices int [M] (M <= count: fewer if fewer are correct), clean probs float32 [M, K].
    """
    if count < 1:
        raise ValueError(f"samples must be >= 1, got {count}")
    order = np.random.default_rng(seed).permutation(total)
    run = jax.jit(predict)
    picked, probs = [], []
    with tqdm(total=count, desc="pick samples", unit="img", leave=False) as bar:
        for start in range(0, total, batch):
            idx = order[start : start + batch]
            images, labels = get(idx)
            p = np.asarray(run(jnp.asarray(images, jnp.float32)))
            labels = np.asarray(labels)
            if labels.min() < 0 or labels.max() >= p.shape[1]:
                raise ValueError(
                    f"images {idx[(labels < 0) | (labels >= p.shape[1])][:5].tolist()} have "
                    f"labels outside the classifier's {p.shape[1]} classes [0, {p.shape[1] - 1}]"
                )
            ok = p.argmax(1) == labels
            take = min(int(ok.sum()), count - len(picked))
            picked.extend(idx[ok][:take])
            probs.extend(p[ok][:take])
            bar.update(take)
            if len(picked) == count:
                break
    if not picked:
        raise ValueError("no image is classified correctly: is the classifier trained?")
    return np.asarray(picked, np.int64), np.asarray(probs, np.float32)


def other_classes(labels, num_classes: int) -> np.ndarray:
    """int [N, K-1]: for each label, every other class in increasing order."""
    labels = np.asarray(labels)
    classes = np.arange(num_classes)
    return np.stack([classes[classes != y] for y in labels]).astype(np.int32)


def cell_key(seed: int, model: str, region: str, pixels: int, restriction: str, attack: str):
    """The PRNG key of one cell: the seed folded with a stable hash of the cell's name."""
    name = f"{model}/{region}/{pixels}/{restriction}/{attack}"
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def run_grid(
    grid: Grid,
    store: ResultStore,
    total: int,
    get: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    load_model: Callable[[str], tuple[Callable, dict]],
    foreground: Callable[[np.ndarray, np.ndarray], np.ndarray],
    log: Callable[[str], None] = print,
) -> dict:
    """Run every missing row of the grid, appending records to `store` as they finish.

    Args:
      total: the number of test images; get: indices int [M] -> (uint8 images
        [M, H, W, 3], true labels int [M]).
      load_model: model name -> (predict, info), e.g. from train.load_classifier.
      foreground: (indices [M], images [M, H, W, 3]) -> bool [M, H, W] foreground masks.

    Returns:
      {model: {"samples": int [M] dataset indices, "info": classifier info}}.
    """
    picked = {}
    for model in grid.models:
        predict, info = load_model(model)
        idx, clean = pick_samples(predict, get, total, grid.samples, grid.seed)
        if len(idx) < grid.samples:
            log(f"{model}: only {len(idx)} test images are classified correctly; using them all")
        picked[model] = {"samples": idx, "info": info}
        images = get(idx)[0]
        fg = np.asarray(foreground(idx, images))
        for pixels in grid.pixels:
            for restriction in grid.restrictions:
                config = rpx.AttackConfig(
                    pixels=pixels,
                    population=grid.population,
                    generations=grid.generations,
                    restriction=restriction,
                )
                for region in grid.regions:
                    mask = regions.mask(region, fg)
                    for attack in grid.attacks:
                        cell = dict(
                            model=model,
                            region=region,
                            pixels=pixels,
                            restriction=restriction,
                            attack=attack,
                        )
                        _run_cell(grid, store, cell, predict, images, idx, clean, mask, config)
    return picked


def _run_cell(grid, store, cell, predict, images, idx, clean, mask, config) -> None:
    """Attack the rows of one cell missing from `store`; append records as they finish."""
    labels = clean.argmax(1).astype(np.int32)
    num_classes = clean.shape[1]
    targets = other_classes(labels, num_classes) if cell["attack"] == "targeted" else None
    per_image = 1 if targets is None else targets.shape[1]
    rows_target = (lambda r: None) if targets is None else (
        lambda r: int(targets[r // per_image, r % per_image]))  # fmt: skip
    missing = [
        r
        for r in range(len(idx) * per_image)
        if record_key(dict(cell, image=int(idx[r // per_image]), target=rows_target(r)))
        not in store
    ]
    if not missing:
        return

    def write(rows, partial):
        img = rows // per_image
        tgt = None if targets is None else targets[img, rows % per_image]
        recs = metrics.records(partial, clean[img], labels[img], tgt)
        for r, i in zip(recs, img, strict=True):
            r.update(cell, image=int(idx[i]), num_classes=num_classes)
        store.append(recs)

    name = "/".join(str(v) for v in cell.values())
    tqdm.write(f"{name}: {len(missing)} of {len(idx) * per_image} rows to run")
    engine.attack_rows(
        predict,
        images,
        labels,
        mask,
        targets,
        np.asarray(missing),
        config=config,
        key=cell_key(grid.seed, **cell),
        callback=write,
        batch_size=grid.batch_size,
    )
