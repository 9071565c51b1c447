"""Classifiers for rpx: Flax models, data, training loop, checkpoints.

    predict, info = train.load_classifier("train/assets/cifar10_compact")
    probs = predict(images)  # float32 [B, 32, 32, 3] in [0, 255] -> [B, 10]

Train with `python -m train --model=compact --dataset=cifar10 --workdir=DIR --data-dir=DATA`.
"""

from train import models
from train.checkpoint import load_classifier, load_parts

__all__ = ["load_classifier", "load_parts", "models"]
