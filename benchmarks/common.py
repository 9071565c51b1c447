"""Shared pieces of the benchmarks: classifiers, real images, counting wrappers."""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "cifar10-test-first932.npz")


class CNN20(nn.Module):
    """A small CIFAR CNN of about 20 MFLOP per image."""

    @nn.compact
    def __call__(self, x):
        x = x / 127.5 - 1.0
        for width in (32, 64):
            x = nn.relu(nn.Conv(width, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(128, (3, 3))(x))
        return nn.Dense(10)(x.mean((1, 2)))


def classifier(spec: str):
    """(jitted predict: float32 [B,32,32,3] in [0,255] -> probs [B,K], description)."""
    if spec == "cnn20":
        model = CNN20()
        params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
        return jax.jit(lambda x: jax.nn.softmax(model.apply(params, x))), "cnn20 (random init)"
    import train  # the project's trained classifiers; only needed for a workdir

    predict, info = train.load_classifier(spec)
    return jax.jit(predict), f"{info.get('model', spec)} from {spec} ({info})"


def cifar_images(path: str, count: int):
    """The first `count` images (uint8 [N,32,32,3]) and labels of an npz file."""
    if not os.path.exists(path):
        raise SystemExit(f"no data at {path}: pass --data (see ../shared/data/README.md)")
    data = np.load(path)
    return data["image"][:count], data["label"][:count].astype(np.int32)


COMPACT = os.path.join(ROOT, "train", "assets", "cifar10_compact")


def add_attack_flags(parser, images: int) -> None:
    """The flags every attack benchmark shares: sample size, budget, classifier, data."""
    parser.add_argument("--images", type=int, default=images)
    parser.add_argument("--pixels", type=int, default=1)
    parser.add_argument("--population", type=int, default=400)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument(
        "--classifier",
        default=COMPACT,
        help="'cnn20' (a ~20 MFLOP CNN, random init) or a train/ workdir",
    )
    parser.add_argument("--data", default=DEFAULT_DATA)


def correctly_classified(predict, path: str, count: int, batch: int = 256):
    """(images, labels, indices) of the first `count` images of `path` that `predict`
    classifies correctly, as the paper samples its attacks."""
    images, labels = cifar_images(path, 10**9)
    clean = np.concatenate(
        [
            np.asarray(jnp.argmax(predict(jnp.asarray(images[i : i + batch], jnp.float32)), -1))
            for i in range(0, len(images), batch)
        ]
    )
    keep = np.flatnonzero(clean == labels)[:count]
    return images[keep], labels[keep].astype(np.int32), keep


def numpy_predict(predict):
    """predict for numpy callers (the per-image peers): returns numpy probabilities."""
    return lambda x: np.asarray(predict(jnp.asarray(x, jnp.float32)))


def flops_per_image(predict, image_shape) -> float:
    """XLA's FLOP count of one image; NaN off CPU (the GPU analysis skips convolutions)."""
    if jax.default_backend() != "cpu":
        return float("nan")
    cost = predict.lower(jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)).compile()
    analysis = cost.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
    return float(analysis.get("flops", float("nan")))


class Counter:
    """Wraps a numpy predict and counts the rows (model evaluations) it was given."""

    def __init__(self, predict):
        self.predict, self.rows = predict, 0

    def __call__(self, x):
        self.rows += len(x)
        return self.predict(x)
