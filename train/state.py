"""Training state, optimiser and the pure train/eval steps (jitted by the loop)."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from train.data import augment_crop_flip


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree (checkpointed as is)."""

    step: jax.Array  # int32 scalar: optimiser steps taken
    params: Any
    batch_stats: Any  # {} for nets without BatchNorm
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class Hyper:
    """Optimisation settings that shape the train step."""

    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) or "adamw"
    learning_rate: float = 0.1  # peak, reached after warm-up
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 0
    total_steps: int = 1
    label_smoothing: float = 0.1
    augment: bool = True  # device-side crop + flip (in-memory CIFAR-style data)


def _decay_mask(params):
    # Decay kernels only: decaying biases and BatchNorm scales just fights the norm layers.
    return jax.tree.map(lambda p: p.ndim > 1, params)


def schedule(h: Hyper) -> optax.Schedule:
    """Linear warm-up from 0 to the peak, then cosine decay to 0 at total_steps."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=h.learning_rate,
        warmup_steps=h.warmup_steps,
        decay_steps=max(h.total_steps, h.warmup_steps + 1),
        end_value=0.0,
    )


def optimizer(h: Hyper) -> optax.GradientTransformation:
    """SGD-Nesterov with L2 weight decay, or AdamW, on the warm-up + cosine schedule."""
    if h.optimizer not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {h.optimizer!r}")
    lr = schedule(h)
    if h.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=h.weight_decay, mask=_decay_mask)
    return optax.chain(
        optax.add_decayed_weights(h.weight_decay, mask=_decay_mask),
        optax.sgd(lr, momentum=h.momentum, nesterov=True),
    )


def create_state(variables: dict, tx: optax.GradientTransformation) -> TrainState:
    """A fresh TrainState from initial model variables."""
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
    )


def _variables(state: TrainState, params) -> dict:
    if state.batch_stats:
        return {"params": params, "batch_stats": state.batch_stats}
    return {"params": params}


def _loss_and_correct(logits, labels, num_classes, smoothing):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
    loss = optax.softmax_cross_entropy(logits, targets)
    return loss, (jnp.argmax(logits, -1) == labels)


def train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    h: Hyper,
    key: jax.Array,
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
) -> tuple[TrainState, dict]:
    """One optimiser step on a batch.

    Args:
      model, tx, h: static (bound with functools.partial before jit).
      key: base PRNG key; the step's randomness is fold_in(key, state.step).
      state: TrainState.
      images: uint8 [B, H, W, 3]; labels: int32 [B].

    Returns:
      the new state and {"loss": summed loss, "correct": count, "count": B}.
    """
    k_aug, k_drop = jax.random.split(jax.random.fold_in(key, state.step))
    x = augment_crop_flip(k_aug, images) if h.augment else images.astype(jnp.float32)
    num_classes = model.num_classes

    def loss_fn(params):
        logits, updates = model.apply(
            _variables(state, params),
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": k_drop},
        )
        loss, correct = _loss_and_correct(logits, labels, num_classes, h.label_smoothing)
        return loss.mean(), (loss, correct, updates)

    grads, (loss, correct, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
    deltas, opt_state = tx.update(grads, state.opt_state, state.params)
    state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, deltas),
        batch_stats=updates.get("batch_stats", state.batch_stats),
        opt_state=opt_state,
    )
    metrics = {"loss": loss.sum(), "correct": correct.sum(), "count": jnp.float32(len(labels))}
    return state, metrics


def eval_step(
    model: nn.Module, state: TrainState, images: jax.Array, labels: jax.Array, mask: jax.Array
) -> dict:
    """Summed loss (no smoothing), correct predictions and count over the unmasked
    examples of a batch: images uint8 [B,H,W,3], labels int32 [B], mask bool [B]."""
    logits = model.apply(_variables(state, state.params), images.astype(jnp.float32), train=False)
    loss, correct = _loss_and_correct(logits, labels, model.num_classes, 0.0)
    return {
        "loss": jnp.where(mask, loss, 0.0).sum(),
        "correct": (correct & mask).sum(),
        "count": mask.sum(),
    }
