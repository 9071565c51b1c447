"""The experiments' command lines: the grid flags, presets, flags to a `Grid`, and one
clear error line (exit status 2) instead of a traceback for bad input.

An entry point checks every flag (`grid_from`, `check_files`) before it reads data or
loads a classifier, and reads and checks everything (data, classifiers, mask caches)
before `store.open_workdir` writes the first byte into the workdir.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments.grid import ATTACKS, SAMPLE_ORDERS, Grid
from rpx import regions
from rpx.search import INITS, SEARCHES

RESTRICTION_FLAG = ("table", "restore", "both")


def add_grid_flags(p: argparse.ArgumentParser, defaults: dict) -> None:
    """The grid flags; their defaults are None so a preset can fill what the user left
    out (`resolve`); `defaults` only words the help."""
    models, pixels, attack = defaults["models"], defaults["pixels"], defaults["attack"]
    p.add_argument("--region", help="original, foreground, background, a comma list, or all")
    p.add_argument("--models", help=f"comma list of names or name=workdir (default {models})")
    p.add_argument("--pixels", help=f"comma list of pixel counts (default {pixels})")
    p.add_argument("--attack", help=f"untargeted, targeted or both (default {attack})")
    p.add_argument("--samples", type=int, help="images per model (default 500)")
    p.add_argument("--population", type=int, help="DE population (default 400)")
    p.add_argument("--generations", type=int, help="DE generations (default 100)")
    p.add_argument("--restriction", help="table, restore or both (the ablation; default table)")
    p.add_argument("--search", help="comma list of de, sparse_rs (default de, the paper's)")
    p.add_argument("--init", help="comma list of DE inits: lhs, uniform, scan (default lhs)")
    p.add_argument(
        "--targeted-from-scan", action="store_true", default=None,
        help="answer the targeted 1-pixel cells from one all-class corner scan per image "
        "and region (rpx.pixel_map) instead of a search",
    )  # fmt: skip
    p.add_argument("--seed", type=int, help="picks the samples and seeds the attacks (default 0)")
    p.add_argument(
        "--sample-order", choices=SAMPLE_ORDERS,
        help="random (seeded, the paper's; default) or first: the first correctly classified "
        "images in dataset order (those experiments.corner_maps scans)",
    )  # fmt: skip
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


def grid_from(args, dataset: str) -> Grid:
    """A Grid from resolved flags; ValueError names the bad flag."""
    if args.restriction not in RESTRICTION_FLAG:
        raise ValueError(
            f"--restriction must be {', '.join(RESTRICTION_FLAG[:-1])} or "
            f"{RESTRICTION_FLAG[-1]}, got {args.restriction!r}"
        )
    if not args.workdir:
        raise ValueError("--workdir must not be empty")
    models = models_flag(args.models, args.classifiers, dataset)
    restrictions = ("table", "restore") if args.restriction == "both" else (args.restriction,)
    return Grid(
        models=models,
        regions=parse_list("region", args.region, regions.REGION_NAMES),
        pixels=parse_list("pixels", args.pixels, kind=int),
        attacks=attacks_flag(args.attack),
        restrictions=restrictions,
        samples=args.samples,
        seed=args.seed,
        population=args.population,
        generations=args.generations,
        batch_size=args.batch_size,
        searches=parse_list("search", args.search, SEARCHES),
        inits=parse_list("init", args.init, INITS),
        targeted_from_scan=bool(args.targeted_from_scan),
        sample_order=args.sample_order,
    )


def models_flag(text: str, classifiers: str, dataset: str, reserved=()) -> dict[str, str]:
    """--models: a comma list of names (CLASSIFIERS/{dataset}_NAME) or name=workdir ->
    {name: workdir}; ValueError names the flag (a name that is empty, holds '/', comes
    twice or is `reserved`, e.g. a folder name the workdir uses)."""
    models = {}
    for item in parse_list("models", text):
        name, _, path = item.partition("=")
        if not name or "/" in name or name in models or name in reserved:
            raise ValueError(
                f"--models: {name!r} is empty, holds '/', comes twice or is reserved (in {text!r})"
            )
        models[name] = path or os.path.join(classifiers, f"{dataset}_{name}")
    return models


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


def check_files(**paths) -> None:
    """ValueError unless each flag's path (None: not given) names an existing file."""
    for flag, path in paths.items():
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"--{flag.replace('_', '-')} {path} does not exist or is not a file")


def main_guard(fn, argv) -> int:
    """Run `fn(argv)`; a ValueError (bad input) or OSError (a file that cannot be read or
    written: permissions, a full disk) becomes 'error: ...' on stderr and exit status 2."""
    try:
        return fn(argv)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
