"""What found a record: an rpx search (`--search`, `--init`) or the corner scan.

A record of the paper's method (DE from a latin hypercube) holds no method fields, as
records did before the flags existed, so its key, its randomness and its line stay what
they were. Any other method writes `search` and `init` into its records (and into the
cell's name, so its randomness differs):

  search="de", init="uniform" | "scan"   DE from another initial population
  search="sparse_rs", init=None          Sparse-RS (it draws its own initial sets)
  search="scan", init=None               targeted 1-pixel rows answered by one
                                         all-class corner scan (`--targeted-from-scan`,
                                         `experiments.grid.scan_targets`)
"""

from __future__ import annotations

from typing import NamedTuple


class Method(NamedTuple):
    """A search and its init (None for a search without DE's initial population); equal
    to the plain (search, init) tuple."""

    search: str
    init: str | None


DEFAULT = Method("de", "lhs")
SCAN = Method("scan", None)
SCAN_NOTE = (
    "targeted 1-pixel rows from one all-class corner scan per image and region: "
    "region pixels x 8 queries shared by all its targets"
)


def of(record: dict) -> Method:
    """The method of a record; the paper's DE with LHS when it holds neither field."""
    return Method(record.get("search", DEFAULT.search), record.get("init", DEFAULT.init))


def fields(search: str, init: str | None) -> dict:
    """The fields a record of this method holds: none for the paper's DE with LHS;
    init None for a search without DE's initial population (Sparse-RS, the scan)."""
    if (search, init) == DEFAULT:
        return {}
    return {"search": search, "init": init if search == "de" else None}


def label(method: Method) -> str:
    """Words for a method in tables and titles; "" for the paper's DE with LHS."""
    if method == DEFAULT:
        return ""
    if method == SCAN:
        return f"search=scan ({SCAN_NOTE})"
    return f"search={method.search}" + (f", init={method.init}" if method.init is not None else "")


def short(method: Method) -> str:
    """A few words for a method in figure titles; "" for the paper's DE with LHS."""
    if method == DEFAULT:
        return ""
    return method.search + (f", init {method.init}" if method.init is not None else "")


def suffix(method: Method) -> str:
    """A file-name suffix for a method; "" for the paper's DE with LHS."""
    return "" if method == DEFAULT else "_" + "_".join(v for v in method if v is not None)


def order(method: Method) -> tuple:
    """Sort key: the paper's method first, then by name."""
    return (method != DEFAULT, method.search, method.init or "")


def split(records) -> list[tuple[Method, list[dict]]]:
    """Records grouped by method, the paper's first."""
    out: dict[Method, list[dict]] = {}
    for r in records:
        out.setdefault(of(r), []).append(r)
    return sorted(out.items(), key=lambda item: order(item[0]))
