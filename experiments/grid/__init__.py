"""The experiment grid: what to run (`Grid`), each of its fields a flag of the
experiments' command lines (`setting`, `experiments.cli`), checked on construction, and
what a workdir records of it (`Grid.settings`, `Grid.open_workdir`).

Beside it in this package: `flags` (the flags' text grammar), `samples` (which images a
grid attacks), `cells` and `methods` (one cell of the grid, the method that fills it),
`runner` (running a grid: `run_grid`) and `scan_targets` (`--targeted-from-scan`).
"""

from __future__ import annotations

import dataclasses

from experiments import classifiers, store
from experiments.grid import flags, methods, samples
from rpx import regions
from rpx.search import INITS, SEARCHES

ATTACKS = ("untargeted", "targeted")
RESTRICTIONS = ("table", "restore")
SAMPLE_ORDERS = tuple(samples.ORDERS)
# The budget's settings every workdir records (`Grid.open_workdir`).
BUDGET_SETTINGS = ("seed", "population", "generations")


def setting(help: str, default=dataclasses.MISSING, *, flag=None, parse=None, choices=None,
            every=None, least=None, recorded=False):  # fmt: skip
    """A `Grid` field and its flag: `--flag` (default: the field's name), `help`, the
    parser (flag, text) -> value of its text (None: argparse's type, from the field's);
    what `Grid` checks: `choices` (a tuple's items, or the value), `every` the flag's
    word for all of them ("all": a comma list of them, `flags.listing`; "both": one or
    both, `flags.either`; either gives the parser), `least` (an int, or a
    tuple's items); `recorded`: settings.json records it (`Grid.settings`), "grows" for
    a list of which each record names its own item (its method), so a workdir may gain
    items (`METHOD_SETTINGS`)."""
    if parse is None and every is not None:
        parse = (flags.listing if every == "all" else flags.either)(choices)
    meta = dict(help=help, flag=flag, parse=parse, choices=choices, every=every,
                least=least, recorded=recorded)  # fmt: skip
    return dataclasses.field(default=default, metadata=meta)


def spelled(field: dataclasses.Field) -> str:
    """The values a field's flag takes, in words ("" for a field without choices)."""
    choices, every = field.metadata["choices"], field.metadata["every"]
    if every == "both":
        return f"{', '.join(choices)} or both"
    if every == "all":
        return f"a comma list of {', '.join(choices)}, or all"
    return " or ".join(choices or ())


def flag_of(field: dataclasses.Field) -> str:
    """The flag's name (no dashes, '_' for '-'): `setting`'s flag or the field's name."""
    return field.metadata["flag"] or field.name


@dataclasses.dataclass(frozen=True, kw_only=True)
class Grid:
    """What to run; each field is the experiments' flag `flag_of` it (`setting`), checked
    on construction (ValueError naming the flag).

    models: name -> classifier workdir; regions, pixels, attacks, restrictions: the cells
    (every combination is run); samples: images per model; seed: picks the samples and
    seeds every cell; population, generations: the DE budget; batch_size: images
    searched at once (`rpx.run`'s slots); sample_order: "random" (a seeded
    permutation, the paper's random sample) or "first" (the first correctly classified
    images in dataset order, e.g. those `experiments.corner_maps` scanned). searches,
    inits: the methods (`methods`: DE from each init, Sparse-RS once);
    targeted_from_scan: the targeted 1-pixel cells (restriction "table") are answered by
    one all-class corner scan per image and region (`experiments.grid.scan_targets`) instead
    of a search.
    """

    regions: tuple[str, ...] = setting(
        "the regions attacked", regions.REGION_NAMES,
        flag="region", choices=regions.REGION_NAMES, every="all",
    )  # fmt: skip
    models: dict[str, str] = setting("comma list of names or name=workdir", parse=flags.named)
    pixels: tuple[int, ...] = setting(
        "comma list of pixel counts", parse=flags.listing(kind=int), least=1
    )
    attacks: tuple[str, ...] = setting(
        "the attacks", flag="attack", choices=ATTACKS, every="both",
    )  # fmt: skip
    samples: int = setting("images per model", 500, least=1)
    population: int = setting("DE population", 400, least=4)
    generations: int = setting("DE generations", 100, least=1)
    restrictions: tuple[str, ...] = setting(
        "the restriction (both: the ablation)", ("table",), flag="restriction",
        choices=RESTRICTIONS, every="both",
    )  # fmt: skip
    searches: tuple[str, ...] = setting(
        "the searches (de is the paper's)", ("de",), flag="search",
        choices=SEARCHES, every="all", recorded="grows",
    )  # fmt: skip
    inits: tuple[str, ...] = setting(
        "DE's initial populations", ("lhs",), flag="init",
        choices=INITS, every="all", recorded="grows",
    )  # fmt: skip
    targeted_from_scan: bool = setting(
        "answer the targeted 1-pixel cells from one all-class corner scan per image and "
        "region (rpx.pixel_map) instead of a search", False, recorded=True,
    )  # fmt: skip
    seed: int = setting("picks the samples and seeds the attacks", 0)
    sample_order: str = setting(
        "which correctly classified images are taken (random: seeded, the paper's; first: "
        "in dataset order, those experiments.corner_maps scans)", "random",
        choices=SAMPLE_ORDERS, recorded=True,
    )  # fmt: skip
    batch_size: int = setting("images searched at once", 16, least=1)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _check(field, getattr(self, field.name))
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"--seed must be in [0, 2**32), got {self.seed}")
        if "de" not in self.searches and self.inits != ("lhs",):
            raise ValueError(f"--init {','.join(self.inits)} seeds DE: add de to --search")
        if self.targeted_from_scan and (1 not in self.pixels or "targeted" not in self.attacks
                                        or "table" not in self.restrictions):  # fmt: skip
            raise ValueError(
                "--targeted-from-scan answers targeted 1-pixel cells under restriction "
                "table: it needs 1 in --pixels, --attack targeted or both, and "
                "--restriction table or both"
            )

    def methods(self) -> list[methods.Method]:
        """Each method: DE from each init, then Sparse-RS (init None)."""
        return [methods.Method("de", i) if s == "de" else methods.Method(s, None)
                for s in self.searches for i in (self.inits if s == "de" else (None,))]  # fmt: skip

    def settings(self) -> dict:
        """The recorded settings (`setting`'s `recorded`: the method flags and
        --sample-order) as settings.json holds them, a tuple as a list in its choices'
        order; see `SETTING_DEFAULTS` for a workdir made before they existed."""
        return _recorded({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def open_workdir(self, workdir: str, settings: dict, loaded: dict, images, shape):
        """`store.open_workdir` for this grid's run: `settings` (the data's) with the
        budget's (`BUDGET_SETTINGS`) and the recorded flags added, which read as
        `SETTING_DEFAULTS` in a workdir made before them and may name methods the
        workdir lacks (`METHOD_SETTINGS`); `loaded`: `experiments.classifiers.load`'s classifiers
        (their digests recorded, their classes bounding the records'); `images`
        (`experiments.images`, `images.total` of them) of (H, W) `shape`."""
        budget = {name: getattr(self, name) for name in BUDGET_SETTINGS}
        settings = {**settings, **budget, **self.settings()}
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
        population, generations = FIELD_DEFAULTS["population"], FIELD_DEFAULTS["generations"]
        if (self.samples < paper_samples or self.population < population
                or self.generations < generations):  # fmt: skip
            line += (
                f" (REDUCED: the paper used {paper_samples} images, population {population}, "
                f"{generations} generations)"
            )
        return line


def words(value) -> str:
    """A field's value as its flag's text: a tuple or dict (of names) as a comma list."""
    return ",".join(map(str, value)) if isinstance(value, tuple | dict) else str(value)


def _check(field: dataclasses.Field, value) -> None:
    """ValueError naming the field's flag unless `value` is what `setting` allows."""
    meta, flag = field.metadata, "--" + flag_of(field).replace("_", "-")
    items = value if isinstance(value, tuple | dict) else (value,)
    if not items:
        raise ValueError(f"{flag} must not be empty")
    if isinstance(value, tuple) and len(set(value)) != len(value):
        raise ValueError(f"{flag} lists a value twice: {words(value)!r}")
    bad = [v for v in items if meta["choices"] is not None and v not in meta["choices"]]
    if bad and meta["every"] == "both":
        raise ValueError(f"{flag} must be {spelled(field)}, got {words(value)!r}")
    if bad:
        every = f" (or {meta['every']})" if meta["every"] else ""
        raise ValueError(f"{flag}: {bad} not among {', '.join(meta['choices'])}{every}")
    if meta["least"] is not None and min(items) < meta["least"]:
        got = list(value) if isinstance(value, tuple) else value
        raise ValueError(f"{flag} must be >= {meta['least']}, got {got}")


def _recorded(values: dict) -> dict:
    """The recorded settings (by flag) of Grid field values (by field name)."""
    out = {}
    for field in dataclasses.fields(Grid):
        if field.metadata["recorded"]:
            value, choices = values[field.name], field.metadata["choices"]
            listed = isinstance(value, tuple)
            out[flag_of(field)] = [c for c in choices if c in value] if listed else value
    return out


# Each field's default (those the paper used; models, pixels and attacks have none).
FIELD_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(Grid) if f.default is not dataclasses.MISSING
}
# The recorded settings of a workdir made before --search, --init, --targeted-from-scan,
# --sample-order: their defaults.
SETTING_DEFAULTS = _recorded(FIELD_DEFAULTS)
# The recorded settings each record names itself (its method): a workdir may gain items.
METHOD_SETTINGS = tuple(
    flag_of(f) for f in dataclasses.fields(Grid) if f.metadata["recorded"] == "grows"
)
