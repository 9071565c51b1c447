"""What the corner maps say about a region: per-image facts and their bootstrap intervals.

A map `classes` int [N, H, W, M] holds the predicted class of image n with corner m at
pixel (h, w) (-1 where the scan gave no finite output). Within a region (bool [N, H, W]):

- a *fooling pixel* is a region pixel where some corner gives a class != the label: a
  one-pixel untargeted attack with a corner colour succeeds there;
- the *reached classes* of an image are the classes != label that some (region pixel,
  corner) gives: a targeted one-pixel attack towards each of them succeeds (Fig. 3
  counts them, Fig. 5's matrix adds them up per original class);
- the *dominant class* of a fooled image is the reached class given by the most (region
  pixel, corner) pairs (ties: the lowest class): the single class an untargeted attack
  most likely lands on (Fig. 4's matrix).

Intervals: shares of images (fooled, per number of reached classes) and their paired
differences are counts of images, with exact intervals (`exact`: Clopper-Pearson;
an exact conservative interval and the exact McNemar test for a paired difference). The
rest (densities, the share of (image, class) pairs reached, means of per-image values)
are ratios over clustered counts: 95% percentile bootstrap over images (the same
resampled image sets for every region of a classifier, so differences are paired).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from experiments.corner_maps import exact

LEVEL = exact.LEVEL


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """Per image, within one region: region_pixels int [N]; fooling_pixels int [N];
    reached bool [N, K] (class k != label reached; False at the label); dominant int
    [N] (-1 where no class is reached); label int [N]."""

    region_pixels: np.ndarray
    fooling_pixels: np.ndarray
    reached: np.ndarray
    dominant: np.ndarray
    label: np.ndarray

    @property
    def fooled(self) -> np.ndarray:
        """bool [N]: some region pixel fools the classifier."""
        return self.fooling_pixels > 0

    @property
    def targets(self) -> np.ndarray:
        """int [N]: how many classes other than the label the region reaches."""
        return self.reached.sum(1)


def fooling_pixels(classes, labels, region) -> np.ndarray:
    """bool [N, H, W]: the region pixels where some corner gives a class other than the
    label (classes int [N, H, W, M] in [-1, K), -1 never fools; labels int [N]; region
    bool [N, H, W])."""
    classes, labels = np.asarray(classes), np.asarray(labels)
    other = (classes >= 0) & (classes != labels[:, None, None, None])
    return np.asarray(region, bool) & other.any(-1)


def image_facts(classes, labels, region, num_classes: int) -> ImageFacts:
    """The facts of each image within `region`.

    classes: int [N, H, W, M] in [-1, K); labels: int [N]; region: bool [N, H, W].
    """
    classes = np.asarray(classes).astype(np.int64)
    labels = np.asarray(labels).astype(np.int64)
    region = np.asarray(region, bool)
    n = len(labels)
    if classes.shape[:3] != region.shape or classes.shape[0] != n:
        raise ValueError(f"classes {classes.shape}, region {region.shape}, labels {labels.shape}")
    if classes.size and classes.max() >= num_classes:
        raise ValueError(f"classes hold class {classes.max()}, outside {num_classes} classes")
    inside = region[..., None] & (classes >= 0)
    fooling = fooling_pixels(classes, labels, region).sum((1, 2))
    # counts[n, k]: (region pixel, corner) pairs of image n that give class k.
    image = np.broadcast_to(np.arange(n)[:, None, None, None], classes.shape)
    flat = (image * num_classes + classes)[inside]
    counts = np.bincount(flat, minlength=n * num_classes).reshape(n, num_classes)
    counts[np.arange(n), labels] = 0
    reached = counts > 0
    dominant = np.where(reached.any(1), counts.argmax(1), -1)
    return ImageFacts(region.sum((1, 2)), fooling, reached, dominant, labels)


def resamples(n: int, count: int = 2000, seed: int = 0) -> np.ndarray:
    """int [count, n]: image indices of `count` bootstrap resamples (with replacement)."""
    return np.random.default_rng(seed).integers(0, n, (count, n))


def interval(samples) -> tuple[float, float]:
    """The central LEVEL percentile interval of bootstrap values [R] (NaNs ignored)."""
    lo, hi = 50 * (1 - LEVEL), 50 * (1 + LEVEL)
    samples = np.asarray(samples, np.float64)
    samples = samples[np.isfinite(samples)]
    if not samples.size:
        return float("nan"), float("nan")
    return float(np.percentile(samples, lo)), float(np.percentile(samples, hi))


def mean(values, boot) -> dict:
    """Estimate and interval of the mean of per-image values [N] (NaN: left out)."""
    values = np.asarray(values, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # resamples of only NaNs
        est = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        lo, hi = interval(np.nanmean(values[boot], axis=1))
    return dict(estimate=est, low=lo, high=hi)


def _ratio(num, den, boot) -> dict:
    """Estimate and interval of sum(num) / sum(den) over images."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    est = float(num.sum() / den.sum()) if den.sum() else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        lo, hi = interval(num[boot].sum(1) / den[boot].sum(1))
    return dict(estimate=est, low=lo, high=hi)


def summarise(facts: ImageFacts, boot) -> dict:
    """Everything the report shows for one (classifier, region); `boot` int [R, N].

    Returns a JSON-ready dict: images; fooled (count, share estimate/low/high,
    Clopper-Pearson); targeted (the share of (image, other class) pairs reachable, the
    paper's Targeted); targets (share per number of reached classes 0..K-1: counts,
    estimate, low, high lists, Clopper-Pearson); density_pooled (fooling pixels / region
    pixels over all images) and density_mean (the mean of each image's ratio, images
    with a non-empty region), each with its bootstrap interval; region_pixels (mean, min,
    max); reached_pairs (Fig. 5) and dominant_pairs (Fig. 4), int [K, K] lists, rows the
    original class.
    """
    n, k = facts.reached.shape
    onehot = facts.targets[:, None] == np.arange(k)
    target_shares = [exact.share(onehot[:, j]) for j in range(k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        pixels = facts.region_pixels
        density = np.where(pixels > 0, facts.fooling_pixels / np.maximum(pixels, 1), np.nan)
    reached_pairs = np.zeros((k, k), np.int64)
    np.add.at(reached_pairs, facts.label, facts.reached.astype(np.int64))
    dominant_pairs = np.zeros((k, k), np.int64)
    hit = facts.dominant >= 0
    np.add.at(dominant_pairs, (facts.label[hit], facts.dominant[hit]), 1)
    return dict(
        images=int(n),
        fooled=exact.share(facts.fooled),
        targeted=dict(pairs=int(facts.reached.sum()), **mean(facts.targets / (k - 1), boot)),
        targets=dict(
            counts=onehot.sum(0).astype(int).tolist(),
            **{f: [s[f] for s in target_shares] for f in ("estimate", "low", "high")},
        ),
        density_pooled=dict(
            fooling=int(facts.fooling_pixels.sum()),
            pixels=int(pixels.sum()),
            **_ratio(facts.fooling_pixels, pixels, boot),
        ),
        density_mean=dict(images=int((pixels > 0).sum()), **mean(density, boot)),
        region_pixels=dict(
            mean=float(pixels.mean()) if n else float("nan"),
            min=int(pixels.min(initial=0)),
            max=int(pixels.max(initial=0)),
        ),
        reached_pairs=reached_pairs.tolist(),
        dominant_pairs=dominant_pairs.tolist(),
    )


def difference(a: ImageFacts, b: ImageFacts, boot) -> dict:
    """Paired differences a - b over the same images: the share of fooled images
    (`exact.paired`: exact interval, discordant counts, McNemar p) and the pooled
    density (bootstrap interval, `boot` int [R, N])."""
    share = exact.paired(a.fooled, b.fooled)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_resample = a.fooling_pixels[boot].sum(1) / a.region_pixels[boot].sum(
            1
        ) - b.fooling_pixels[boot].sum(1) / b.region_pixels[boot].sum(1)
        est = _pooled(a) - _pooled(b)
    lo, hi = interval(per_resample)
    return dict(share=share, density_pooled=dict(estimate=float(est), low=lo, high=hi))


def _pooled(f: ImageFacts) -> float:
    return float(f.fooling_pixels.sum() / f.region_pixels.sum())
