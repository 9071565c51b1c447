"""python -m train --model=NAME --dataset=cifar10 --workdir=DIR [--data-dir DIR] ..."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from train.loop import Config


def parse(argv: list[str] | None = None) -> tuple[Config, bool]:
    """Command line -> (Config, multihost)."""
    from train import models

    defaults = Config(model="", workdir="")
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    p.add_argument("--model", required=True, help=f"one of: {', '.join(models.names())}")
    p.add_argument("--workdir", required=True, help="checkpoints and metrics.jsonl go here")
    p.add_argument("--multihost", action="store_true", help="call jax.distributed.initialize()")
    for f in dataclasses.fields(Config):
        if f.name in ("model", "workdir"):
            continue
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
            continue
        # Annotations are strings here ("int | None", "float", ...): take the base type.
        kind = {"int": int, "float": float}.get(f.type.split(" ")[0], str)
        p.add_argument(flag, type=kind, default=default, help=f"default: {default}")
    args = vars(p.parse_args(argv))
    multihost = args.pop("multihost")
    return Config(**args), multihost


def main(argv: list[str] | None = None) -> int:
    config, multihost = parse(argv)
    if multihost:
        import jax

        jax.distributed.initialize()  # before anything asks for devices
    from train import loop

    try:
        r = loop.setup(config)  # bad flags or missing data fail here, with a message
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        loop.run(r)
    finally:
        r.mngr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
