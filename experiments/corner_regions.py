"""The regions the corner maps are read in: the paper's three and variants that test why.

From the automatic GrabCut foreground masks (`rpx.segment.grabcut`, default settings):

- original: every pixel; foreground; background: its complement (the paper's regions).
- foreground+1, foreground+2: the foreground dilated by 1 and 2 pixels (cv2.dilate with
  a 3x3 square, once or twice): does a tight automatic mask leave the object's fooling
  pixels in the background?
- background-1, background-2: their complements, the background with that ring removed.
- centre prior: the fixed centre ellipse of `rpx.segment.centre_prior` (the same for
  every image; GrabCut's last fallback), and outside centre: its complement.
- size-matched background: per image, a random subset of the background with as many
  pixels as the foreground (all of the background where it is smaller), drawn with a
  generator seeded by (seed, dataset index), so an image's subset does not depend on
  which other images are read: is the background's score a matter of its size?
"""

from __future__ import annotations

import cv2
import numpy as np

from rpx.segment import centre_prior

REGIONS = (
    "original",
    "foreground",
    "background",
    "foreground+1",
    "foreground+2",
    "background-1",
    "background-2",
    "centre prior",
    "outside centre",
    "size-matched background",
)
PAPER_REGIONS = REGIONS[:3]  # the regions of the paper's Table II
_SQUARE = np.ones((3, 3), np.uint8)


def dilate(foreground, pixels: int) -> np.ndarray:
    """bool [N, H, W]: each mask of `foreground` (bool [N, H, W]) dilated `pixels` times
    with a 3x3 square (a pixel joins when one of its 8 neighbours is in the mask)."""
    foreground = np.asarray(foreground, bool)
    if pixels == 0:
        return foreground.copy()
    grown = [cv2.dilate(m.astype(np.uint8), _SQUARE, iterations=pixels) for m in foreground]
    return np.stack(grown).astype(bool).reshape(foreground.shape)


def size_matched(foreground, index, seed: int = 0) -> np.ndarray:
    """bool [N, H, W]: per image, min(|foreground|, |background|) background pixels drawn
    without replacement by `np.random.default_rng([seed, index[n]])`.

    foreground: bool [N, H, W]; index: int [N], the images' dataset indices.
    """
    foreground = np.asarray(foreground, bool)
    out = np.zeros_like(foreground)
    for n, (mask, i) in enumerate(zip(foreground, np.asarray(index), strict=True)):
        background = np.flatnonzero(~mask.ravel())
        size = min(int(mask.sum()), len(background))
        chosen = np.random.default_rng([seed, int(i)]).choice(background, size, replace=False)
        out[n].flat[chosen] = True
    return out


def regions(foreground, index, seed: int = 0) -> dict[str, np.ndarray]:
    """{name: bool [N, H, W]} for every name in REGIONS, from the foreground masks bool
    [N, H, W] of the images with dataset indices `index` int [N]."""
    foreground = np.asarray(foreground, bool)
    n, h, w = foreground.shape
    grown = {k: dilate(foreground, k) for k in (1, 2)}
    centre = np.broadcast_to(centre_prior(h, w), (n, h, w))
    return {
        "original": np.ones_like(foreground),
        "foreground": foreground,
        "background": ~foreground,
        "foreground+1": grown[1],
        "foreground+2": grown[2],
        "background-1": ~grown[1],
        "background-2": ~grown[2],
        "centre prior": centre.copy(),
        "outside centre": ~centre,
        "size-matched background": size_matched(foreground, index, seed),
    }
