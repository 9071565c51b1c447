"""Automatic GrabCut foreground masks (the paper's CIFAR-10 segmentation, without a human).

Each image is segmented by `cv2.grabCut` started from a rectangle inset by a margin (the
paper's interactive start, automated). A result is *degenerate* when its foreground is
(nearly) empty or fills (nearly) everything GrabCut was allowed to call foreground; then
the image is retried: the same rectangle start on the image upscaled further, then a mask
start (border = background, centre ellipse = probable foreground, a small centre core =
sure foreground), and if all are degenerate the mask is a centre ellipse prior. The path
taken is recorded per image, so callers can count how often each was needed.

32x32 images are tiny: GrabCut's smoothness term grows with the boundary length and its
colour term with the area, so at 32x32 the cut collapses to all-background on most
low-contrast images. Upscaling before the cut (default 4x, bicubic; 8x for the retries)
and averaging the mask back down fixes most of that; docs/segmentation/README.md has the
measurements.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os

import cv2
import numpy as np

# Path codes stored per image (and in the mask cache): index into PATHS.
PATHS = ("rect", "rect_upscaled", "retry", "centre_prior")
RECT, RECT_UPSCALED, RETRY, CENTRE_PRIOR = range(4)

_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
}


@dataclasses.dataclass(frozen=True)
class GrabCutSettings:
    """Everything that determines the masks (recorded in the mask cache).

    Attributes:
      margin: inset of the starting rectangle, as a fraction of each side (at least 1 px).
        Pixels outside the rectangle are sure background.
      iterations: GrabCut iterations (`iterCount`) per attempt.
      upscale: integer factor the image is resized by before GrabCut; the mask is area-
        averaged back to the input size and thresholded at 0.5.
      retry_upscale: factor for the retries; if larger than `upscale`, a degenerate first
        result is first retried from the same rectangle at this factor (path
        "rect_upscaled"). The mask-start retry uses the larger of the two factors.
      interpolation: "cubic", "linear" or "nearest", for the upscaling.
      min_fraction: a foreground smaller than this fraction of the image is degenerate
        (0 turns the check off: plain GrabCut, whose masks may then be empty).
      max_fill: a foreground covering at least this fraction of the rectangle (everything
        GrabCut may call foreground) is degenerate.
      prior_size: axes of the centre ellipse (retry start and final fallback), as a
        fraction of the rectangle's sides.
      core_size: radius of the sure-foreground core of the retry, as a fraction of the
        centre ellipse.
    """

    margin: float = 0.1
    iterations: int = 3
    upscale: int = 4
    retry_upscale: int = 8
    interpolation: str = "cubic"
    min_fraction: float = 0.02
    max_fill: float = 0.98
    prior_size: float = 0.7
    core_size: float = 0.3

    def __post_init__(self):
        if not 0.0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin}")
        if int(self.iterations) != self.iterations or self.iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {self.iterations}")
        if int(self.upscale) != self.upscale or self.upscale < 1:
            raise ValueError(f"upscale must be an integer >= 1, got {self.upscale}")
        if int(self.retry_upscale) != self.retry_upscale or self.retry_upscale < 1:
            raise ValueError(f"retry_upscale must be an integer >= 1, got {self.retry_upscale}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {sorted(_INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )
        if not 0.0 <= self.min_fraction < 1.0:
            raise ValueError(f"min_fraction must be in [0, 1), got {self.min_fraction}")
        if not 0.0 < self.max_fill <= 1.0:
            raise ValueError(f"max_fill must be in (0, 1], got {self.max_fill}")
        if not 0.0 < self.prior_size <= 1.0:
            raise ValueError(f"prior_size must be in (0, 1], got {self.prior_size}")
        if not 0.0 < self.core_size <= 1.0:
            raise ValueError(f"core_size must be in (0, 1], got {self.core_size}")

    def to_dict(self) -> dict:
        """Plain dict of the settings (JSON-serialisable), e.g. for the mask cache."""
        return dataclasses.asdict(self)


def _border(h: int, w: int, margin: float) -> tuple[int, int]:
    """Rectangle inset in pixels (rows, cols): at least 1 so GrabCut has background samples."""
    return max(1, round(margin * h)), max(1, round(margin * w))


def _ellipse(h: int, w: int, by: int, bx: int, size: float) -> np.ndarray:
    """Centred ellipse, bool [h, w], axes = size x the (h - 2 by, w - 2 bx) rectangle."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    ry = max(size * (h - 2 * by) / 2, 0.5)
    rx = max(size * (w - 2 * bx) / 2, 0.5)
    inside = ((yy - h / 2) / ry) ** 2 + ((xx - w / 2) / rx) ** 2 <= 1.0
    if not inside.any():  # tiny images: keep at least the centre pixel
        inside[h // 2, w // 2] = True
    return inside


def centre_prior(height: int, width: int, settings: GrabCutSettings | None = None) -> np.ndarray:
    """The fallback mask: bool [height, width], a centre ellipse inside the start rectangle."""
    settings = settings or GrabCutSettings()
    by, bx = _border(height, width, settings.margin)
    return _ellipse(height, width, by, bx, settings.prior_size)


def _run(image: np.ndarray, mask: np.ndarray, rect, mode: int, iterations: int) -> np.ndarray:
    """One cv2.grabCut call; returns the foreground as bool, or None if OpenCV failed."""
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(image, mask, rect, bgd, fgd, iterations, mode)
    except cv2.error:
        # e.g. a GMM cannot be fitted (too few distinct colours): treat as a failed attempt.
        return None
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def _attempt(image: np.ndarray, s: GrabCutSettings, k: int, from_rect: bool):
    """One GrabCut attempt on `image` upscaled k times: the mask bool [H, W] at the input
    size, or None if the attempt failed or its result is degenerate."""
    h, w = image.shape[:2]
    by, bx = _border(h, w, s.margin)
    big = image
    if k > 1:
        big = cv2.resize(image, (w * k, h * k), interpolation=_INTERPOLATIONS[s.interpolation])
    big = np.ascontiguousarray(big[..., ::-1])  # OpenCV's BGR order (GMMs do not care, tidy)
    H, W, BY, BX = h * k, w * k, by * k, bx * k

    def down(fg: np.ndarray) -> np.ndarray:
        if k == 1:
            return fg
        return cv2.resize(fg.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.5

    if from_rect:  # the paper's start: outside the rectangle sure background, inside unknown
        mask = np.zeros((H, W), np.uint8)
        fg = _run(big, mask, (BX, BY, W - 2 * BX, H - 2 * BY), cv2.GC_INIT_WITH_RECT, s.iterations)
        sure = np.zeros((h, w), bool)
    else:  # the centre ellipse seeds the foreground colours, its core is sure foreground
        mask = np.full((H, W), cv2.GC_PR_BGD, np.uint8)
        mask[_ellipse(H, W, BY, BX, s.prior_size)] = cv2.GC_PR_FGD
        core = _ellipse(H, W, BY, BX, s.prior_size * s.core_size)
        mask[core] = cv2.GC_FGD
        mask[:BY] = mask[H - BY :] = cv2.GC_BGD
        mask[:, :BX] = mask[:, W - BX :] = cv2.GC_BGD
        fg = _run(big, mask, None, cv2.GC_INIT_WITH_MASK, s.iterations)
        sure = down(core)
    if fg is None:
        return None
    small = down(fg)
    # Degenerate: GrabCut added (almost) nothing to the sure foreground it was given, or
    # took (almost) everything it was allowed to (the rectangle).
    allowed = (H - 2 * BY) * (W - 2 * BX)
    if (small & ~sure).sum() < s.min_fraction * h * w or fg.sum() >= s.max_fill * allowed:
        return None
    return small


def _segment_one(image: np.ndarray, s: GrabCutSettings) -> tuple[np.ndarray, int]:
    """Mask bool [H, W] and path code for one uint8 RGB image [H, W, 3]."""
    # GrabCut seeds its colour models with k-means from OpenCV's global RNG: reseed per
    # image so a mask does not depend on which images were segmented before it.
    cv2.setRNGSeed(0)
    attempts = [(RECT, s.upscale, True)]
    if s.retry_upscale > s.upscale:
        attempts.append((RECT_UPSCALED, s.retry_upscale, True))
    attempts.append((RETRY, max(s.upscale, s.retry_upscale), False))
    for path, k, from_rect in attempts:
        mask = _attempt(image, s, int(k), from_rect)
        if mask is not None:
            return mask, path
    return centre_prior(*image.shape[:2], s), CENTRE_PRIOR


def _segment_chunk(images: np.ndarray, settings: GrabCutSettings) -> tuple[np.ndarray, np.ndarray]:
    """Masks bool [n, H, W] and path codes int8 [n] for a chunk of images."""
    masks = np.empty(images.shape[:3], bool)
    paths = np.empty(images.shape[0], np.int8)
    for i, image in enumerate(images):
        masks[i], paths[i] = _segment_one(image, settings)
    return masks, paths


def _init_worker():
    # One OpenCV thread per process: the processes already use every core.
    cv2.setNumThreads(1)


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape [N, H, W, 3], got {images.shape}")
    if images.shape[1] < 4 or images.shape[2] < 4:
        raise ValueError(f"images must be at least 4x4 pixels, got {images.shape[1:3]}")
    return np.ascontiguousarray(images)


def grabcut(
    images,
    settings: GrabCutSettings | None = None,
    *,
    workers: int | None = None,
    chunk_size: int = 128,
    return_paths: bool = False,
):
    """Foreground masks by automatic GrabCut, never degenerate.

    Args:
      images: uint8 [N, H, W, 3] RGB, H, W >= 4.
      settings: GrabCutSettings (defaults if None).
      workers: processes to spread the images over; None = all CPU cores, 1 = in this
        process. Fewer than 2 * chunk_size images always run in this process (starting
        processes would cost more than it saves). Workers are spawned, so a calling
        script needs the usual `if __name__ == "__main__":` guard.
      chunk_size: images per task sent to a worker process.
      return_paths: also return the path each image took.

    Returns:
      masks bool [N, H, W], True = foreground; with return_paths, (masks, paths) where
      paths is int8 [N], an index into PATHS ("rect", "rect_upscaled", "retry",
      "centre_prior").
    """
    settings = settings or GrabCutSettings()
    if not isinstance(settings, GrabCutSettings):
        raise ValueError(f"settings must be a GrabCutSettings, got {type(settings).__name__}")
    images = _check_images(images)
    if workers is not None and (int(workers) != workers or workers < 1):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size}")
    workers = workers or os.cpu_count() or 1
    n = images.shape[0]
    if workers == 1 or n < 2 * chunk_size:
        masks, paths = _segment_chunk(images, settings)
    else:
        starts = range(0, n, chunk_size)
        # spawn, not fork: the caller has usually imported JAX, whose threads do not
        # survive a fork.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker
        ) as pool:
            parts = list(
                pool.map(
                    _segment_chunk,
                    [images[i : i + chunk_size] for i in starts],
                    [settings] * len(starts),
                )
            )
        masks = np.concatenate([p[0] for p in parts])
        paths = np.concatenate([p[1] for p in parts])
    return (masks, paths) if return_paths else masks


def path_counts(paths) -> dict[str, int]:
    """How many images took each path: int [N] codes -> {"rect": n, "rect_upscaled": n, ...}."""
    counts = np.bincount(np.asarray(paths, np.int64).ravel(), minlength=len(PATHS))
    if counts.size > len(PATHS):
        raise ValueError(f"paths must be codes in [0, {len(PATHS)}), got max {counts.size - 1}")
    return {name: int(c) for name, c in zip(PATHS, counts, strict=True)}
