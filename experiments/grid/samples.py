"""Which images a grid attacks: `pick_samples` for one classifier, `pick_all` for every
model of a `Grid`, both before the workdir is opened."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

# --sample-order: a seeded permutation of all images, or the dataset order.
ORDERS = {
    "random": lambda total, seed: np.random.default_rng(seed).permutation(total),
    "first": lambda total, seed: np.arange(total),
}


def pick_samples(predict, images, count: int, seed: int, batch: int = 256, order="random"):
    """`count` images picked at random (seeded) among those `predict` classifies right,
    or with order="first" the first `count` of them in dataset order (seed unused).

    Walks a seeded permutation (or the dataset order) of all `images.total` images,
    classifying batch by batch, so a larger `count` with the same seed extends the same
    list (a grown run keeps its records). `images(indices int [M]) -> (uint8 [M, H, W,
    3], labels int [M])`, as in `experiments.images`.

    Returns:
      indices int [M] (M <= count: fewer if fewer are correct), clean probs float32 [M, K].
    """
    if count < 1:
        raise ValueError(f"samples must be >= 1, got {count}")
    if order not in ORDERS:  # a Grid has checked its own; this for other callers
        raise ValueError(f"--sample-order: [{order!r}] not among {', '.join(ORDERS)}")
    total = images.total
    walk = ORDERS[order](total, seed)
    run = jax.jit(predict)
    picked, probs = [], []
    with tqdm(total=count, desc="pick samples", unit="img", leave=False) as bar:
        for start in range(0, total, batch):
            idx = walk[start : start + batch]
            x, labels = images(idx)
            p = np.asarray(run(jnp.asarray(x, jnp.float32)))
            labels = np.asarray(labels)
            if labels.min() < 0 or labels.max() >= p.shape[1]:
                raise ValueError(
                    f"images {idx[(labels < 0) | (labels >= p.shape[1])][:5].tolist()} have "
                    f"labels outside the classifier's {p.shape[1]} classes [0, {p.shape[1] - 1}]"
                )
            ok = p.argmax(1) == labels
            take = min(int(ok.sum()), count - len(picked))
            picked.extend(idx[ok][:take])
            probs.extend(p[ok][:take])
            bar.update(take)
            if len(picked) == count:
                break
    if not picked:
        raise ValueError("no image is classified correctly: is the classifier trained?")
    return np.asarray(picked, np.int64), np.asarray(probs, np.float32)


def pick_all(grid, images, classifiers: dict, log: Callable[[str], None] = print) -> dict:
    """{model: (indices int [M], clean probs float32 [M, K])}: `pick_samples` for every
    model of `grid` (an `experiments.grid.Grid`). Run before the workdir is opened, so
    data that some classifier gets entirely wrong (another dataset, labels in another
    order) is refused before anything is written there; ValueError names the model."""
    picks = {}
    for model, (predict, _) in classifiers.items():
        try:
            picks[model] = pick_samples(
                predict, images, grid.samples, grid.seed, order=grid.sample_order
            )
        except ValueError as err:
            raise ValueError(f"classifier {model!r} on {images.name}: {err}") from None
        if len(picks[model][0]) < grid.samples:
            log(f"{model}: only {len(picks[model][0])} test images are classified correctly; "
                "using them all")  # fmt: skip
    return picks
