"""The grid's classifiers: loaded from their training workdirs with a message that says
how to train a missing one, named by their parameters, and checked against the data.

`load` returns {name: (predict, info)}; `info` gains "num_classes" and "parameters" (a
digest of the weights, `identity`), which settings.json records per model so another
classifier under a recorded name is refused.
"""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np


def load(models: dict[str, str], dataset: str, data_flag: str, image_shape) -> dict:
    """{name: (predict, info)} for every {name: workdir} of `models` (a `Grid`'s, or
    `experiments.cli.models_flag`'s), or ValueError saying how to train one or what is
    wrong with its checkpoint. `info` gains "num_classes" and "parameters" for images of
    `image_shape` (H, W, C)."""
    import train

    out = {}
    for name, workdir in models.items():
        try:
            predict, info = train.load_classifier(workdir)
        except FileNotFoundError as err:
            raise ValueError(
                f"no classifier {name!r} at {workdir} ({err}). Train one with:\n"
                f"  python -m train --model={name} --dataset={dataset} --workdir={workdir} "
                f"{data_flag}\nor pass --models {name}=WORKDIR"
            ) from None
        except ValueError as err:
            raise ValueError(f"classifier {name!r}: {err}") from None
        # A net with global pooling runs on any size, so the wrong data would run to a
        # full table; the checkpoint records the size it was trained on.
        size = info.get("image_size")
        if size is not None and tuple(image_shape[:2]) != (size, size):
            raise ValueError(
                f"classifier {name!r} ({workdir}) was trained on {size} x {size} images, but "
                f"the data's are {image_shape[0]} x {image_shape[1]}: not this classifier's data"
            )
        num_classes, parameters = identity(predict, image_shape)
        out[name] = predict, dict(info, num_classes=num_classes, parameters=parameters)
    return out


def identity(predict, image_shape) -> tuple[int, str]:
    """(number of classes, parameter digest) of `predict` on images [B, *image_shape].

    The digest names the arrays `predict` closes over (its weights) by content: a SHA-256
    over each array's dtype, shape and bytes, the per-array digests sorted (an order that
    does not depend on how JAX orders a traced program's constants). Tracing only: no
    forward pass is run.
    """
    probe = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    program, out = jax.make_jaxpr(predict, return_shape=True)(probe)
    leaves = []
    for const in program.consts:
        a = np.ascontiguousarray(np.asarray(const))
        digest = hashlib.sha256(f"{a.dtype.str} {a.shape} ".encode())
        digest.update(a.tobytes())
        leaves.append(digest.digest())
    total = hashlib.sha256(b"".join(sorted(leaves))).hexdigest()[:16]
    return int(out.shape[-1]), f"{len(leaves)} arrays, sha256 {total}"


def digests(loaded: dict) -> dict[str, str]:
    """{name: parameter digest} of `load`'s classifiers (settings.json's "models")."""
    return {name: info["parameters"] for name, (_, info) in loaded.items()}


def check_labels(labels, loaded: dict, source: str) -> None:
    """ValueError if a label lies outside some classifier's classes [0, K)."""
    labels = np.asarray(labels)
    for name, (_, info) in loaded.items():
        k = info["num_classes"]
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(
                f"{source} has labels in [{labels.min()}, {labels.max()}], outside the {k} "
                f"classes [0, {k - 1}] of classifier {name!r}: not this classifier's data?"
            )
