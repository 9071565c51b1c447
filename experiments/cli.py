"""The experiments' command lines: the grid flags, presets, flags to a `Grid`, and one
clear error line (exit status 2) instead of a traceback for bad input.

An entry point checks every flag (`grid_from`, `check_files`) before it reads data or
loads a classifier, and reads and checks everything (data, classifiers, mask caches)
before `store.open_workdir` writes the first byte into the workdir.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from experiments.grid import Grid, flag_of, flags, spelled, words

# The flags besides the grid's: a dataset's DEFAULTS and a preset may set them too.
OTHER_FLAGS = {
    "workdir": "results.jsonl, table.md and figures/ go here",
    "data_dir": "folder with {dataset}-{split}.npz (default: tfds)",
    "data_file": "one .npz with `image` and `label` (instead of --data-dir)",
    "classifiers": "folder of classifier workdirs named {dataset}_{model}",
    "preset": "a named set of defaults, e.g. demo",
}


def add_grid_flags(p: argparse.ArgumentParser, defaults: dict) -> None:
    """A flag for each `Grid` field (`experiments.grid.setting`), then `OTHER_FLAGS`.
    Their defaults are None so a preset can fill what the user left out (`resolve`);
    `defaults` (a dataset's `Grid` overrides and other flags) only words the help."""
    for field in dataclasses.fields(Grid):
        flag, default = flag_of(field), defaults.get(field.name, field.default)
        name, named = "--" + flag.replace("_", "-"), dict(dest=field.name, default=None)
        if field.type == "bool":
            p.add_argument(name, action="store_true", help=field.metadata["help"], **named)
            continue
        said = field.metadata["help"] + "".join(f": {w}" for w in [spelled(field)] if w)
        if default is not dataclasses.MISSING:
            said += f" (default {shown(default, field)})"
        kind = int if field.type == "int" else str
        p.add_argument(name, type=kind, metavar=flag.upper(), help=said, **named)
    for name, help in OTHER_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), help=help)


def shown(value, field: dataclasses.Field) -> str:
    """A flag's default as its text (`experiments.grid.words`), or the word for every
    choice (`setting`'s `every`)."""
    meta = field.metadata
    if meta["every"] and len(meta["choices"]) > 1 and value == tuple(meta["choices"]):
        return meta["every"]
    return words(value)


def resolve(args, presets: dict, defaults: dict) -> argparse.Namespace:
    """Each grid field of `args` from its flag's text (`Grid` field values), else from
    the preset, else from `defaults` (both `Grid` overrides and other flags' values);
    None where none says (the field's default). Other flags unset likewise."""
    if args.preset is not None and args.preset not in presets:
        raise ValueError(f"--preset must be one of {', '.join(presets)}, got {args.preset!r}")
    given = {**defaults, **presets.get(args.preset, {})}
    for field in dataclasses.fields(Grid):
        text, parse = getattr(args, field.name), field.metadata["parse"]
        if text is None:
            setattr(args, field.name, given.get(field.name))
        elif parse is not None:
            setattr(args, field.name, parse(flag_of(field), text))
    for name in OTHER_FLAGS:
        if getattr(args, name, None) is None:
            setattr(args, name, given.get(name))
    return args


def grid_from(args, dataset: str) -> Grid:
    """A Grid from resolved flags, the models named only looked up as
    CLASSIFIERS/{dataset}_NAME; ValueError names the bad flag."""
    if not args.workdir:
        raise ValueError("--workdir must not be empty")
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Grid)}
    values["models"] = locate(args.models or {}, args.classifiers, dataset)
    return Grid(**{name: value for name, value in values.items() if value is not None})


def locate(models: dict[str, str | None], classifiers: str, dataset: str) -> dict[str, str]:
    """{name: workdir}: a model without one is CLASSIFIERS/{dataset}_NAME."""
    return {n: path or os.path.join(classifiers, f"{dataset}_{n}") for n, path in models.items()}


def models_flag(text: str, classifiers: str, dataset: str, reserved=()) -> dict[str, str]:
    """--models: a comma list of names (CLASSIFIERS/{dataset}_NAME) or name=workdir ->
    {name: workdir}; ValueError names the flag (`experiments.grid.flags.named`)."""
    return locate(flags.named("models", text, reserved), classifiers, dataset)


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
