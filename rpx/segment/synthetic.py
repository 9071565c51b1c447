"""Planted-object images with a known foreground, to measure segmentation quality.

A coloured disc (with a little texture of its own) on a smooth random colour texture: the
true mask is the disc, so IoU against it scores a segmenter without any human labels. The
`contrast` knob moves the disc colour from far away from the background (easy) to inside the
background's own colour range (the low-contrast case where rectangle-started GrabCut
collapses).
"""

from __future__ import annotations

import cv2
import numpy as np


def _texture(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    """Smooth random colour field, float32 [size, size, 3], zero-mean-ish, +-amplitude."""
    # Coarse noise upsampled with cubic interpolation gives blotches a few pixels wide,
    # plus fine per-pixel noise: roughly the statistics of a blurry natural background.
    coarse = rng.uniform(-1.0, 1.0, size=(max(2, size // 6), max(2, size // 6), 3))
    field = cv2.resize(coarse.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0.0, 0.25, size=(size, size, 3)).astype(np.float32)
    return amplitude * (field + fine)


def planted_discs(
    rng: np.random.Generator, count: int, size: int = 32, contrast: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Images of one disc each on a textured background, and the true disc masks.

    Args:
      rng: numpy Generator (all randomness comes from it).
      count: number of images N >= 1.
      size: image side S >= 8 (square images).
      contrast: in [0, 1]; 1 puts the disc colour about 150 grey levels away from the
        background's mean colour, 0 gives the disc the background's mean colour (only its
        own texture and the background's texture differ).

    Returns:
      images uint8 [N, S, S, 3] and masks bool [N, S, S] (True on the disc). Disc radii are
      uniform in [0.18 S, 0.32 S]; centres are within 0.1 S of the image centre.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if not 0.0 <= contrast <= 1.0:
        raise ValueError(f"contrast must be in [0, 1], got {contrast}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((count, size, size, 3), np.uint8)
    masks = np.empty((count, size, size), bool)
    for n in range(count):
        base = rng.uniform(60.0, 196.0, size=3).astype(np.float32)
        background = base + _texture(rng, size, 30.0)
        direction = rng.normal(size=3).astype(np.float32)
        direction /= np.linalg.norm(direction) + 1e-6
        disc_colour = np.clip(base + contrast * 150.0 * direction, 0.0, 255.0)
        disc = disc_colour + _texture(rng, size, 8.0)
        radius = rng.uniform(0.18, 0.32) * size
        cy, cx = size / 2 + rng.uniform(-0.1, 0.1, size=2) * size
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        images[n] = np.clip(np.where(inside[..., None], disc, background), 0, 255).astype(np.uint8)
        masks[n] = inside
    return images, masks


def iou(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Intersection over union per image: bool [N, H, W] x 2 -> float64 [N] (1.0 if both empty)."""
    pred = np.asarray(pred, bool)
    true = np.asarray(true, bool)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have one shape, got {pred.shape} and {true.shape}")
    axes = tuple(range(1, pred.ndim))
    inter = np.logical_and(pred, true).sum(axis=axes)
    union = np.logical_or(pred, true).sum(axis=axes)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
