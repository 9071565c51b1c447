"""`rpx.certify`: proofs that no colour at a pixel fools the classifier, or the colour that does."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from tqdm.auto import tqdm

from rpx import checks, evaluate, regions
from rpx.certification import bounds, branch
from rpx.config import AttackConfig


@struct.dataclass
class Certificate:
    """One-pixel robustness of every pixel, one row per image.

    safe: bool [N, H, W], proved: no colour at that pixel makes the attack succeed.
    fooled: bool [N, H, W], a colour that succeeds was found and predict's full forward
      pass confirmed it.
    witness: float32 [N, H, W, C], that colour where fooled, NaN elsewhere.
    undecided: bool [N, H, W], in the region and neither (the budget ran out).
    robust: bool [N], every region pixel safe. vulnerable: bool [N], some pixel fooled.
    bound_passes: int32 [N, H, W], bound computations spent per pixel (0 outside the
      region and where the corners already fooled).
    Outside the region safe, fooled and undecided are all False.
    """

    safe: jax.Array
    fooled: jax.Array
    witness: jax.Array
    undecided: jax.Array
    robust: jax.Array
    vulnerable: jax.Array
    bound_passes: jax.Array


def certify(
    predict: Callable,
    images,
    labels,
    region=None,
    *,
    target=None,
    value_range: tuple[float, float] = (0.0, 255.0),
    params=None,
    radius: float | None = None,
    max_boxes: int = 64,
    chunk_size: int = 256,
    enumerate_below: int = 8,
    search_starts: int = 1,
    search_steps: int = 8,
    evaluation: str = "auto",
    progress: bool = True,
) -> Certificate:
    """Decide, for every region pixel, whether some colour there makes the attack succeed.

    Args:
      predict: float32 [B, H, W, C] in value_range -> probabilities [B, K], traceable;
        its ops must be ones the bounds follow (convolutions of any stride, padding,
        dilation and groups, dense layers, per-channel affine maps such as BatchNorm in
        inference and input normalisation, ReLU and monotone activations, max and
        average pools, residual adds, reshapes, transposes, means and maxima over axes,
        concatenation, a final softmax or log-softmax): any other op on a value that
        depends on the pixel raises ValueError naming it.
      images: [N, H, W, C], uint8 (or another integer dtype) or float, in value_range.
      labels: int [N]; untargeted success is argmax != label, as in `rpx.attack`.
      region: bool [N, H, W] or [H, W], the pixels to certify; None: every pixel.
      target: int [N] or None; given, success is argmax == target.
      value_range: (lo, hi). The colours: for integer images every whole number in it
        per channel ((hi - lo + 1)**C colours, a finite set), for float images the
        whole box [lo, hi]**C.
      params: weights for predict(params, x), or None.
      radius: None (every colour of value_range), or only the colours within +-radius
        of the pixel's clean colour in every channel (clipped to value_range): local
        one-pixel robustness, which bounds decide far more often.
      max_boxes: bound passes per pixel before it is left undecided (the budget).
      chunk_size: boxes (and candidates) per compiled call.
      enumerate_below: integer boxes of at most this many colours are tried colour by
        colour instead of bounded.
      search_starts, search_steps: the gradient search over the colour of each pixel
        still undecided (starts: the clean colour, then uniform random ones); 0: none.
      evaluation: how candidate colours are scored before the full pass confirms
        ("auto", "full", "incremental", as in `rpx.pixel_map`).
      progress: show a progress bar over images.

    Returns:
      A `Certificate`.

    Soundness. A pixel is "safe" only when every box of its colour set is closed by a
    proof (every margin's lower bound above the proof margin) or, for integer colours,
    by evaluating every colour of the box. Bounds are linear forms in the pixel's
    colour propagated through predict's jaxpr (`rpx.certification.rules`), exact outside
    the pixel's receptive field (the clean activations); where they leave a box open,
    the margins are bounded again by back-substitution (`rpx.certification.crown`) on
    their intermediate bounds, and the better bound counts. They are computed in float32
    without outward rounding; float rounding of the bounds and of predict is covered by
    the proof margin `bounds.PROOF_RTOL * (1 + max |logit|)`, far above the float32
    error of these networks, and a colour is decided by evaluation only when its
    probability margin exceeds `branch.BORDERLINE` or predict's full forward pass
    decides it. A softmax head is followed as order-preserving (argmax of the
    probabilities is that of the logits, exactly in real arithmetic).
    """
    config = AttackConfig(value_range=value_range)
    images, labels, region, target = checks.check_inputs(
        predict, images, labels, region, target, config, to_device=False, params=params
    )
    for name, value, least in (
        ("max_boxes", max_boxes, 1),
        ("chunk_size", chunk_size, 1),
        ("enumerate_below", enumerate_below, 1),
        ("search_starts", search_starts, 0),
        ("search_steps", search_steps, 0),
    ):
        checks.positive_int(name, value, least)
    checks.one_of("evaluation", evaluation, evaluate.EVALUATIONS)
    if radius is not None:
        if isinstance(radius, bool) or not np.isscalar(radius) or not radius >= 0:
            raise ValueError(f"radius must be None or a number >= 0, got {radius!r}")
        radius = float(radius)
    images = np.asarray(images)
    n, h, w, c = images.shape
    bplan = bounds.analyse(predict, (h, w, c), params)
    integer = bool(np.issubdtype(images.dtype, np.integer))
    ctx = branch.Context(
        predict=predict,
        params=params,
        bplan=bplan,
        targeted=target is not None,
        integer=integer,
        dtype=images.dtype,
        value_range=tuple(float(v) for v in config.value_range),
        radius=radius,
        max_boxes=max_boxes,
        chunk_size=chunk_size,
        enumerate_below=enumerate_below,
        search_starts=search_starts,
        search_steps=search_steps,
        evaluation=evaluation,
    )
    mask = np.asarray(regions.broadcast(region, n, h, w))
    labels = np.asarray(labels)
    goals = labels if target is None else np.asarray(target)
    safe = np.zeros((n, h, w), bool)
    fooled = np.zeros((n, h, w), bool)
    witness = np.full((n, h, w, c), np.nan, np.float32)
    passes = np.zeros((n, h, w), np.int32)
    for i in tqdm(range(n), desc="certify", unit="image", disable=not progress):
        pixels = np.argwhere(mask[i])
        got = branch.certify_image(ctx, images[i], int(labels[i]), int(goals[i]), pixels)
        rows, cols = pixels.T
        safe[i, rows, cols] = got.safe
        fooled[i, rows, cols] = got.fooled
        witness[i, rows, cols] = got.witness
        passes[i, rows, cols] = got.bound_passes
    undecided = mask & ~safe & ~fooled
    return Certificate(
        safe=jnp.asarray(safe),
        fooled=jnp.asarray(fooled),
        witness=jnp.asarray(witness),
        undecided=jnp.asarray(undecided),
        robust=jnp.asarray((safe | ~mask).all((1, 2))),
        vulnerable=jnp.asarray(fooled.any((1, 2))),
        bound_passes=jnp.asarray(passes),
    )
