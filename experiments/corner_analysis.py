"""A corner-map workdir read back: every classifier's maps in every region, summarised.

`analyse(workdir)` reads settings.json, the GrabCut cache WORKDIR/masks.npz and each
classifier's batch files (`experiments.corner_batches`; the finished batches only, so it
can read the workdir of a run still going), builds the regions of
`experiments.corner_regions` for the scanned images and returns, per classifier and
region, `experiments.corner_stats.summarise` with bootstrap intervals, plus paired
differences between regions, how long the scan took and what the masks were like.
"""

from __future__ import annotations

import os

import numpy as np

from experiments import corner_de, corner_regions, corner_stats, store
from experiments.corner_batches import BatchFolder
from experiments.corner_study import mask_path
from rpx import segment

NUM_CLASSES = 10  # CIFAR-10
# Paired differences (a - b) the report shows, per classifier.
DIFFERENCES = (
    ("foreground", "background"),
    ("original", "background"),
    ("foreground", "size-matched background"),
    ("foreground+2", "background-2"),
    ("centre prior", "outside centre"),
)


def read_settings(workdir: str) -> dict:
    """WORKDIR/settings.json, or ValueError saying there is no corner-map run there."""
    path = os.path.join(workdir, "settings.json")
    if not os.path.isfile(path):
        raise ValueError(f"--workdir {workdir} holds no corner-map run (no settings.json)")
    return store.read_settings(path, ("scan", "models", "data"))


def analyse(workdir: str, resamples: int = 2000, seed: int = 0, de=None) -> dict:
    """The study's numbers from WORKDIR, JSON-ready.

    Args:
      workdir: a `python -m experiments.corner_maps` workdir.
      resamples: bootstrap resamples over images; seed: seeds them and the size-matched
        background subsets.

    Returns:
      {"settings": settings.json, "resamples", "seed", "nets": {name: {"images",
       "dataset_indices", "timing", "masks", "regions": {region: summary},
       "differences": {"a - b": difference}}}, "de": `corner_de.compare` (with `de`)};
      classifiers without a finished batch
      are left out.
    """
    settings = read_settings(workdir)
    cache = segment.MaskCache(mask_path(workdir), segment.GrabCutSettings(), settings["data"])
    nets = {}
    for name in sorted(settings["models"]):
        maps = BatchFolder(os.path.join(workdir, name)).read()
        if not len(maps):
            continue
        foreground = cache[maps.index]
        regions = corner_regions.regions(foreground, maps.index, seed)
        boot = corner_stats.resamples(len(maps), resamples, seed)
        facts = {
            r: corner_stats.image_facts(maps.classes, maps.label, m, NUM_CLASSES)
            for r, m in regions.items()
        }
        batches = maps.batches
        nets[name] = dict(
            images=len(maps),
            dataset_indices=maps.index.tolist(),
            timing=dict(
                batches=len(batches),
                evaluations=int(sum(b["evaluations"] for b in batches)),
                wall_seconds=float(sum(b["wall_seconds"] for b in batches)),
                cpu_seconds=float(sum(b["cpu_seconds"] for b in batches)),
                first_finished=min(b["finished"] for b in batches),
                last_finished=max(b["finished"] for b in batches),
            ),
            masks=dict(
                foreground_fraction=_spread(foreground.mean((1, 2))),
                paths=segment.path_counts(cache.paths[maps.index]),
            ),
            regions={r: corner_stats.summarise(f, boot) for r, f in facts.items()},
            differences={
                f"{a} - {b}": corner_stats.difference(facts[a], facts[b], boot)
                for a, b in DIFFERENCES
            },
        )
    out = dict(settings=settings, resamples=resamples, seed=seed, nets=nets)
    if de is not None:
        out["de"] = corner_de.compare(workdir, de, resamples, seed)
    return out


def _spread(values) -> dict:
    values = np.asarray(values, np.float64)
    return dict(
        mean=float(values.mean()),
        median=float(np.median(values)),
        min=float(values.min()),
        max=float(values.max()),
    )
