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
  `exact.at_least_one` gives its expectation over all draws.
- background blob: per image, a random 4-connected blob of the background as large as
  the foreground (`blob`, seeded by (seed, dataset index, 1)): the same control, compact,
  since fooling pixels cluster.
- ring: foreground+2 without the foreground, the pixels the dilation moves; ring-sized
  blob: a random 4-connected blob of background-2 as large as the ring (seeded by (seed,
  dataset index, 2)). Moving pixels from the background to the foreground can only
  widen the foreground - background gap, whichever pixels they are; ring - ring-sized
  blob asks whether the pixels next to the object fool more often than as many pixels
  elsewhere in the background.
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
    "background blob",
    "ring",
    "ring-sized blob",
)
PAPER_REGIONS = REGIONS[:3]  # the regions of the paper's Table II
_SQUARE = np.ones((3, 3), np.uint8)
# The dilation (pixels) of the foreground each region is read from.
_DILATION = {
    "foreground+1": 1,
    "foreground+2": 2,
    "background-1": 1,
    "background-2": 2,
    "ring": 2,
    "ring-sized blob": 2,
}


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


def blob(allowed, size: int, rng) -> np.ndarray:
    """bool [H, W]: a random 4-connected set of `size` pixels of `allowed` (bool [H, W]),
    grown from a uniform start pixel (among those whose 4-connected component of
    `allowed` holds at least `size` pixels) by adding a uniform pixel of its 4-neighbour
    frontier at a time (Eden growth: compact, irregular). Where no component is large
    enough, the whole of a largest component (fewer pixels than asked)."""
    allowed = np.asarray(allowed, bool)
    h, w = allowed.shape
    out = np.zeros_like(allowed)
    if size <= 0 or not allowed.any():
        return out
    count, labels = cv2.connectedComponents(allowed.astype(np.uint8), connectivity=4)
    sizes = np.bincount(labels.ravel(), minlength=count)
    sizes[0] = 0  # label 0: outside `allowed`
    if sizes.max() < size:
        return labels == int(np.argmax(sizes))
    start = int(rng.choice(np.flatnonzero(sizes[labels.ravel()] >= size)))
    # Plain Python lists over the flat image: the loop draws one number per pixel.
    ok = allowed.ravel().tolist()
    seen = bytearray(h * w)
    seen[start] = 1
    picked, frontier = [start], []
    draw = rng.integers
    while True:
        i, j = divmod(start, w)
        for at, inside in ((start - w, i > 0), (start + w, i < h - 1), (start - 1, j > 0),
                           (start + 1, j < w - 1)):  # fmt: skip
            if inside and ok[at] and not seen[at]:
                seen[at] = 1
                frontier.append(at)
        if len(picked) == size:
            out.flat[picked] = True
            return out
        k = int(draw(len(frontier)))
        frontier[k], frontier[-1] = frontier[-1], frontier[k]
        start = frontier.pop()
        picked.append(start)


def blobs(allowed, sizes, index, seed: int, stream: int) -> np.ndarray:
    """bool [N, H, W]: `blob(allowed[n], sizes[n], rng)` per image, rng seeded by (seed,
    dataset index[n], stream)."""
    allowed = np.asarray(allowed, bool)
    out = np.zeros_like(allowed)
    for n, (mask, size, i) in enumerate(zip(allowed, sizes, np.asarray(index), strict=True)):
        out[n] = blob(mask, int(size), np.random.default_rng([seed, int(i), stream]))
    return out


def region(name: str, foreground, index, seed: int = 0) -> np.ndarray:
    """bool [N, H, W]: the region `name` (one of REGIONS) of the images with foreground
    masks bool [N, H, W] and dataset indices `index` int [N]: the same masks `regions`
    gives under that name, computing only this one."""
    if name not in REGIONS:
        raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {name!r}")
    foreground = np.asarray(foreground, bool)
    n, h, w = foreground.shape
    if name == "original":
        return np.ones_like(foreground)
    if name in ("foreground", "background"):
        return foreground.copy() if name == "foreground" else ~foreground
    if name in ("centre prior", "outside centre"):
        centre = np.broadcast_to(centre_prior(h, w), (n, h, w))
        return centre.copy() if name == "centre prior" else ~centre
    if name == "size-matched background":
        return size_matched(foreground, index, seed)
    if name == "background blob":
        return blobs(~foreground, foreground.sum((1, 2)), index, seed, 1)
    grown = dilate(foreground, _DILATION[name])
    if name.startswith("foreground+"):
        return grown
    if name.startswith("background-"):
        return ~grown
    ring = grown & ~foreground
    if name == "ring":
        return ring
    return blobs(~grown, ring.sum((1, 2)), index, seed, 2)  # ring-sized blob


def regions(foreground, index, seed: int = 0) -> dict[str, np.ndarray]:
    """{name: bool [N, H, W]} for every name in REGIONS, from the foreground masks bool
    [N, H, W] of the images with dataset indices `index` int [N]."""
    return {name: region(name, foreground, index, seed) for name in REGIONS}
