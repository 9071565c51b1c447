"""The experiment grid: what to run (`Grid`) and running it (`run_grid`).

For each classifier: pick the samples (seeded, among correctly classified images), get
their foreground masks, then for each (pixel count, restriction, method, region, attack)
cell run the rows that results.jsonl does not hold yet with `rpx.run(rows=...)` and
append each record as soon as its row is done. Rows are image-major, as in `rpx.run`:
with targets [N, T], row n * T + t attacks image n towards target[n, t]. Each cell has
its own key (seed and cell name, the method's included unless it is the paper's DE with
LHS, `experiments.methods`) and each row its own index, so a resumed run gives the same
records as an uninterrupted one. With `targeted_from_scan`, the targeted 1-pixel cells
come from one corner scan per image and region (`experiments.scan_targets`) instead.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import zlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import rpx
from experiments import classifiers, methods, metrics, scan_targets, store
from experiments.store import ResultStore, record_key
from rpx import regions
from rpx.search import INITS, SEARCHES

ATTACKS = ("untargeted", "targeted")
RESTRICTIONS = ("table", "restore")
# The method settings of a workdir made before --search, --init, --targeted-from-scan.
SETTING_DEFAULTS = dict(
    search=["de"], init=["lhs"], targeted_from_scan=False, sample_order="random"
)
# The settings each record names itself (its method): a workdir may gain more of them.
METHOD_SETTINGS = ("search", "init")
SAMPLE_ORDERS = ("random", "first")


@dataclasses.dataclass(frozen=True)
class Grid:
    """What to run; the fields are the experiments' flags of the same names, checked on
    construction (ValueError naming the flag).

    models: name -> classifier workdir; regions, pixels, attacks, restrictions: the cells
    (every combination is run); samples: images per model; seed: picks the samples and
    seeds every cell; population, generations: the DE budget; batch_size: images
    searched at once (`rpx.run`'s slots); sample_order: "random" (a seeded
    permutation, the paper's random sample) or "first" (the first correctly classified
    images in dataset order, e.g. those `experiments.corner_maps` scanned). searches,
    inits: the methods (`methods`: DE from each init, Sparse-RS once);
    targeted_from_scan: the targeted 1-pixel cells (restriction "table") are answered by
    one all-class corner scan per image and region (`experiments.scan_targets`) instead
    of a search.
    """

    models: dict[str, str]
    regions: tuple[str, ...]
    pixels: tuple[int, ...]
    attacks: tuple[str, ...]
    restrictions: tuple[str, ...] = ("table",)
    samples: int = 500
    seed: int = 0
    population: int = 400
    generations: int = 100
    batch_size: int = 16
    searches: tuple[str, ...] = ("de",)
    inits: tuple[str, ...] = ("lhs",)
    targeted_from_scan: bool = False
    sample_order: str = "random"

    def __post_init__(self):
        for flag in ("samples", "population", "generations", "batch_size"):
            least = 4 if flag == "population" else 1
            if getattr(self, flag) < least:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= {least}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"--seed must be in [0, 2**32), got {self.seed}")
        if not self.pixels or min(self.pixels) < 1:
            raise ValueError(f"--pixels must be >= 1, got {list(self.pixels)}")
        for flag, values, choices in (
            ("region", self.regions, regions.REGION_NAMES),
            ("attack", self.attacks, ATTACKS),
            ("restriction", self.restrictions, RESTRICTIONS),
            ("search", self.searches, SEARCHES),
            ("init", self.inits, INITS),
            ("sample-order", (self.sample_order,), SAMPLE_ORDERS),
        ):
            if not values or not set(values) <= set(choices):
                raise ValueError(f"--{flag}: {list(values)} not among {', '.join(choices)}")
        if "de" not in self.searches and self.inits != ("lhs",):
            raise ValueError(f"--init {','.join(self.inits)} seeds DE: add de to --search")
        if self.targeted_from_scan and (1 not in self.pixels or "targeted" not in self.attacks
                                        or "table" not in self.restrictions):  # fmt: skip
            raise ValueError(
                "--targeted-from-scan answers targeted 1-pixel cells under restriction "
                "table: it needs 1 in --pixels, --attack targeted or both, and "
                "--restriction table or both"
            )
        if not self.models:
            raise ValueError("--models must not be empty")

    def methods(self) -> list[tuple[str, str | None]]:
        """(search, init) of each method: DE from each init, then Sparse-RS (init None)."""
        return [("de", i) if s == "de" else (s, None)
                for s in self.searches for i in (self.inits if s == "de" else (None,))]  # fmt: skip

    def settings(self) -> dict:
        """The method flags as settings.json records them (canonical order); see
        `SETTING_DEFAULTS` for a workdir made before they existed."""
        return dict(
            search=[s for s in SEARCHES if s in self.searches],
            init=[i for i in INITS if i in self.inits],
            targeted_from_scan=self.targeted_from_scan,
            sample_order=self.sample_order,
        )

    def open_workdir(self, workdir: str, settings: dict, loaded: dict, images, shape):
        """`store.open_workdir` for this grid's run: `settings` (the data's, the
        budget's) with the method flags added, which read as `SETTING_DEFAULTS` in a
        workdir made before them and may name methods the workdir lacks
        (`METHOD_SETTINGS`); `loaded`: `experiments.classifiers.load`'s classifiers
        (their digests recorded, their classes bounding the records'); `images`
        (`experiments.images`, `images.total` of them) of (H, W) `shape`."""
        settings = {**settings, **self.settings()}
        digests = classifiers.digests(loaded)
        classes = {name: info["num_classes"] for name, (_, info) in loaded.items()}
        bounds = store.Bounds(images=images.total, shape=tuple(shape), classes=classes)
        return store.open_workdir(
            workdir, settings, digests, SETTING_DEFAULTS, METHOD_SETTINGS, bounds
        )

    def budget_line(self, paper_samples: int) -> str:
        """One line stating the budget, flagged when smaller than the paper's."""
        line = (
            f"budget: {self.samples} images per model, population {self.population}, "
            f"{self.generations} generations, pixels {list(self.pixels)}, "
            f"attacks {list(self.attacks)}, regions {list(self.regions)}"
        )
        if self.methods() != [methods.DEFAULT]:
            line += f", methods {[methods.short(m) or 'de' for m in self.methods()]}"
        if self.targeted_from_scan:
            line += f", {methods.SCAN_NOTE}"
        if self.samples < paper_samples or self.population < 400 or self.generations < 100:
            line += (
                f" (REDUCED: the paper used {paper_samples} images, population 400, "
                "100 generations)"
            )
        return line


def pick_samples(predict, images, count: int, seed: int, batch: int = 256, order="random"):
    """`count` images picked at random (seeded) among those `predict` classifies right,
    or with order="first" the first `count` of them in dataset order (seed unused).

    Walks a seeded permutation (or the dataset order) of all `images.total` images,
    classifying batch by batch, so a larger `count` with the same seed extends the same
    list (a grown run keeps its records). `images(indices int [M]) -> (uint8 [M, H, W,
    3], labels int [M])`, as in `experiments.images`.

    Returns:
      indices int [M] (M <= count: fewer if fewer are correct), clean probs float32 [M, K].
    """
    if count < 1:
        raise ValueError(f"samples must be >= 1, got {count}")
    total = images.total
    if order not in SAMPLE_ORDERS:
        raise ValueError(f"--sample-order must be one of {', '.join(SAMPLE_ORDERS)}, got {order!r}")
    walk = np.arange(total) if order == "first" else np.random.default_rng(seed).permutation(total)
    run = jax.jit(predict)
    picked, probs = [], []
    with tqdm(total=count, desc="pick samples", unit="img", leave=False) as bar:
        for start in range(0, total, batch):
            idx = walk[start : start + batch]
            x, labels = images(idx)
            p = np.asarray(run(jnp.asarray(x, jnp.float32)))
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


def cell_key(
    seed: int, model: str, region: str, pixels: int, restriction: str, attack: str,
    search: str = "de", init: str | None = "lhs",
):  # fmt: skip
    """The PRNG key of one cell: the seed folded with a stable hash of the cell's name;
    a method other than the paper's DE with LHS adds its search and init to the name."""
    name = f"{model}/{region}/{pixels}/{restriction}/{attack}"
    if (search, init) != methods.DEFAULT:
        name += "".join(f"/{v}" for v in (search, init) if v is not None)
    return named_key(seed, name)


def named_key(seed: int, name: str):
    """The PRNG key `seed` folded with a stable hash (CRC-32) of `name`: the same on
    every machine and run, and different for different names."""
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def pick_all(grid: Grid, images, classifiers: dict, log: Callable[[str], None] = print) -> dict:
    """{model: (indices int [M], clean probs float32 [M, K])}: `pick_samples` for every
    model of the grid. Run before the workdir is opened, so data that some classifier
    gets entirely wrong (another dataset, labels in another order) is refused before
    anything is written there; ValueError names the model."""
    picks = {}
    for model, (predict, _) in classifiers.items():
        try:
            picks[model] = pick_samples(
                predict, images, grid.samples, grid.seed, order=grid.sample_order
            )
        except ValueError as err:
            raise ValueError(f"classifier {model!r} on {images.name}: {err}") from None
        if len(picks[model][0]) < grid.samples:
            log(f"{model}: only {len(picks[model][0])} test images are classified correctly; "
                "using them all")  # fmt: skip
    return picks


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
      picks: `pick_all`'s {model: (indices, clean probs)}.
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
                search=method[0],
                init=method[1] or "lhs",
            )
            for region, attack in itertools.product(grid.regions, grid.attacks):
                cell = dict(model=model, region=region, pixels=pixels, restriction=restriction,
                            attack=attack, **methods.fields(*method))  # fmt: skip
                if not _from_scan(grid, cell):
                    mask = regions.mask(region, fg)
                    _run_cell(grid, store, cell, predict, x, idx, clean, mask, config)
        if grid.targeted_from_scan:
            targets = other_classes(clean.argmax(1), clean.shape[1])
            for region in grid.regions:
                cell = dict(model=model, region=region)
                mask = regions.mask(region, fg)
                scan_targets.run(store, cell, predict, x, idx, clean, mask, targets,
                                 grid.batch_size)  # fmt: skip
    log(
        f"{len(store) - before} new results in {time.perf_counter() - start:.1f} s "
        f"({before} already in {store.path})"
    )


def _from_scan(grid, cell) -> bool:
    """Whether the scan answers this cell (`--targeted-from-scan`) instead of a search."""
    answered = (cell["pixels"], cell["restriction"], cell["attack"]) == (1, "table", "targeted")
    return grid.targeted_from_scan and answered


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
    rpx.run(
        predict,
        images,
        labels,
        mask,
        targets,
        config=config,
        key=cell_key(grid.seed, **cell),
        batch_size=grid.batch_size,
        callback=write,
        rows=np.asarray(missing),
    )
