"""Search quality against queries: success of DE, the corner scan, scan + DE and
Sparse-RS as a function of the model evaluations spent, on real CIFAR-10 test images.

    python benchmarks/search_quality.py [--images 200] [--models compact_fast,allconv]
        [--pixels 1,3,5] [--regions original,foreground,background]
        [--methods de,scan,scan_de,sparse_rs] [--population 400 --generations 100]
        [--out benchmarks/results/search-quality/results.jsonl]

For each classifier (train/assets/cifar10_{name}, or a workdir path), the first
--images correctly classified of the 932 byte-exact test images, each pixel count k and
each region (GrabCut foreground masks, `rpx.segment.grabcut`, cached beside --out), it
runs the untargeted attack of every method on every image and appends one JSON line per
(model, region, k, method, budget, seed, image) to --out as soon as that image is done:
its success and the queries it used (`AttackResult.queries`: evaluations until success,
else the whole budget). A re-run skips the lines present, so a later run extends a
reduced one (more images, models, k, regions or methods); another budget or seed makes
new lines beside the old ones. Then it prints the table of `search_quality_report` and
writes its figure.

Methods: "de" the paper's DE (LHS, F ~ U[0.5, 1), CR 1, best1bin; population x
(generations + 1) queries at most); "scan" `rpx.pixel_map` with the 8 corners of the
colour cube at every region pixel (k = 1 only; its queries are those of a scan that
stops at its first fooling (pixel, corner), in row-major then corner order, else region
pixels x 8); "scan_de" `AttackConfig(init="scan")` (the scan in steps of `population`,
then DE with its full budget from the scan's best candidates); "sparse_rs"
`AttackConfig(search="sparse_rs")` at DE's budget. Evaluation "auto" (incremental for
k = 1). Each (model, region, k, method) has its own key (seed + name) and each image
its own index in the image list, so a resumed run gives the lines of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rpx  # noqa: E402
from benchmarks import common  # noqa: E402
from benchmarks import search_quality_report as report  # noqa: E402
from experiments.grid.cells import named_key  # noqa: E402

METHODS = ("de", "scan", "scan_de", "sparse_rs")
KEY = ("model", "region", "pixels", "method", "population", "generations", "seed", "image")
OUT = os.path.join(common.ROOT, "benchmarks", "results", "search-quality", "results.jsonl")


def config_for(method: str, pixels: int, population: int, generations: int):
    """The rpx.AttackConfig of a budgeted method ("de", "scan_de", "sparse_rs")."""
    extra = {"de": {}, "scan_de": {"init": "scan"}, "sparse_rs": {"search": "sparse_rs"}}
    return rpx.AttackConfig(
        pixels=pixels, population=population, generations=generations, **extra[method]
    )


def scan_rows(predict, images, labels, region, batch_size=None):
    """The corner scan as a stopping search, per image.

    Args:
      images: uint8 [N, H, W, C]; labels: int [N]; region: bool [N, H, W].

    Returns:
      (success bool [N], queries int [N]): whether some (region pixel, corner) changes
      the class, and the evaluations a scan in row-major pixel, then corner order
      spends up to and including the first such pair (region pixels x 2**C without one).
    """
    found = rpx.pixel_map(predict, images, labels, region, chunk_size=batch_size)
    classes = np.asarray(found.classes)
    n, m = len(images), classes.shape[-1]
    fooled = ((classes >= 0) & (classes != np.asarray(labels)[:, None, None, None])).reshape(n, -1)
    tried = np.repeat(np.asarray(region, bool).reshape(n, -1), m, axis=1)
    success = fooled.any(1)
    first = fooled.argmax(1)
    spent = np.cumsum(tried, axis=1)
    queries = np.where(success, spent[np.arange(n), first], tried.sum(1))
    return success, queries.astype(np.int64)


def cell_key(seed: int, model: str, region: str, pixels: int, method: str):
    """The PRNG key of one (model, region, k, method): seed folded with its name's hash."""
    return named_key(seed, f"{model}/{region}/{pixels}/{method}")


def append_rows(path: str, rows: list[dict]) -> None:
    """Append rows as JSON lines, flushed (a killed run keeps what it wrote); a last line
    cut short by an earlier kill is removed first, so it never merges with a new row."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(0)
            whole = f.read()
            if not whole.endswith(b"\n"):
                f.truncate(whole.rfind(b"\n") + 1)
        f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode())
        f.flush()
        os.fsync(f.fileno())


def _digest(image) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]


def foreground_masks(path: str, images, index) -> np.ndarray:
    """bool [N, H, W] GrabCut masks of `images` (dataset indices `index` [N]), cached in
    the npz `path` by dataset index with a digest of each image (missing ones are
    computed and added). ValueError when the cache holds a mask of another image at one
    of these indices (another --data); a cache without digests is rebuilt."""
    from rpx.segment import grabcut

    cache, digests = {}, {}
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as f:
            if "digest" in f.files:
                cache = dict(zip(f["index"].tolist(), f["foreground"], strict=True))
                digests = dict(zip(f["index"].tolist(), f["digest"].tolist(), strict=True))
    ours = {int(d): _digest(image) for d, image in zip(index, images, strict=True)}
    other = [d for d, h in ours.items() if d in digests and digests[d] != h]
    if other:
        raise ValueError(
            f"--masks {path} holds masks of other images at dataset indices {other[:5]}: "
            "another --data? pass another --masks (and --out)"
        )
    todo = [i for i, d in enumerate(index) if int(d) not in cache]
    if todo:
        for i, mask in zip(todo, grabcut(images[todo], workers=1), strict=True):
            cache[int(index[i])], digests[int(index[i])] = mask, ours[int(index[i])]
        keys = sorted(cache)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        masks = np.stack([cache[k] for k in keys])
        hashes = np.array([digests[k] for k in keys])
        np.savez_compressed(path, index=np.array(keys), foreground=masks, digest=hashes)
    return np.stack([cache[int(d)] for d in index])


def run_cell(cell, predict, images, labels, region, index, done, args) -> float:
    """Run the images of one (model, region, k, method) missing from `done`; returns
    the wall seconds (compilation included)."""
    key = lambda i: tuple({**cell, "image": int(index[i])}[k] for k in KEY)  # noqa: E731
    missing = np.array([i for i in range(len(index)) if key(i) not in done], np.int64)
    if not len(missing):
        return 0.0
    start = time.perf_counter()
    budget = args.population * (args.generations + 1)
    scan_budget = region.reshape(len(region), -1).sum(1) * 2 ** images.shape[-1]

    def write(rows, success, queries):
        caps = {"de": budget, "sparse_rs": budget, "scan": 0, "scan_de": budget}[cell["method"]]
        lines = [
            {**cell, "image": int(index[r]), "success": bool(s), "queries": int(q),
             "max_queries": int(caps + (scan_budget[r] if "scan" in cell["method"] else 0))}
            for r, s, q in zip(rows, success, queries, strict=True)
        ]  # fmt: skip
        append_rows(args.out, lines)
        done.update(key(r) for r in rows)

    if cell["method"] == "scan":
        for at in range(0, len(missing), args.batch_size):
            rows = missing[at : at + args.batch_size]
            write(rows, *scan_rows(predict, images[rows], labels[rows], region[rows]))
    else:
        config = config_for(cell["method"], cell["pixels"], args.population, args.generations)
        rpx.run(
            predict, images, labels, region, config=config,
            key=cell_key(args.seed, cell["model"], cell["region"], cell["pixels"], cell["method"]),
            batch_size=args.batch_size, rows=missing, progress=False,
            callback=lambda rows, part: write(rows, part.success, part.queries),
        )  # fmt: skip
    return time.perf_counter() - start


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=200, help="correctly classified images per model")
    p.add_argument("--models", default="compact_fast,allconv", help="names or workdirs")
    p.add_argument("--pixels", default="1,3,5")
    p.add_argument("--regions", default="original,foreground,background")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--population", type=int, default=400)
    p.add_argument("--generations", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16, help="rpx.run slots; images per scan")
    p.add_argument("--data", default=common.DEFAULT_DATA)
    p.add_argument("--out", default=OUT, help="per-image JSON lines (resumed and extended)")
    p.add_argument("--masks", default="", help="GrabCut mask cache (default: beside --out)")
    p.add_argument("--figure", default="", help="PNG (default: beside --out)")
    args = p.parse_args(argv)
    args.pixels = [int(k) for k in args.pixels.split(",")]
    args.regions, args.methods = args.regions.split(","), args.methods.split(",")
    args.models = args.models.split(",")
    for flag, values, choices in (("regions", args.regions, rpx.regions.REGION_NAMES),
                                  ("methods", args.methods, METHODS)):  # fmt: skip
        if not set(values) <= set(choices):
            p.error(f"--{flag}: {values} not among {', '.join(choices)}")
    if min(args.pixels) < 1 or args.images < 1 or args.population < 4 or args.generations < 0:
        p.error("--pixels, --images >= 1, --population >= 4, --generations >= 0")
    folder = os.path.dirname(os.path.abspath(args.out))
    args.masks = args.masks or os.path.join(folder, "masks.npz")
    args.figure = args.figure or os.path.join(folder, "success_vs_queries.png")
    return args


def main(argv=None):
    args = parse(argv)
    done = {tuple(r.get(k) for k in KEY) for r in report.read_rows(args.out)}
    start, lists = time.perf_counter(), {}
    for spec in args.models:
        assets = os.path.join(common.ROOT, "train", "assets")
        path = spec if os.sep in spec else os.path.join(assets, f"cifar10_{spec}")
        name = os.path.basename(os.path.normpath(path)).removeprefix("cifar10_")
        predict, desc = common.classifier(path)
        images, labels, index = common.correctly_classified(predict, args.data, args.images)
        lists[name] = index
        fg = foreground_masks(args.masks, images, index)
        print(f"{desc}\n{len(index)} correctly classified images; device "
              f"{jax.devices()[0].device_kind}", flush=True)  # fmt: skip
        for pixels in args.pixels:
            for region_name in args.regions:
                region = rpx.regions.mask(region_name, fg)
                for method in args.methods:
                    if method == "scan" and pixels != 1:
                        continue
                    cell = dict(model=name, region=region_name, pixels=pixels, method=method,
                                population=args.population, generations=args.generations,
                                seed=args.seed)  # fmt: skip
                    wall = run_cell(cell, predict, images, labels, region, index, done, args)
                    print(f"{name} k={pixels} {region_name} {method}: {wall:.1f} s", flush=True)
    print(f"total {time.perf_counter() - start:.1f} s")
    rows = [
        r for r in report.read_rows(args.out)
        if r["population"] == args.population and r["generations"] == args.generations
        and r["seed"] == args.seed and r["model"] in lists
        and r["image"] in set(lists[r["model"]].tolist())
        and r["pixels"] in args.pixels and r["region"] in args.regions
        and r["method"] in args.methods
    ]  # fmt: skip
    print(report.markdown(rows))
    print(f"wrote {report.figure(rows, args.figure)}")


if __name__ == "__main__":
    main()
