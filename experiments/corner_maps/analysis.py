"""A corner-map workdir read back: every classifier's maps in every region, summarised.

`analyse(workdir)` reads settings.json, the GrabCut cache WORKDIR/masks.npz and each
classifier's batch files (`experiments.corner_maps.batches`; the finished batches only, so it
can read the workdir of a run still going), builds the regions of
`experiments.corner_maps.regions` for the scanned images and returns, per classifier and
region, `experiments.corner_maps.stats.summarise`, plus paired differences between regions
(the primary one and a Holm-corrected family of secondary ones), the size-matched
control's exact expectation over its draws, how long the scan took and what the masks
were like; where certificate batches exist (`experiments.corner_maps.certify`), what one
pixel of any colour does on the certified images (`cert_analysis.compare`).
"""

from __future__ import annotations

import os

import numpy as np

from experiments import store
from experiments.corner_maps import cert_analysis, certify, exact, stats
from experiments.corner_maps import de as corner_de
from experiments.corner_maps import regions as corner_regions
from experiments.corner_maps.batches import BatchFolder, span
from experiments.corner_maps.study import mask_path
from rpx import segment

NUM_CLASSES = 10  # CIFAR-10
# The primary comparison (the paper's claim), per classifier: foreground - background,
# the share of images with a fooling pixel (exact McNemar p, unadjusted).
PRIMARY = ("foreground", "background")
# The secondary paired differences (a - b), one family per classifier: their McNemar p
# values are Holm-adjusted within it. Everything else in the report is descriptive.
SECONDARY = (
    ("original", "background"),
    ("foreground", "size-matched background"),
    ("foreground", "background blob"),
    ("foreground+2", "background-2"),
    ("ring", "ring-sized blob"),
    ("centre prior", "outside centre"),
)
DIFFERENCES = (PRIMARY, *SECONDARY)
# Scattered controls averaged exactly over all their draws (`scattered`): (region, pool):
# as many random pixels of the pool as the region has. The first is the size-matched
# background's expectation, the second the ring's scattered counterpart.
SCATTERED = (("foreground", "background"), ("ring", "background-2"))


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
      resamples: bootstrap resamples over images; seed: seeds them, the size-matched
        background subsets and the blobs.

    Returns:
      {"settings": settings.json, "resamples", "seed", "nets": {name: {"images",
       "dataset_indices", "timing", "masks", "regions": {region: summary},
       "differences": `differences`, "scattered": {"REGION in POOL": `scattered`} for
       SCATTERED, "short_blobs": {blob
       region: images where it is smaller than asked}, "certify":
       `cert_analysis.compare` (where cert batches exist)}}, "de":
       `corner_de.compare` (with `de`)};
      classifiers without a finished batch
      are left out.
    """
    settings = read_settings(workdir)
    cache = segment.MaskCache(mask_path(workdir), segment.GrabCutSettings(), settings["data"])
    nets = {}
    de_rows: dict = {}
    for workdir_de in de or ():
        de_rows.update(corner_de.de_records(workdir_de)[1])
    for name in sorted(settings["models"]):
        maps = BatchFolder(os.path.join(workdir, name)).read()
        if not len(maps):
            continue
        foreground = cache[maps.index]
        regions = corner_regions.regions(foreground, maps.index, seed)
        boot = stats.resamples(len(maps), resamples, seed)
        facts = {
            r: stats.image_facts(maps.classes, maps.label, m, NUM_CLASSES)
            for r, m in regions.items()
        }
        batches = maps.batches
        nets[name] = dict(
            images=len(maps),
            dataset_indices=maps.index.tolist(),
            timing=dict(
                batches=len(batches),
                evaluations=int(sum(b["evaluations"] for b in batches)),
                **span(batches),
            ),
            masks=dict(
                foreground_fraction=_spread(foreground.mean((1, 2))),
                paths=segment.path_counts(cache.paths[maps.index]),
            ),
            regions={r: stats.summarise(f, boot) for r, f in facts.items()},
            differences=differences(facts, boot),
            scattered={f"{a} in {b}": scattered(facts[a], facts[b], boot) for a, b in SCATTERED},
            short_blobs={
                "background blob": _short(regions, "background blob", "size-matched background"),
                "ring-sized blob": _short(regions, "ring-sized blob", "ring"),
            },
        )
        certs = certify.read(os.path.join(workdir, name))
        if len(certs):
            nets[name]["certify"] = _certify(name, certs, maps, regions, de_rows.get(name))
    out = dict(settings=settings, resamples=resamples, seed=seed, nets=nets)
    if de is not None:
        out["de"] = corner_de.compare(workdir, de, resamples, seed)
    return out


def _certify(name, certs, maps, regions, de_rows) -> dict:
    """`cert_analysis.compare` on the certified images, which must be mapped."""
    where = {int(i): n for n, i in enumerate(maps.index)}
    unmapped = [int(i) for i in certs.index if int(i) not in where]
    if unmapped:
        raise ValueError(f"{name}: certified images {unmapped[:5]} have no corner map")
    pos = np.array([where[int(i)] for i in certs.index])
    if not np.array_equal(maps.label[pos], certs.label):
        raise ValueError(f"{name}: the certificates' labels differ from the maps'")
    here = {r: m[pos] for r, m in regions.items()}
    return cert_analysis.compare(certs, maps.classes[pos], maps.label[pos], here, de_rows)


def differences(facts: dict, boot) -> dict:
    """{"a - b": stats.difference} for DIFFERENCES (`facts`: {region: ImageFacts}),
    each share with primary (bool) and holm_p (SECONDARY's Holm-adjusted p; None for the
    primary)."""
    out = {f"{a} - {b}": stats.difference(facts[a], facts[b], boot) for a, b in DIFFERENCES}
    names = [f"{a} - {b}" for a, b in SECONDARY]
    adjusted = exact.holm([out[k]["share"]["p"] for k in names])
    for key, d in out.items():
        d["share"]["primary"] = key == "{} - {}".format(*PRIMARY)
        d["share"]["holm_p"] = adjusted[names.index(key)] if key in names else None
    return out


def scattered(region: stats.ImageFacts, pool: stats.ImageFacts, boot) -> dict:
    """A scattered random sample of `pool` as large as `region` (all of the pool where it
    is smaller), averaged exactly over all draws: per image, the hypergeometric chance
    that it holds a fooling pixel. {"share": its mean over images, "region_minus": the
    mean of region fooled (0/1) minus it}, with bootstrap intervals (`boot`). The
    sample's expected density is the pool's, image by image, by construction."""
    draws = np.minimum(region.region_pixels, pool.region_pixels)
    chance = exact.at_least_one(pool.region_pixels, pool.fooling_pixels, draws)
    return dict(
        share=stats.mean(chance, boot),
        region_minus=stats.mean(region.fooled - chance, boot),
    )


def _short(regions: dict, blob: str, asked: str) -> int:
    """Images whose `blob` has fewer pixels than `asked` (no component large enough)."""
    return int((regions[blob].sum((1, 2)) < regions[asked].sum((1, 2))).sum())


def _spread(values) -> dict:
    values = np.asarray(values, np.float64)
    return dict(
        mean=float(values.mean()),
        median=float(np.median(values)),
        min=float(values.min()),
        max=float(values.max()),
    )
