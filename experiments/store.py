"""A run's workdir: results.jsonl, settings.json and the lock that makes the run its only writer.

results.jsonl holds one JSON record per attack, appended as soon as it is known. A killed
run loses nothing already written: a re-run reads the file, skips the rows whose key is
present and appends only new ones, so the file never holds a key twice. A line cut short
by the kill (no trailing newline) is dropped before the first new line is appended. A file
edited by hand or broken otherwise is refused, one line naming the file and line, and left
as it is: every record is checked against one schema (`check_record`: the fields and
their types, and the values the workdir's `Bounds` allow: image indices of its data,
classes of its classifier, positions inside its images, models its settings.json
records), and two lines with one key and different content are ambiguous. The settings that make
the results comparable (budget, seed, data, each classifier's parameter digest) are kept
in `settings.json` beside the file, and a re-run with other settings is refused rather
than mixed in (lists the records name themselves, such as the methods, may grow).
`locked(workdir)` holds WORKDIR/run.lock for the whole run, so a second run on the same
workdir is refused instead of writing every row twice. `open_workdir` does all three in
order for a run: lock, read results.jsonl, check settings.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os

from experiments.atomic import write_atomic
from experiments.grid import methods

# The fields that name one attack: one line per distinct key. A record without the
# method fields (search, init) is the paper's DE with LHS (`experiments.grid.methods`).
KEY_FIELDS = (
    "model", "region", "pixels", "restriction", "attack", "image", "target", "search", "init",
)  # fmt: skip
KEY_DEFAULTS = dict(zip(("search", "init"), methods.DEFAULT, strict=True))
# What each field of a record holds (experiments.metrics.records plus the cell's fields).
FIELD_TYPES = {
    "model": str, "region": str, "pixels": int, "restriction": str, "attack": str,
    "image": int, "target": (int, type(None)), "label": int, "success": bool,
    "predicted": int, "confidence": (float, int, type(None)), "generations": int,
    "queries": int, "clean_top": list, "clean_top_p": list, "adv_top": list,
    "adv_p_at_clean_top": list, "positions": list, "colors": list,
}  # fmt: skip
# Fields a record may hold (a method other than the paper's, see experiments.grid.methods).
OPTIONAL_TYPES = {"search": str, "init": (str, type(None)), "fitness_curve": list}
LOCK_FILE = "run.lock"


def record_key(record: dict) -> tuple:
    """The tuple of KEY_FIELDS naming the attack of `record` (absent method fields read
    as the paper's DE with LHS, so older records keep their keys)."""
    return tuple(record.get(k, KEY_DEFAULTS.get(k)) for k in KEY_FIELDS)


@dataclasses.dataclass(frozen=True)
class Bounds:
    """What the records of a workdir may name; None leaves that unchecked.

    images: N, the data's image count (indices in [0, N)); shape: (H, W) of its images;
    classes: {model name: K} (a model not listed is held to its records' own
    num_classes); models: the classifier names settings.json records.
    """

    images: int | None = None
    shape: tuple[int, int] | None = None
    classes: dict | None = None
    models: frozenset | None = None


def check_record(record, bounds: Bounds = Bounds()) -> None:
    """ValueError unless `record` is a dict holding every field of a result record, each
    of its type and within `bounds`; the message names the field and what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"a result record is a JSON object, got a {type(record).__name__}")
    missing = [k for k in FIELD_TYPES if k not in record]
    if missing:
        raise ValueError(f"a result record without {missing}")
    optional = {k: kind for k, kind in OPTIONAL_TYPES.items() if k in record}
    for k, kind in {**FIELD_TYPES, **optional}.items():
        v = record[k]
        if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
            raise ValueError(f"field {k!r} holds {v!r}")
    _check_values(record, bounds)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_values(r: dict, bounds: Bounds) -> None:
    """The values of a record of the right types: ValueError naming the first wrong one."""

    def refuse(field, why):
        raise ValueError(f"field {field!r} holds {str(r.get(field))[:80]}: {why}")

    if r["attack"] not in ("untargeted", "targeted"):
        refuse("attack", "neither untargeted nor targeted")
    if (r["target"] is None) != (r["attack"] == "untargeted"):
        refuse("target", f"not what a {r['attack']} attack has")
    for field, least in (("pixels", 1), ("generations", 0), ("queries", 0)):
        if r[field] < least:
            refuse(field, f"less than {least}")
    if bounds.models is not None and r["model"] not in bounds.models:
        refuse("model", f"not among the classifiers settings.json records {sorted(bounds.models)}")
    if bounds.images is not None and not 0 <= r["image"] < bounds.images:
        refuse("image", f"not an index of the data's {bounds.images} images")
    own = r.get("num_classes")
    if "num_classes" in r and not (_is_int(own) and own >= 1):
        refuse("num_classes", "not a positive integer")
    k = (bounds.classes or {}).get(r["model"], own)
    if own is not None and own != k:
        refuse("num_classes", f"not the {k} classes of classifier {r['model']!r}")
    for field in ("label", "predicted", "target", "clean_top", "adv_top"):
        values = r[field] if isinstance(r[field], list) else [r[field]]
        values = [v for v in values if not (field == "target" and v is None)]
        if not all(_is_int(v) and v >= 0 and (k is None or v < k) for v in values):
            refuse(field, f"not a class index in [0, {k if k is not None else 'K'})")
    for field in ("clean_top_p", "adv_p_at_clean_top"):
        if not all(_is_number(v) for v in r[field]):
            refuse(field, "not a list of finite numbers")
    if r["confidence"] is not None and not _is_number(r["confidence"]):
        refuse("confidence", "not a finite number")
    # Fig. 6 stacks the untargeted curves: each a list of fitness values (null: NaN).
    if r["attack"] == "untargeted":
        curve = r.get("fitness_curve")
        if not (curve and all(v is None or _is_number(v) for v in curve)):
            refuse("fitness_curve", "not the non-empty list of numbers an untargeted attack has")
    # One (row, col) per changed pixel, inside the image; (-1, -1): none changed (empty
    # region). Figures and the corner studies index images with them.
    h, w = bounds.shape or (math.inf, math.inf)
    positions = r["positions"]
    if len(positions) != r["pixels"] or not all(
        isinstance(p, list) and len(p) == 2 and all(map(_is_int, p))
        and (p == [-1, -1] or (0 <= p[0] < h and 0 <= p[1] < w))
        for p in positions
    ):  # fmt: skip
        where = f"inside {h} x {w} images" if bounds.shape else "(row, col) pairs"
        refuse("positions", f"not {r['pixels']} (row, col) pairs {where}")
    colors = r["colors"]
    if len(colors) != r["pixels"] or not all(
        isinstance(c, list) and c and len(c) == len(colors[0]) and all(map(_is_number, c))
        for c in colors
    ):
        refuse("colors", f"not {r['pixels']} colours of finite numbers")


class ResultStore:
    """Append-only JSONL results with a set of the keys already present.

    Opening reads and checks every line and writes nothing: a line that is not a result
    record within `bounds`, or that repeats another line's key with other content, raises
    ValueError naming the file and line, the file untouched. A last line cut short by a
    kill is dropped (truncated away) just before the first append.

    Args:
      path: the results.jsonl file (created with its folder on the first append).
      bounds: what the records may name (`Bounds`); by default only the schema's types.
    """

    def __init__(self, path: str, bounds: Bounds = Bounds()):
        self.path = path
        self.bounds = bounds
        self.records: list[dict] = []
        self.keys: set[tuple] = set()
        self._cut = None  # before the first append: cut the file to this length,
        self._prefix = ""  # or end its last line
        if os.path.exists(path):
            self._load()

    def _load(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        lines = complete.decode(errors="replace").splitlines()
        fragment = data[len(complete) :]
        if fragment:
            try:  # a whole record without its newline (e.g. an editor's save) is kept
                check_record(json.loads(fragment), self.bounds)
                lines.append(fragment.decode())
                self._prefix = "\n"
            except ValueError:  # a line the kill cut short (JSON or UTF-8 errors)
                self._cut = len(complete)
        first: dict[tuple, int] = {}  # key -> index of its record, for line numbers
        numbers = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                check_record(record, self.bounds)
            except ValueError as err:
                raise ValueError(
                    f"{self.path}:{number}: not a result record ({err}); fix or remove "
                    "that line (the file is left as it is)"
                ) from None
            key = record_key(record)
            if key in first:
                if self.records[first[key]] != record:
                    raise ValueError(
                        f"{self.path}:{number}: the attack of line {numbers[first[key]]} "
                        f"again with other content ({dict(zip(KEY_FIELDS, key, strict=True))}); "
                        "remove one of the two lines (the file is left as it is)"
                    )
                continue
            first[key] = len(self.records)
            self.keys.add(key)
            self.records.append(record)
            numbers.append(number)

    def __contains__(self, key: tuple) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return len(self.records)

    def append(self, records: list[dict]) -> int:
        """Write the records whose key is new, flushed to disk; returns how many."""
        new = []
        for r in records:
            key = record_key(r)
            if key not in self.keys:
                self.keys.add(key)
                new.append(r)
        if new:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            if self._cut is not None:
                with open(self.path, "r+b") as f:
                    f.truncate(self._cut)
            with open(self.path, "a") as f:
                f.write(self._prefix)
                f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in new))
                f.flush()
                os.fsync(f.fileno())
            self.records.extend(new)
            self._cut, self._prefix = None, ""
        return len(new)


def check_settings(
    workdir: str,
    settings: dict,
    models: dict | None = None,
    defaults: dict | None = None,
    grows: tuple[str, ...] = (),
) -> None:
    """Write WORKDIR/settings.json, or raise ValueError if it holds other settings.

    Args:
      settings: JSON-serialisable settings that must equal the recorded ones.
      models: {model name: identity (e.g. a parameter digest)}, kept under "models":
        a name recorded with another identity is refused (other weights behind the same
        name); new names are added.
      defaults: {setting: value} for settings added since a workdir may have been made:
        one its settings.json lacks reads as this value (the file is left as it is).
      grows: settings whose values are lists of what the records name themselves (e.g.
        the methods: each record says which it came from), so a run with other items
        adds to the workdir instead of being refused; the file records the union, in
        recorded order then new items.
    """
    path = os.path.join(workdir, "settings.json")
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
    models = json.loads(json.dumps(models or {}))
    if os.path.exists(path):
        old = {**json.loads(json.dumps(defaults or {})), **read_settings(path)}
        known = old.pop("models", {})
        grown = {
            k: old[k] + [item for item in settings[k] if item not in old[k]]
            for k in grows
            if isinstance(old.get(k), list) and isinstance(settings.get(k), list)
        }
        if {**old, **grown} != {**settings, **grown}:
            diff = {k: (old.get(k), settings.get(k)) for k in old.keys() | settings.keys()}
            diff = {k: v for k, v in diff.items() if v[0] != v[1] and k not in grown}
            raise ValueError(
                f"--workdir {workdir} holds results made with other settings "
                f"(was, now: {diff}); use another --workdir or the same settings"
            )
        for name, identity in models.items():
            if name in known and known[name] != identity:
                raise ValueError(
                    f"--workdir {workdir} holds results of another classifier named {name!r} "
                    f"(its parameters were {known[name]}, now {identity}); use another "
                    "--workdir or another name for this classifier"
                )
        if models.keys() <= known.keys() and all(grown[k] == old[k] for k in grown):
            return
        settings = {**settings, **grown}
        models = {**known, **models}
    os.makedirs(workdir, exist_ok=True)
    text = json.dumps({**settings, "models": models}, indent=2, sort_keys=True)
    write_atomic(path, text)


def recorded_bounds(workdir: str, bounds: Bounds = Bounds()) -> Bounds:
    """`bounds` with `models` the classifiers WORKDIR/settings.json records: none when it
    is absent (results without settings are comparable to nothing), unchecked when it
    predates the "models" entry."""
    path = os.path.join(workdir, "settings.json")
    recorded = read_settings(path) if os.path.exists(path) else {"models": {}}
    known = recorded.get("models")
    return dataclasses.replace(bounds, models=None if known is None else frozenset(known))


def read_settings(path: str, required: tuple[str, ...] = ()) -> dict:
    """The settings.json at `path` (a JSON object, "models" an object if present), holding
    every `required` key; else ValueError naming the file and what is wrong."""
    try:
        with open(path) as f:
            old = json.load(f)
    except ValueError as err:
        raise ValueError(f"{path} is not a settings file ({err})") from None
    if not isinstance(old, dict) or not isinstance(old.get("models", {}), dict):
        raise ValueError(f"{path} is not a settings file (not a JSON object of settings)")
    missing = [k for k in required if k not in old]
    if missing:
        raise ValueError(f"{path} is not the settings of this kind of run (no {missing})")
    return old


@contextlib.contextmanager
def locked(workdir: str):
    """Hold an exclusive lock on `workdir` (creating it) for the `with` block.

    The lock is an flock on WORKDIR/run.lock, which holds the holder's process id. The
    kernel releases it when the process ends, however it ends. ValueError if another
    process holds it (naming the workdir and that process) or the workdir cannot be
    written; the lock file is then left as it is.
    """
    path = os.path.join(workdir, LOCK_FILE)
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ValueError(f"cannot write to --workdir {workdir}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ValueError(
                f"--workdir {workdir} is in use by another run (process {holder}, lock "
                f"{path}); wait for it to end or use another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_workdir(
    workdir: str,
    settings: dict,
    models: dict,
    defaults: dict | None = None,
    grows: tuple[str, ...] = (),
    bounds: Bounds = Bounds(),
):
    """Lock WORKDIR for the `with` block, read and check its results.jsonl, then check
    (or write) settings.json with `models` ({name: parameter digest}), `defaults` and
    `grows` (see `check_settings`); yields the ResultStore. Every record must lie within
    `bounds` and name a model settings.json records. Nothing is written when any of it is
    refused."""
    with locked(workdir):
        results = ResultStore(
            os.path.join(workdir, "results.jsonl"), recorded_bounds(workdir, bounds)
        )
        check_settings(workdir, settings, models, defaults, grows)
        yield results
