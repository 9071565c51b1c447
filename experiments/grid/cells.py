"""One cell of the grid (`Cell`: model, region, pixel count, restriction, attack and
method), the fields its records hold, its PRNG key and its targets."""

from __future__ import annotations

import zlib
from typing import NamedTuple

import jax
import numpy as np

from experiments.grid import methods


class Cell(NamedTuple):
    """One cell: every row of it attacks one picked image (towards one target)."""

    model: str
    region: str
    pixels: int
    restriction: str
    attack: str
    method: methods.Method = methods.DEFAULT

    def fields(self) -> dict:
        """The fields each of its records holds (the method's only if not the paper's)."""
        return dict(model=self.model, region=self.region, pixels=self.pixels,
                    restriction=self.restriction, attack=self.attack,
                    **methods.fields(*self.method))  # fmt: skip

    def name(self) -> str:
        """Its fields' values joined by '/', for progress lines."""
        return "/".join(str(v) for v in self.fields().values())

    def key(self, seed: int):
        """`cell_key` of this cell."""
        return cell_key(seed, **self.fields())


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


def other_classes(labels, num_classes: int) -> np.ndarray:
    """int [N, K-1]: for each label, every other class in increasing order."""
    labels = np.asarray(labels)
    classes = np.arange(num_classes)
    return np.stack([classes[classes != y] for y in labels]).astype(np.int32)
