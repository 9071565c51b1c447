"""Registry of classifiers: `init(name, key) -> (apply, variables)`.

    apply, variables = train.models.init("allconv", jax.random.key(0))
    logits = apply(variables, images)  # float32 [B, 32, 32, 3] in [0, 255] -> [B, 10]

`apply` is pure (inference mode: no dropout, BatchNorm running averages) and composes
under the caller's jit/vmap. Training uses `module(name)` directly with `train=True`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from train.models.cifar import AllConv, Compact, CompactFast, NiN, VGG16Cifar
from train.models.imagenet import AlexNet, ResNet50, VGG16ImageNet


@dataclasses.dataclass(frozen=True)
class Spec:
    """A registered classifier: its Flax module class and native input/output sizes."""

    module: Callable[..., nn.Module]  # called with num_classes=, dtype=
    image_size: int
    num_classes: int
    dataset: str


REGISTRY: dict[str, Spec] = {
    "compact": Spec(Compact, 32, 10, "cifar10"),
    "compact_fast": Spec(CompactFast, 32, 10, "cifar10"),
    "allconv": Spec(AllConv, 32, 10, "cifar10"),
    "nin": Spec(NiN, 32, 10, "cifar10"),
    "vgg16_cifar": Spec(VGG16Cifar, 32, 10, "cifar10"),
    "alexnet": Spec(AlexNet, 224, 1000, "imagenet2012"),
    "resnet50": Spec(ResNet50, 224, 1000, "imagenet2012"),
    "vgg16_imagenet": Spec(VGG16ImageNet, 224, 1000, "imagenet2012"),
}


def names() -> list[str]:
    """The registered model names."""
    return sorted(REGISTRY)


def register(name: str, spec: Spec) -> None:
    """Add a classifier to the registry (e.g. a tiny one for tests or a new architecture)."""
    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be a train.models.Spec, got {type(spec).__name__}")
    REGISTRY[name] = spec


def spec(name: str) -> Spec:
    """The Spec registered under `name`; an unknown name raises ValueError listing them."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    return REGISTRY[name]


def module(name: str, num_classes: int | None = None, dtype=jnp.float32) -> nn.Module:
    """The Flax module of `name` with `num_classes` outputs (default: the native ones)
    computing in `dtype` (parameters stay float32)."""
    s = spec(name)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return s.module(num_classes=num_classes or s.num_classes, dtype=dtype)


def init_variables(model: nn.Module, key: jax.Array, image_size: int) -> dict:
    """Initialise `model` on a [1, size, size, 3] input: {"params", maybe "batch_stats"}."""
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    # jit: op-by-op initialisation of the 100M-parameter nets is much slower.
    return jax.jit(model.init)({"params": key, "dropout": key}, dummy)


def init(
    name: str,
    key: jax.Array,
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    dtype=jnp.float32,
) -> tuple[Callable[[dict, jax.Array], jax.Array], dict]:
    """Build the classifier `name` with fresh parameters.

    Args:
      name: one of `names()`.
      key: PRNG key for the initial parameters.
      num_classes: number of outputs K (default: 10 for CIFAR nets, 1000 for ImageNet).
      image_size: side of the square input used for initialisation (default: 32 or 224;
        the convolutional nets with global pooling accept other sizes too).
      dtype: compute dtype, e.g. jnp.bfloat16 on GPU/TPU.

    Returns:
      apply: pure `apply(variables, images float32 [B,H,W,3] in [0,255]) -> logits
        float32 [B, K]` in inference mode.
      variables: {"params": ..., and "batch_stats": ... for nets with BatchNorm}.
    """
    model = module(name, num_classes, dtype)
    variables = init_variables(model, key, image_size or spec(name).image_size)

    def apply(variables, images):
        return model.apply(variables, images, train=False)

    return apply, variables


__all__ = ["REGISTRY", "Spec", "init", "init_variables", "module", "names", "register", "spec"]
