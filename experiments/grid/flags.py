"""The grammar of the grid flags' text, each turned into a `Grid` field's value: comma
lists ("all" for every choice), a choice or "both", and named classifiers. What the
values may be is `Grid`'s to check; ValueError here names the flag whose text is not
read."""

from __future__ import annotations


def parse_list(flag: str, text: str, choices=None, kind=str) -> tuple:
    """A comma list flag -> tuple; "all" means every choice. ValueError names the flag."""
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if choices is not None and items == ["all"]:
        return tuple(choices)
    if not items:
        raise ValueError(f"--{flag} must not be empty")
    try:
        return tuple(kind(s) for s in items)
    except ValueError:
        raise ValueError(
            f"--{flag} must be a comma list of {kind.__name__}, got {text!r}"
        ) from None


def listing(choices=None, kind=str):
    """`parse_list` of these choices (or kind) as a flag's parser (flag, text) -> tuple."""
    return lambda flag, text: parse_list(flag, text, choices, kind)


def either(choices: tuple[str, ...]):
    """A flag's parser (flag, text) -> tuple: one of `choices`, or "both" for all."""
    return lambda flag, text: tuple(choices) if text == "both" else (text,)


def named(flag: str, text: str, reserved=()) -> dict[str, str | None]:
    """--models: a comma list of names or name=workdir -> {name: workdir, None where only
    the name is given}; ValueError names the flag (a name that is empty, holds '/', comes
    twice or is `reserved`, e.g. a folder name the workdir uses)."""
    models = {}
    for item in parse_list(flag, text):
        name, _, path = item.partition("=")
        if not name or "/" in name or name in models or name in reserved:
            raise ValueError(
                f"--{flag}: {name!r} is empty, holds '/', comes twice or is reserved (in {text!r})"
            )
        models[name] = path or None
    return models
