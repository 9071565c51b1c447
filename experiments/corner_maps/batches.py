"""One classifier's all-class corner maps on disk: a folder of compressed batch files.

WORKDIR/NET/ holds `maps-{start:05d}-{stop:05d}.npz`, one per finished batch of the
classifier's picked images (positions start..stop-1 of its pick list), each with

  classes  int8 [B, H, W, M]  predicted class with corner m at each pixel (`PixelMap.classes`)
  index    int32 [B]          dataset index of each image
  label    int32 [B]          its label (= the clean prediction: only correct images are picked)
  wall_seconds, cpu_seconds   float64 scalars: the batch's scan time (CPU: this process)
  evaluations                 int64 scalar: model evaluations the batch cost
  finished                    0-d str: when the batch was written (UTC, ISO 8601)

A batch is written to a temporary file beside it and renamed, so a file that exists is
whole; a run killed mid-batch leaves no batch file (a stray `.tmp-*` is ignored), and
the next run scans only the positions no file covers.

The same machinery holds other per-image batches of the same pick list under another
file prefix (`BatchFolder(folder, "cert")`: `experiments.corner_maps.certify`'s certificates),
through `write_arrays` and `read_parts`.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import os
import re

import numpy as np

from experiments.atomic import write_atomic


@dataclasses.dataclass(frozen=True)
class Maps:
    """Every stored batch of one classifier, in position order.

    classes int8 [N, H, W, M]; index int32 [N]; label int32 [N]; batches: one dict per
    batch file (start, stop, wall_seconds, cpu_seconds, evaluations, finished).
    """

    classes: np.ndarray
    index: np.ndarray
    label: np.ndarray
    batches: list[dict]

    def __len__(self) -> int:
        return len(self.index)


def span(batches: list[dict]) -> dict:
    """wall_seconds, cpu_seconds (summed) and first_finished, last_finished of batch
    dicts (`Maps.batches`, `certify.Certs.batches`)."""
    return dict(
        wall_seconds=float(sum(b["wall_seconds"] for b in batches)),
        cpu_seconds=float(sum(b["cpu_seconds"] for b in batches)),
        first_finished=min(b["finished"] for b in batches),
        last_finished=max(b["finished"] for b in batches),
    )


class BatchFolder:
    """The batch files `PREFIX-START-STOP.npz` of one classifier in `folder` (created on
    the first write); prefix "maps": the corner maps."""

    def __init__(self, folder: str, prefix: str = "maps"):
        self.folder, self.prefix = folder, prefix
        self.what = "corner-map" if prefix == "maps" else prefix  # for messages
        self._name = re.compile(re.escape(prefix) + r"-(\d{5,})-(\d{5,})\.npz$")

    def spans(self) -> list[tuple[int, int]]:
        """(start, stop) of every batch file present, sorted; ValueError if two overlap."""
        spans = []
        for path in glob.glob(os.path.join(self.folder, f"{self.prefix}-*.npz")):
            found = self._name.fullmatch(os.path.basename(path))
            if found:
                spans.append((int(found.group(1)), int(found.group(2))))
        spans.sort()
        for (a0, a1), (b0, b1) in zip(spans, spans[1:], strict=False):
            if b0 < a1:
                raise ValueError(
                    f"{self.folder}: batch files {a0}-{a1} and {b0}-{b1} overlap; remove one"
                )
        return spans

    def missing(self, count: int) -> list[int]:
        """Positions in [0, count) that no batch file covers, ascending."""
        done = np.zeros(count, bool)
        for start, stop in self.spans():
            done[start : min(stop, count)] = True
        return np.flatnonzero(~done).tolist()

    def path(self, start: int, stop: int) -> str:
        return os.path.join(self.folder, f"{self.prefix}-{start:05d}-{stop:05d}.npz")

    def write(self, start: int, classes, index, label, **timing) -> str:
        """Write the batch of positions start..start+B-1 atomically; returns its path.

        classes: int [B, H, W, M] in [-1, 127]; index, label: int [B]; timing:
        wall_seconds, cpu_seconds, evaluations.
        """
        classes = np.asarray(classes)
        if classes.ndim != 4 or classes.min(initial=0) < -1 or classes.max(initial=0) > 127:
            raise ValueError(f"classes must be int [B, H, W, M] in [-1, 127], got {classes.shape}")
        return self.write_arrays(
            start,
            classes=classes.astype(np.int8),
            index=np.asarray(index, np.int32),
            label=np.asarray(label, np.int32),
            wall_seconds=np.float64(timing["wall_seconds"]),
            cpu_seconds=np.float64(timing["cpu_seconds"]),
            evaluations=np.int64(timing["evaluations"]),
        )

    def write_arrays(self, start: int, **arrays) -> str:
        """Write one batch of positions start..start+B-1 (B = len(arrays["index"]))
        atomically, with `finished` added; returns its path."""
        path = self.path(start, start + len(arrays["index"]))
        arrays = dict(arrays, finished=np.array(_now()))
        write_atomic(path, lambda tmp: np.savez_compressed(tmp, **arrays))
        return path

    def read_parts(self, expected_index=None) -> list[tuple[int, int, dict]]:
        """[(start, stop, {name: array})] of every batch file, in position order. With
        `expected_index` (int [P], the pick list), ValueError unless every batch holds the
        images its positions name there."""
        out = []
        for start, stop in self.spans():
            path = self.path(start, stop)
            try:
                with np.load(path, allow_pickle=False) as d:
                    part = {k: d[k] for k in d.files}
            except Exception as err:  # zip and key errors alike: not a batch file
                raise ValueError(f"{path} is not a {self.what} batch ({err}); remove it") from None
            index = part.get("index")
            if index is None or index.ndim != 1:
                raise ValueError(f"{path} is not a {self.what} batch (no ['index']); remove it")
            if len(index) != stop - start:
                raise ValueError(
                    f"{path} holds {len(index)} index rows, not {stop - start}: cut short; "
                    "remove it"
                )
            if expected_index is not None:
                want = np.asarray(expected_index)[start:stop]  # shorter past the list's end
                if not np.array_equal(want, part["index"][: len(want)]):
                    raise ValueError(
                        f"{path} holds dataset images {part['index'][:5].tolist()}..., but "
                        f"positions {start}-{stop} are now {want[:5].tolist()}...: other data "
                        "or another classifier; use another --workdir"
                    )
            out.append((start, stop, part))
        return out

    def read(self, expected_index=None) -> Maps:
        """All corner-map batches in position order (`read_parts`' check of
        `expected_index`)."""
        parts, batches = [], []
        for start, stop, part in self.read_parts(expected_index):
            first = parts[0]["classes"] if parts else None
            _check_batch(self.path(start, stop), part, stop - start, first)
            parts.append(part)
            batches.append(
                dict(
                    start=start,
                    stop=stop,
                    finished=str(part["finished"]),
                    **{k: part[k].item() for k in ("wall_seconds", "cpu_seconds", "evaluations")},
                )
            )
        if not parts:
            return Maps(
                np.zeros((0, 0, 0, 0), np.int8), np.zeros(0, np.int32), np.zeros(0, np.int32), []
            )
        cat = {k: np.concatenate([p[k] for p in parts]) for k in ("classes", "index", "label")}
        return Maps(cat["classes"], cat["index"], cat["label"], batches)


# What `BatchFolder.write` stores: name -> (rank, numpy kind codes allowed).
_FIELDS = {
    "classes": (4, "i"), "index": (1, "iu"), "label": (1, "iu"), "wall_seconds": (0, "f"),
    "cpu_seconds": (0, "f"), "evaluations": (0, "iu"), "finished": (0, "U"),
}  # fmt: skip


def _check_batch(path: str, part: dict, size: int, first) -> None:
    """ValueError naming `path` unless it holds every field of a batch of `size` images
    (ranks, kinds, lengths), class maps in [-1, 127] shaped as the `first` batch's."""
    missing = sorted(set(_FIELDS) - set(part))
    if missing:
        raise ValueError(f"{path} is not a corner-map batch (no {missing}); remove it")
    for name, (rank, kinds) in _FIELDS.items():
        a = part[name]
        if a.ndim != rank or a.dtype.kind not in kinds:
            raise ValueError(
                f"{path} is not a corner-map batch ({name} is {a.dtype} {a.shape}); remove it"
            )
    for name in ("classes", "index", "label"):
        if len(part[name]) != size:
            raise ValueError(
                f"{path} holds {len(part[name])} {name} rows, not {size}: cut short; remove it"
            )
    classes = part["classes"]
    if classes.size and (classes.min() < -1 or classes.max() > 127):
        raise ValueError(f"{path} holds classes outside [-1, 127]; remove it")
    if size and (part["index"].min() < 0 or part["label"].min() < 0):
        raise ValueError(f"{path} holds negative image indices or labels; remove it")
    if first is not None and classes.shape[1:] != first.shape[1:]:
        raise ValueError(
            f"{path} holds maps of {classes.shape[1:]}, the other batches "
            f"{first.shape[1:]}: another run's; remove it"
        )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def batches_of(positions: list[int], size: int) -> list[list[int]]:
    """Consecutive runs of `positions` cut into batches of at most `size`."""
    out, run = [], []
    for p in positions:
        if run and (p != run[-1] + 1 or len(run) == size):
            out.append(run)
            run = []
        run.append(p)
    return out + [run] if run else out
