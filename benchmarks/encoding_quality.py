"""Search quality of the coordinate encodings at equal budget, on real images.

    python benchmarks/encoding_quality.py [--images 200] [--regions original,background]

For each region and encoding ("flat": one gene through the row-major table of allowed
pixels; "hilbert": the same table along a Hilbert curve; "rowcol": (row, col) genes to
the nearest allowed pixel) and the paper's "restore" workaround, runs the untargeted
attack with rpx.run on the first N correctly classified CIFAR-10 test images and
reports successes and mean generations of the successful attacks. GrabCut masks come
from rpx.segment (computed once, kept in --masks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rpx  # noqa: E402
from benchmarks import common  # noqa: E402

VARIANTS = {  # name: (encoding, restriction)
    "flat": ("flat", "table"),
    "hilbert": ("hilbert", "table"),
    "rowcol": ("rowcol", "table"),
    "restore": ("rowcol", "restore"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_attack_flags(parser, images=200)
    parser.add_argument("--regions", default="original,background,foreground")
    parser.add_argument("--variants", default="flat,hilbert,rowcol,restore")
    parser.add_argument("--masks", default="", help="npz cache of GrabCut masks (made if absent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)

    predict, name = common.classifier(args.classifier)
    images, labels, keep = common.correctly_classified(predict, args.data, args.images)
    cached = np.load(args.masks) if args.masks and os.path.exists(args.masks) else None
    if cached is not None and np.array_equal(cached["index"], keep):
        foreground = cached["foreground"]
    else:
        from rpx.segment import grabcut

        foreground = grabcut(images)
        if args.masks:
            np.savez_compressed(args.masks, foreground=foreground, index=keep)
    print(
        f"{name}; {len(images)} correctly classified exact CIFAR-10 test images; "
        f"{args.pixels} pixel(s), population {args.population}, {args.generations} "
        f"generations; device {jax.devices()[0].device_kind}",
        flush=True,
    )

    rows = []
    for region_name in args.regions.split(","):
        region = rpx.regions.mask(region_name, foreground)
        for variant in args.variants.split(","):
            if region_name == "original" and variant == "restore":
                continue  # identical to rowcol on the whole image
            encoding, restriction = VARIANTS[variant]
            config = rpx.AttackConfig(
                pixels=args.pixels,
                population=args.population,
                generations=args.generations,
                encoding=encoding,
                restriction=restriction,
            )
            start = time.perf_counter()
            result = rpx.run(
                predict,
                images,
                labels,
                region=region,
                config=config,
                key=jax.random.key(args.seed),
                progress=False,
            )
            wall = time.perf_counter() - start
            success = np.asarray(result.success)
            gens = np.asarray(result.generations)
            row = dict(
                region=region_name,
                variant=variant,
                images=len(images),
                successes=int(success.sum()),
                mean_generations=float(gens[success].mean()) if success.any() else None,
                evaluations=int(np.sum(result.queries)),
                wall=wall,
            )
            rows.append(row)
            print(json.dumps(row), flush=True)

    print("\n| region | variant | successes | rate | mean generations (successes) |")
    print("|---|---|---|---|---|")
    for r in rows:
        mg = "-" if r["mean_generations"] is None else f"{r['mean_generations']:.1f}"
        print(
            f"| {r['region']} | {r['variant']} | {r['successes']}/{r['images']} | "
            f"{r['successes'] / r['images']:.1%} | {mg} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(classifier=name, args=vars(args), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
