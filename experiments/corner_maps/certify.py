"""Certificates of the corner study's images: one pixel of any colour (issue 24).

    python -m experiments.corner_maps --certify --models=allconv --images=50 --batch=2 \
        --workdir=runs/corner-maps [--max-boxes=64 --search-steps=8 ...]

For each classifier, the corner maps' pick list (its first N correctly classified
images, `study.pick_list`) is certified with `rpx.certify` over the whole image
(untargeted, labels = the maps' labels, every colour of [0, 255]^3), batch by batch into
WORKDIR/NET/cert-{start:05d}-{stop:05d}.npz (`batches.BatchFolder(folder,
"cert")`: written atomically; a re-run certifies only the positions no file covers):

  index int32 [B], label int32 [B]          dataset indices and labels, as in the maps
  safe, fooled, undecided  bool [B, H, W]   `rpx.Certificate`'s
  witness  float32 [B, H, W, C]             the fooling colour, NaN where not fooled
  bound_passes  int32 [B, H, W]
  wall_seconds, cpu_seconds  float64        the batch's certify time (CPU: this process)
  settings  0-d str                         JSON of `settings`: the knobs and the weights

Batch files of other images (another pick list), other weights (parameter digest) or
other knobs are refused before anything is certified. `read` gives them back;
`cert_analysis` sets them beside the maps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np
from tqdm import tqdm

import rpx
from experiments.corner_maps.batches import BatchFolder, batches_of
from experiments.corner_maps.study import pick_list
from rpx.certification import bounds, branch

PREFIX = "cert"
# `rpx.certify`'s budget knobs and their defaults: each is a flag (--max-boxes, ...).
KNOBS = dict(max_boxes=64, chunk_size=256, enumerate_below=8, search_starts=2, search_steps=8)
_FIELDS = ("safe", "fooled", "undecided", "witness", "bound_passes")


def add_flags(p) -> None:
    """--certify and the knobs of `rpx.certify` on the corner study's parser."""
    p.add_argument("--certify", action="store_true", help="certify the mapped images instead")
    p.add_argument("--stop-after", type=float, help="seconds: no new certify batch after that")
    for knob, default in KNOBS.items():
        p.add_argument(
            f"--{knob.replace('_', '-')}", type=int, default=default, help=f"rpx.certify's {knob}"
        )


def knobs(args) -> dict:
    """{knob: value} from the flags; ValueError names a flag below its least value."""
    out = {k: getattr(args, k) for k in KNOBS}
    for knob, value in out.items():
        least = 0 if knob.startswith("search_") else 1
        if value < least:
            raise ValueError(f"--{knob.replace('_', '-')} must be >= {least}, got {value}")
    return out


def settings(knob_values: dict, evaluation: str, parameters: str) -> dict:
    """What each batch file records and a re-run must match."""
    return dict(
        certify="rpx.certify, whole image, untargeted, labels = the maps' labels, "
        "every integer colour of [0, 255]^3",
        evaluation=evaluation,
        parameters=parameters,
        # The bound engine's constants: batches of an engine that proves less (before
        # back-substitution, or another proof margin) are not mixed with these.
        engine=dict(
            bounds="forward linear forms, then back-substitution (CROWN) within reach",
            crown_reach=branch.CROWN_REACH,
            proof_rtol=bounds.PROOF_RTOL,
        ),
        **knob_values,
    )


@dataclasses.dataclass(frozen=True)
class Certs:
    """Every stored certificate batch of one classifier, in position order: index, label
    int32 [N]; safe, fooled, undecided bool [N, H, W]; witness float32 [N, H, W, C];
    bound_passes int32 [N, H, W]; batches: one dict per file (start, stop, wall_seconds,
    cpu_seconds, finished, settings)."""

    index: np.ndarray
    label: np.ndarray
    safe: np.ndarray
    fooled: np.ndarray
    undecided: np.ndarray
    witness: np.ndarray
    bound_passes: np.ndarray
    batches: list[dict]

    def __len__(self) -> int:
        return len(self.index)


def read(folder: str, expected_index=None, expected_settings: dict | None = None) -> Certs:
    """The cert batches of FOLDER; ValueError for a batch of other images than
    `expected_index` (the pick list) or made with other `expected_settings`."""
    store = BatchFolder(folder, PREFIX)
    parts, batches = [], []
    for start, stop, part in store.read_parts(expected_index):
        if any(k not in part for k in (*_FIELDS, "settings", "label")):
            raise ValueError(f"{store.path(start, stop)} is not a certificate batch; remove it")
        got = json.loads(str(part["settings"]))
        if expected_settings is not None and got != json.loads(json.dumps(expected_settings)):
            diff = {k: (got.get(k), v) for k, v in expected_settings.items() if got.get(k) != v}
            raise ValueError(
                f"{store.path(start, stop)} was certified with other settings or weights (was, "
                f"now: {diff}); use the same flags or another --workdir"
            )
        parts.append(part)
        batches.append(
            dict(
                start=start,
                stop=stop,
                finished=str(part["finished"]),
                settings=got,
                **{k: part[k].item() for k in ("wall_seconds", "cpu_seconds")},
            )
        )
    if not parts:
        empty = np.zeros((0, 0, 0), bool)
        return Certs(
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
            empty,
            empty,
            empty,
            np.zeros((0, 0, 0, 0), np.float32),
            np.zeros((0, 0, 0), np.int32),
            [],
        )
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("index", "label", *_FIELDS)}
    return Certs(**cat, batches=batches)


def certify_models(
    workdir,
    loaded,
    images,
    labels,
    count,
    batch_size,
    knob_values,
    evaluation="auto",
    stop_after=None,
) -> int:
    """Certify each classifier of `loaded` ({name: (predict, info)}) on its first `count`
    correct images into WORKDIR/NAME/, after refusing maps or cert batches of other
    images, weights or settings; no batch starts after `stop_after` seconds (a re-run
    resumes). Returns how many images were certified now."""
    done, began = 0, time.monotonic()
    for name, (predict, info) in loaded.items():
        picks = pick_list(name, predict, images, labels, count)
        folder = os.path.join(workdir, name)
        BatchFolder(folder).read(picks)  # the maps' batches, if any, hold these images
        want = settings(knob_values, evaluation, info["parameters"])
        read(folder, picks, want)
        todo = batches_of(BatchFolder(folder, PREFIX).missing(len(picks)), batch_size)
        with tqdm(total=sum(map(len, todo)), desc=f"{name} certify", unit="img") as bar:
            for positions in todo:
                if stop_after is not None and time.monotonic() - began > stop_after:
                    print(f"{name}: stopped after {stop_after:.0f} s; run again to resume")
                    return done
                idx = picks[positions]
                wall, cpu = time.perf_counter(), time.process_time()
                cert = rpx.certify(
                    predict,
                    images[idx],
                    np.asarray(labels[idx], np.int32),
                    evaluation=evaluation,
                    progress=False,
                    **knob_values,
                )
                got = {k: np.asarray(jax.device_get(getattr(cert, k))) for k in _FIELDS}
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                BatchFolder(folder, PREFIX).write_arrays(
                    positions[0],
                    index=idx.astype(np.int32),
                    label=np.asarray(labels[idx], np.int32),
                    **got,
                    wall_seconds=np.float64(wall),
                    cpu_seconds=np.float64(cpu),
                    settings=np.array(json.dumps(want, sort_keys=True)),
                )
                bar.update(len(idx))
                bar.write(
                    f"{name}: positions {positions[0]}-{positions[-1]}: "
                    f"{int(got['fooled'].any((1, 2)).sum())} vulnerable, {int(got['safe'].sum())}"
                    f" safe / {int(got['fooled'].sum())} fooled / {int(got['undecided'].sum())} "
                    f"undecided pixels in {wall:.1f} s wall, {cpu:.1f} s CPU"
                )
                done += len(idx)
    return done
