"""Command-line pieces shared by the experiments: the common flags, presets, classifier
lookup with a clear message, the locked workdir, and the run-then-summarise step.

An entry point checks every flag (`grid_from`, `check_files`) before it reads data or
loads a classifier, and reads and checks everything (data, classifiers, mask caches)
before `open_workdir` writes the first byte into the workdir."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common, store
from rpx import regions

RESTRICTIONS = ("table", "restore", "both")


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
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.restriction not in RESTRICTIONS:
        raise ValueError(
            f"--restriction must be {', '.join(RESTRICTIONS[:-1])} or {RESTRICTIONS[-1]}, "
            f"got {args.restriction!r}"
        )
    if not args.workdir:
        raise ValueError("--workdir must not be empty")
    models = {}
    for item in common.parse_list("models", args.models):
        name, _, path = item.partition("=")
        if not name or "/" in name or name in models:
            raise ValueError(
                f"--models: {name!r} is empty, holds '/' or comes twice (in {args.models!r})"
            )
        models[name] = path or os.path.join(args.classifiers, f"{dataset}_{name}")
    restrictions = ("table", "restore") if args.restriction == "both" else (args.restriction,)
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


def check_files(**paths) -> None:
    """ValueError unless each flag's path (None: not given) names an existing file."""
    for flag, path in paths.items():
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"--{flag.replace('_', '-')} {path} does not exist or is not a file")


def load_classifiers(grid: common.Grid, dataset: str, data_flag: str, image_shape):
    """{name: (predict, info)} for every model, or ValueError saying how to train one or
    what is wrong with its checkpoint. `info` gains "num_classes" and "parameters" (see
    `classifier_identity`) for images of `image_shape` (H, W, C)."""
    import train

    out = {}
    for name, workdir in grid.models.items():
        try:
            predict, info = train.load_classifier(workdir)
        except FileNotFoundError as err:
            raise ValueError(
                f"no classifier {name!r} at {workdir} ({err}). Train one with:\n"
                f"  python -m train --model={name} --dataset={dataset} --workdir={workdir} "
                f"{data_flag}\nor pass --models {name}=WORKDIR"
            ) from None
        except ValueError as err:
            raise ValueError(f"classifier {name!r}: {err}") from None
        num_classes, parameters = classifier_identity(predict, image_shape)
        out[name] = predict, dict(info, num_classes=num_classes, parameters=parameters)
    return out


def classifier_identity(predict, image_shape) -> tuple[int, str]:
    """(number of classes, parameter digest) of `predict` on images [B, *image_shape].

    The digest names the arrays `predict` closes over (its weights) by content: a SHA-256
    over each array's dtype, shape and bytes, the per-array digests sorted (an order that
    does not depend on how JAX orders a traced program's constants). Tracing only: no
    forward pass is run.
    """
    probe = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    program, out = jax.make_jaxpr(predict, return_shape=True)(probe)
    leaves = []
    for const in program.consts:
        a = np.ascontiguousarray(np.asarray(const))
        digest = hashlib.sha256(f"{a.dtype.str} {a.shape} ".encode())
        digest.update(a.tobytes())
        leaves.append(digest.digest())
    total = hashlib.sha256(b"".join(sorted(leaves))).hexdigest()[:16]
    return int(out.shape[-1]), f"{len(leaves)} arrays, sha256 {total}"


def check_labels(labels, loaded: dict, source: str) -> None:
    """ValueError if a label lies outside some classifier's classes [0, K)."""
    labels = np.asarray(labels)
    for name, (_, info) in loaded.items():
        k = info["num_classes"]
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(
                f"{source} has labels in [{labels.min()}, {labels.max()}], outside the {k} "
                f"classes [0, {k - 1}] of classifier {name!r}: not this classifier's data?"
            )


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


@contextlib.contextmanager
def open_workdir(workdir: str, settings: dict, loaded: dict):
    """Lock WORKDIR for the `with` block, read and check its results.jsonl, then check
    (or write) settings.json with each classifier's parameter digest; yields the
    ResultStore. Nothing is written when any of it is refused."""
    with store.locked(workdir):
        results = store.ResultStore(os.path.join(workdir, "results.jsonl"))
        models = {name: info["parameters"] for name, (_, info) in loaded.items()}
        store.check_settings(workdir, settings, models)
        yield results


def run(grid, results, total, get, loaded, foreground, summarise) -> int:
    """Run the grid into `results` (a ResultStore), then `summarise(records)`."""
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
    """Run `fn(argv)`; a ValueError (bad input) or OSError (a file that cannot be read or
    written: permissions, a full disk) becomes 'error: ...' on stderr and exit status 2."""
    try:
        return fn(argv)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
