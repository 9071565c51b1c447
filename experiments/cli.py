"""Command-line pieces shared by experiments.cifar and experiments.imagenet: the common
flags, presets, classifier lookup with a clear message, and the run-then-summarise step."""

from __future__ import annotations

import argparse
import os
import sys
import time

from experiments import common, store
from rpx import regions


def add_grid_flags(p: argparse.ArgumentParser, models: str, pixels: str, attack: str) -> None:
    """The grid flags; defaults are None so a preset can fill what the user left out."""
    p.add_argument("--region", help="original, foreground, background, a comma list, or all")
    p.add_argument("--models", help=f"comma list of names or name=workdir (default {models})")
    p.add_argument("--pixels", help=f"comma list of pixel counts (default {pixels})")
    p.add_argument("--attack", help=f"untargeted, targeted or both (default {attack})")
    p.add_argument("--samples", type=int, help="images per model (default 500)")
    p.add_argument("--population", type=int, help="DE population (default 400)")
    p.add_argument("--generations", type=int, help="DE generations (default 100)")
    p.add_argument("--restriction", help="table, restore or both (the ablation; default table)")
    p.add_argument("--seed", type=int, help="picks the samples and seeds the attacks (default 0)")
    p.add_argument("--batch-size", type=int, help="images searched at once (default 16)")
    p.add_argument("--workdir", help="results.jsonl, table.md and figures/ go here")
    p.add_argument("--data-dir", help="folder with {dataset}-{split}.npz (default: tfds)")
    p.add_argument("--data-file", help="one .npz with `image` and `label` (instead of --data-dir)")
    p.add_argument("--classifiers", help="folder of classifier workdirs named {dataset}_{model}")
    p.add_argument("--preset", help="a named set of defaults, e.g. demo")


def resolve(args, presets: dict, defaults: dict) -> argparse.Namespace:
    """Fill unset flags from the preset, then from the defaults."""
    if args.preset is not None and args.preset not in presets:
        raise ValueError(f"--preset must be one of {', '.join(presets)}, got {args.preset!r}")
    preset = presets.get(args.preset, {})
    for name, value in {**defaults, **preset}.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def grid_from(args, dataset: str) -> common.Grid:
    """A Grid from resolved flags; ValueError names the bad flag."""
    for flag in ("samples", "population", "generations", "batch_size"):
        least = 4 if flag == "population" else 1
        if getattr(args, flag) < least:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= {least}")
    if args.generations < 0:
        raise ValueError("--generations must be >= 0")
    models = {}
    for item in common.parse_list("models", args.models):
        name, _, path = item.partition("=")
        models[name] = path or os.path.join(args.classifiers, f"{dataset}_{name}")
    restrictions = ("table", "restore") if args.restriction == "both" else (args.restriction,)
    common.parse_list("restriction", ",".join(restrictions), ("table", "restore"))
    pixels = common.parse_list("pixels", args.pixels, kind=int)
    if min(pixels) < 1:
        raise ValueError(f"--pixels must be >= 1, got {args.pixels!r}")
    return common.Grid(
        models=models,
        regions=common.parse_list("region", args.region, regions.REGION_NAMES),
        pixels=pixels,
        attacks=common.attacks_flag(args.attack),
        restrictions=restrictions,
        samples=args.samples,
        seed=args.seed,
        population=args.population,
        generations=args.generations,
        batch_size=args.batch_size,
    )


def load_classifiers(grid: common.Grid, dataset: str, data_flag: str):
    """{name: (predict, info)} for every model, or ValueError saying how to train one."""
    import train

    out = {}
    for name, workdir in grid.models.items():
        try:
            out[name] = train.load_classifier(workdir)
        except FileNotFoundError as err:
            raise ValueError(
                f"no classifier {name!r} at {workdir} ({err}). Train one with:\n"
                f"  python -m train --model={name} --dataset={dataset} --workdir={workdir} "
                f"{data_flag}\nor pass --models {name}=WORKDIR"
            ) from None
    return out


def budget_line(grid: common.Grid, paper_samples: int) -> str:
    """One line stating the budget, flagged when smaller than the paper's."""
    line = (
        f"budget: {grid.samples} images per model, population {grid.population}, "
        f"{grid.generations} generations, pixels {list(grid.pixels)}, "
        f"attacks {list(grid.attacks)}, regions {list(grid.regions)}"
    )
    if grid.samples < paper_samples or grid.population < 400 or grid.generations < 100:
        line += (
            f" (REDUCED: the paper used {paper_samples} images, population 400, 100 generations)"
        )
    return line


def run(grid, settings, workdir, total, get, loaded, foreground, summarise) -> int:
    """Check settings, run the grid into WORKDIR/results.jsonl, then `summarise(records)`."""
    store.check_settings(workdir, settings)
    results = store.ResultStore(os.path.join(workdir, "results.jsonl"))
    before = len(results)
    start = time.perf_counter()
    common.run_grid(grid, results, total, get, lambda name: loaded[name], foreground)
    seconds = time.perf_counter() - start
    print(
        f"{len(results) - before} new results in {seconds:.1f} s "
        f"({before} already in {results.path})"
    )
    for path in summarise(results.records):
        print(f"wrote {path}")
    return 0


def main_guard(fn, argv) -> int:
    """Run `fn(argv)`; a ValueError becomes 'error: ...' on stderr and exit status 2."""
    try:
        return fn(argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
