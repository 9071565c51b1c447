"""Issue 24 item 4: everything a lent GPU should run, as one resumable command.

    python -m experiments.gpu_run --workdir=experiments/results [--budget=480]
    python -m experiments.gpu_run --workdir=runs/gpu-smoke --smoke     # CPU, a few minutes

Steps, each a call into an existing command (a re-run skips or resumes what is done):

1. train: VGG-16 (C) (`python -m train --model=vgg16_cifar --bf16`, --epochs) into
   --train-workdir on the decoded JPEG training set (decoded once from --shared-data
   into --data-dir), then its accuracy on the 932 exact test images beside the paper's
   Table I (85.65%).
2. maps: `experiments.corner_maps` of its first --images correct exact images into
   WORKDIR/corner-maps (the CPU runs' maps workdir when WORKDIR is experiments/results).
3. de: `experiments.cifar` one-pixel untargeted DE at the paper's budget (400 x 100),
   --sample-order=first, the first --de-images of those images, three regions, the maps'
   masks, into WORKDIR/de-paper-budget-vgg16.
4. bench: for every CIFAR net, `benchmarks/incremental_throughput.py` (incremental vs
   full one-pixel evaluation, one process per net) and rpx.certify's seconds per image
   with evaluation incremental and full (`benchmarks/certify_evaluation.py`), into
   WORKDIR/gpu-bench/NET-*.txt (a net whose files exist is skipped).
5. certify: `corner_maps --certify` of the same first --de-images images (no new batch
   once --budget seconds less 30 for the report have passed; the next run resumes).
6. report: `corner_maps --report` with every DE workdir of WORKDIR.

WORKDIR/gpu-run.json records each step's wall seconds and outcome. --smoke runs the
same path on compact_fast at a tiny size (1 epoch on 512 training images, 2 images,
DE 8 x 2, certify with the smallest budget in chunks of 16 boxes, the bench on one net,
its certify timing on the central 4 x 4 pixels).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from experiments.corner_maps.__main__ import main as corner_maps
from experiments.images import ROOT

PAPER_ACCURACY = 0.8565  # Table I, VGG-16 (C)
NETS = ("compact_fast", "allconv", "nin", "vgg16_cifar")
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
FULL = dict(
    model="vgg16_cifar",
    epochs=60,
    train_limit=None,
    images=500,
    batch=64,
    de_images=100,
    population=400,
    generations=100,
    knobs=[],
    bench_images=8,
    bench_flags=[],
    cert_images=4,
    cert_flags=[],
    nets=NETS,
)
SMOKE = dict(
    model="compact_fast",
    epochs=1,
    train_limit=512,
    images=2,
    batch=2,
    de_images=1,
    population=8,
    generations=2,
    bench_images=1,
    bench_flags=["--repeats=1", "--candidates=64"],
    cert_images=1,
    cert_flags=["--square=4"],
    nets=("compact_fast",),
    knobs=["--max-boxes=1", "--chunk-size=16", "--search-starts=0", "--search-steps=0"],
)


def _flags(argv):
    p = argparse.ArgumentParser(
        prog="python -m experiments.gpu_run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", required=True)
    p.add_argument("--smoke", action="store_true", help="the same path, tiny, on CPU")
    p.add_argument("--train-workdir", help="default: train/assets/cifar10_MODEL (smoke: WORKDIR)")
    p.add_argument("--shared-data", default=SHARED, help="the JPEG packs and the exact images")
    p.add_argument("--data-dir", default=os.path.join(ROOT, "cache", "cifar10"))
    p.add_argument("--budget", type=float, help="seconds; certify stops after (480; smoke: none)")
    p.add_argument("--steps", default="train,maps,de,bench,certify,report")
    args = p.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    args.train_workdir = args.train_workdir or (
        os.path.join(args.workdir, "train", f"cifar10_{size['model']}")
        if args.smoke
        else os.path.join(ROOT, "train", "assets", f"cifar10_{size['model']}")
    )
    return args, size


def main(argv: list[str] | None = None) -> int:
    args, size = _flags(argv)
    start = time.monotonic()
    log_path = os.path.join(args.workdir, "gpu-run.json")
    os.makedirs(args.workdir, exist_ok=True)
    log = json.load(open(log_path)) if os.path.exists(log_path) else {}
    exact = os.path.join(args.shared_data, "cifar10-test-first932.npz")
    if args.smoke:  # 40 of the exact images: GrabCut of all 932 alone takes minutes on CPU
        exact = _subset(exact, os.path.join(args.workdir, "exact-first40.npz"), 40)
    maps = os.path.join(args.workdir, "corner-maps")
    model = f"--models={size['model']}={args.train_workdir}"
    common = [f"--data-file={exact}", f"--workdir={maps}", model, f"--batch={size['batch']}"]
    short = {"vgg16_cifar": "vgg16"}.get(size["model"], size["model"])
    de_dir = os.path.join(args.workdir, f"de-paper-budget-{short}")

    def certify():
        cert = [*common, "--certify", f"--images={size['de_images']}", *size["knobs"]]
        budget = args.budget or (None if args.smoke else 480.0)
        if budget is not None:
            left = max(budget - 30 - (time.monotonic() - start), 1)
            cert.append(f"--stop-after={left:.0f}")
        return _check(corner_maps(cert))

    def report():
        runs = [os.path.join(args.workdir, d) for d in sorted(os.listdir(args.workdir))]
        de = ",".join(d for d in runs if os.path.basename(d).startswith("de-paper-budget"))
        return _check(corner_maps(["--report", f"--workdir={maps}", f"--de={de}"]))

    steps = {
        "train": lambda: _train(args, size, exact),
        "maps": lambda: _check(corner_maps([*common, f"--images={size['images']}"])),
        "de": lambda: _de(size, exact, maps, de_dir, model),
        "bench": lambda: _bench(args, size),
        "certify": certify,
        "report": report,
    }
    for name in args.steps.split(","):
        t = time.monotonic()
        outcome = steps[name]()
        log[name] = dict(wall_seconds=round(time.monotonic() - t, 1), outcome=outcome)
        print(f"gpu_run: {name} done in {log[name]['wall_seconds']} s: {outcome}", flush=True)
        with open(log_path, "w") as f:
            json.dump(log, f, indent=1)
    return 0


def _subset(path: str, out: str, count: int) -> str:
    if not os.path.exists(out):
        with np.load(path) as d:
            np.savez(out, image=d["image"][:count], label=d["label"][:count])
    return out


def _check(status: int) -> str:
    if status:
        raise SystemExit(status)
    return "ok"


def _train(args, size, exact) -> dict:
    """Decode the training data once, train (or resume), and measure the exact accuracy."""
    import jax.numpy as jnp

    import train
    from train.__main__ import main as train_main

    if not os.path.exists(os.path.join(args.data_dir, "cifar10-train.npz")):
        decode = os.path.join(args.shared_data, "decode.py")
        subprocess.run([sys.executable, decode, args.data_dir], check=True)
    flags = [
        f"--model={size['model']}",
        "--dataset=cifar10",
        f"--data-dir={args.data_dir}",
        f"--workdir={args.train_workdir}",
        f"--epochs={size['epochs']}",
    ]
    flags += ["--no-bf16"] if args.smoke else ["--bf16"]
    if size["train_limit"]:
        flags += [f"--train-limit={size['train_limit']}", "--batch-size=64"]
    _check(train_main(flags))
    predict, info = train.load_classifier(args.train_workdir)
    with np.load(exact) as d:
        images, labels = d["image"], d["label"]
    correct = sum(
        int(
            (
                np.asarray(predict(jnp.asarray(images[i : i + 250], jnp.float32))).argmax(1)
                == labels[i : i + 250]
            ).sum()
        )
        for i in range(0, len(images), 250)
    )
    accuracy = correct / len(images)
    return dict(
        exact_accuracy=accuracy,
        jpeg_test_accuracy=info.get("accuracy"),
        paper=PAPER_ACCURACY,
        reached=bool(info.get("accuracy", 0) >= PAPER_ACCURACY),
    )


def _de(size, exact, maps, de_dir, model) -> str:
    from experiments import cifar

    return _check(
        cifar.main(
            [
                model,
                f"--data-file={exact}",
                f"--workdir={de_dir}",
                "--pixels=1",
                "--attack=untargeted",
                "--region=all",
                f"--samples={size['de_images']}",
                "--sample-order=first",
                f"--population={size['population']}",
                f"--generations={size['generations']}",
                f"--masks={os.path.join(maps, 'masks.npz')}",
            ]
        )
    )


def _bench(args, size) -> dict:
    """One process per net and measurement (XLA's caches make in-process runs unreliable)."""
    out = os.path.join(args.workdir, "gpu-bench")
    os.makedirs(out, exist_ok=True)
    done = {}
    for net in size["nets"]:
        for script, extra in (
            ("incremental_throughput", [f"--images={size['bench_images']}", *size["bench_flags"]]),
            (
                "certify_evaluation",
                [f"--images={size['cert_images']}", *size["cert_flags"], *size["knobs"]],
            ),
        ):
            path = os.path.join(out, f"{net}-{script}.txt")
            if os.path.exists(path):
                done[path] = "kept"
                continue
            cmd = [
                sys.executable,
                os.path.join(ROOT, "benchmarks", f"{script}.py"),
                f"--model={net}",
                *extra,
            ]
            run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if run.returncode == 0:
                with open(path, "w") as f:
                    f.write(run.stdout)
            done[path] = "ok" if run.returncode == 0 else run.stderr[-2000:]
    return done


if __name__ == "__main__":
    sys.exit(main())
