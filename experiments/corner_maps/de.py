"""DE at the paper's budget beside the corner maps of the same images (issue 16, item 3).

An `experiments.cifar` workdir run with `--sample-order=first` on the corner maps' data
file and mask cache attacks images the maps cover. `compare` reads its one-pixel
untargeted DE records (restriction "table", the paper's DE with LHS) and, per classifier
and paper region, sets them beside the maps on the same images:

- de: DE's successes (the paper's Untargeted1, Clopper-Pearson interval) and the mean
  generations of its successes (Table IV, 95% bootstrap interval over images);
- scan: the images where one corner-coloured region pixel fools the classifier;
- both, missed_by_de (scan-vulnerable, DE failed), de_only (DE succeeded where no corner
  pixel of the region fools: a colour inside the cube did it), de_at_fooling_pixel (DE
  successes whose pixel is one where some corner fools);
- de_minus_scan: the paired difference of the two shares (`exact.paired`: exact
  interval, exact McNemar p).
"""

from __future__ import annotations

import os

import numpy as np

from experiments import paper, store
from experiments.corner_maps import exact, regions, stats
from experiments.corner_maps.batches import BatchFolder
from experiments.corner_maps.study import mask_path
from experiments.grid import methods
from experiments.store import ResultStore, recorded_bounds
from rpx import segment

CELL = dict(pixels=1, attack="untargeted", restriction="table")


def de_records(workdir: str) -> tuple[dict, dict]:
    """(settings.json, {net: {region: {dataset index: record}}}) of the one-pixel
    untargeted DE (paper's method, restriction table) records in an experiments.cifar
    WORKDIR; ValueError when it holds no such run."""
    path = os.path.join(workdir, "settings.json")
    if not os.path.isfile(path):
        raise ValueError(f"--de {workdir} holds no experiments.cifar run (no settings.json)")
    settings = store.read_settings(path, ("data", "models", "population", "generations"))
    rows: dict = {}
    bounds = recorded_bounds(workdir)  # its records must name the models it records
    for r in ResultStore(os.path.join(workdir, "results.jsonl"), bounds).records:
        if all(r.get(k) == v for k, v in CELL.items()) and methods.of(r) == methods.DEFAULT:
            rows.setdefault(r["model"], {}).setdefault(r["region"], {})[int(r["image"])] = r
    return settings, rows


def compare(maps_workdir: str, de_workdirs, resamples: int = 2000, seed: int = 0) -> dict:
    """{"workdirs" (as given), "population", "generations" (DE's budget), "nets": {net:
    {region: the comparison (module docstring)}}} for every net and paper region the DE
    workdirs (a list, or one path) hold, on the images DE attacked (all must be in the net's maps).
    ValueError when a DE workdir holds other images than the maps or another budget than
    the others, a net comes from two workdirs, or DE images are not mapped."""
    path = os.path.join(maps_workdir, "settings.json")
    maps_settings = store.read_settings(path, ("data", "models", "masks"))
    rows, budgets = {}, set()
    de_workdirs = [de_workdirs] if isinstance(de_workdirs, str) else list(de_workdirs)
    for workdir in de_workdirs:
        de_settings, more = de_records(workdir)
        if de_settings.get("data") != maps_settings["data"]:
            raise ValueError(
                f"--de {workdir} attacked other images ({de_settings.get('data')}) than the "
                f"corner maps in {maps_workdir} ({maps_settings['data']})"
            )
        _check_same_setup(workdir, de_settings, maps_workdir, maps_settings, set(more))
        if set(more) & set(rows):
            raise ValueError(f"--de: {sorted(set(more) & set(rows))} in more than one workdir")
        rows.update(more)
        budgets.add((de_settings["population"], de_settings["generations"]))
    if len(budgets) > 1:
        raise ValueError(f"--de workdirs ran different DE budgets {sorted(budgets)}")
    ((population, generations),) = budgets
    cache = segment.MaskCache(
        mask_path(maps_workdir), segment.GrabCutSettings(), maps_settings["data"]
    )
    out: dict = {}
    for net in sorted(rows):
        maps = BatchFolder(os.path.join(maps_workdir, net)).read()
        where = {int(i): n for n, i in enumerate(maps.index)}
        out[net] = {}
        for region in regions.PAPER_REGIONS:
            records = rows[net].get(region)
            if not records:
                continue
            index = np.array(sorted(records))
            unmapped = [int(i) for i in index if int(i) not in where]
            if unmapped:
                raise ValueError(
                    f"{net}: DE attacked images {unmapped[:5]} that the corner maps of "
                    f"{maps_workdir} do not cover"
                )
            pos = np.array([where[int(i)] for i in index])
            mask = regions.region(region, cache[index], index, seed)
            fooling = stats.fooling_pixels(maps.classes[pos], maps.label[pos], mask)
            out[net][region] = _compare_region(
                net, region, [records[int(i)] for i in index], fooling.any((1, 2)), fooling,
                stats.resamples(len(index), resamples, seed),
            )  # fmt: skip
    return dict(workdirs=de_workdirs, population=population, generations=generations, nets=out)


def _check_same_setup(workdir, de_settings, maps_workdir, maps_settings, nets) -> None:
    """ValueError unless DE ran the maps' classifiers (parameter digests) with masks of the
    maps' GrabCut settings, and any mask cache of its own holds the maps' masks."""
    for net in sorted(nets):
        ours, theirs = de_settings["models"].get(net), maps_settings["models"].get(net)
        if ours != theirs:
            raise ValueError(
                f"--de {workdir}: {net} is {ours}, the corner maps in {maps_workdir} have "
                f"{theirs or 'no such classifier'}"
            )
    if de_settings.get("masks") != maps_settings["masks"]["settings"]:
        raise ValueError(f"--de {workdir} built its masks with other settings than the maps")
    own = os.path.join(workdir, "masks.npz")
    if os.path.exists(own):
        settings = segment.GrabCutSettings(**de_settings["masks"])
        theirs = segment.MaskCache(mask_path(maps_workdir), settings, maps_settings["data"])
        ours = segment.MaskCache(own, settings, de_settings["data"])
        if not np.array_equal(ours[:], theirs[:]):
            raise ValueError(f"--de {workdir}: its masks.npz differs from {maps_workdir}'s")


def _compare_region(net, region, records, scan, fooling, boot) -> dict:
    de = np.array([bool(r["success"]) for r in records])
    gens = np.array([r["generations"] if r["success"] else np.nan for r in records], float)
    queries = np.array([r["queries"] if r["success"] else np.nan for r in records], float)
    at_fooling = [
        bool(fooling[n][tuple(r["positions"][0])]) for n, r in enumerate(records) if r["success"]
    ]
    return dict(
        images=len(records),
        de=exact.share(de),
        scan=exact.share(scan),
        de_minus_scan=exact.paired(de, scan),
        both=int((de & scan).sum()),
        missed_by_de=int((scan & ~de).sum()),
        de_only=int((de & ~scan).sum()),
        de_at_fooling_pixel=int(sum(at_fooling)),
        generations=stats.mean(gens, boot),
        queries_of_successes=float(np.nanmean(queries)) if de.any() else float("nan"),
        paper_untargeted1=paper.table2(net, "untargeted1", region, 1),
        paper_generations=paper.by_region(paper.TABLE4, net, None, region),
    )
