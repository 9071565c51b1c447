"""Accuracy of a trained classifier on a split, from its checkpoint.

python -m train.evaluate WORKDIR --split test --data-dir DIR [--split test-first932 ...]
    [--flip-tta]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np

from train import datasets
from train.checkpoint import load_classifier


def accuracy(predict, images: np.ndarray, labels: np.ndarray, batch_size: int = 250) -> float:
    """Top-1 accuracy of `predict` (float32 [B,H,W,3] in [0,255] -> [B,K]) over uint8
    images [N,H,W,3] with int labels [N], in fixed-size batches (one compilation)."""
    if len(images) != len(labels):
        raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
    fn = jax.jit(lambda x: jax.numpy.argmax(predict(x), -1))
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32)
        n = len(batch)
        if n < batch_size:  # pad the last batch instead of compiling a second shape
            batch = np.concatenate(
                [batch, np.zeros((batch_size - n, *batch.shape[1:]), batch.dtype)]
            )
        correct += int((np.asarray(fn(batch))[:n] == labels[start : start + n]).sum())
    return correct / max(len(images), 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__)
    p.add_argument("workdir")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    p.add_argument("--split", action="append", help="repeatable; default: test")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument(
        "--flip-tta",
        action="store_true",
        help="average each image's and its mirror's probabilities (load_classifier(flip_tta=True))",
    )
    args = p.parse_args(argv)
    try:
        predict, info = load_classifier(args.workdir, flip_tta=args.flip_tta)
        for split in args.split or ["test"]:
            images, labels = datasets.load_arrays(
                args.dataset or info["dataset"], split, args.data_dir
            )
            # A globally pooled net runs on any size: the wrong data would get a number.
            size = info["image_size"]
            if images.shape[1:3] != (size, size):
                raise ValueError(
                    f"{split}: images are {images.shape[1]} x {images.shape[2]}, but "
                    f"{args.workdir} was trained on {size} x {size}: not its data"
                )
            t0 = time.time()
            acc = accuracy(predict, images, labels, args.batch_size)
            seconds = round(time.time() - t0, 1)
            record = {**info, "split": split, "n": len(labels), "test_accuracy": acc,
                      "seconds": seconds, "backend": jax.default_backend()}  # fmt: skip
            print(json.dumps(record), flush=True)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
