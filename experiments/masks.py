"""The experiments' foreground-mask caches, each tied to the images it holds masks of.

- CIFAR-10 (GrabCut): one rpx.segment mask cache for the whole data set, named by the
  images' content (`common.data_identity`): `given_masks` (--masks, any settings) or
  `workdir_masks` (WORKDIR/masks.npz, default settings, built on first use).
- ImageNet (U^2-Net): `u2net_masks`, masks of the picked images only, cached by image
  index in WORKDIR/masks-u2net.npz with a SHA-256 of each image, so an index whose image
  changed is refused instead of given another image's mask.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np


def given_masks(path: str, data: str):
    """The --masks cache (any settings) if it holds masks of these images (`data`,
    common.data_identity), else ValueError."""
    from rpx import segment

    try:
        return segment.MaskCache(path, data=data)
    except ValueError as err:
        raise ValueError(f"--masks {path}: {err}") from None


def workdir_masks(path: str, images: np.ndarray, data: str):
    """WORKDIR's GrabCut cache of `images` (default settings), built on first use."""
    from rpx import segment

    if not os.path.exists(path):
        print(f"segmenting {len(images)} images with GrabCut into {path} ...")
        return segment.build_cache(images, path, dataset="cifar10", data=data)
    try:
        return segment.MaskCache(path, segment.GrabCutSettings(), data)
    except ValueError as err:
        raise ValueError(f"{err}; remove {path} or use another --workdir") from None


def file_identity(path: str) -> str:
    """A file named by content: its base name and a SHA-256 of its bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{os.path.basename(path)}, sha256 {digest.hexdigest()[:16]}"


def u2net_masks(path: str, cache: str, size: int):
    """foreground(indices, images) with U^2-Net, caching masks by image index in `cache`
    with a SHA-256 of each image: an index whose image changed is refused (ValueError)."""
    from rpx import segment

    model, variables = segment.load_u2net(path)

    def foreground(indices, images):
        digests = [hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest() for x in images]
        known = _read_u2net_cache(cache)
        changed = [int(i) for i, d in zip(indices, digests, strict=True)
                   if int(i) in known and known[int(i)][1] != d]  # fmt: skip
        if changed:
            raise ValueError(
                f"{cache} holds masks of other images at indices {changed[:10]}: the images "
                "changed since; remove it or use another --workdir"
            )
        todo = [i for i, idx in enumerate(indices) if int(idx) not in known]
        if todo:
            new = segment.u2net.masks(model, variables, images[todo], size=size)
            known.update({int(indices[i]): (m, digests[i]) for i, m in zip(todo, new, strict=True)})
            _write_u2net_cache(cache, known)
        return np.stack([known[int(i)][0] for i in indices])

    return foreground


def _read_u2net_cache(path: str) -> dict:
    """{index: (mask bool [S, S], image sha256)} from `path` ({} if absent)."""
    if not os.path.exists(path):
        return {}
    try:
        with np.load(path, allow_pickle=False) as d:
            arrays = {k: d[k] for k in d.files}
    except Exception as err:  # zip, pickle and npy errors: not this cache
        raise ValueError(f"{path} is not a U^2-Net mask cache ({err}); remove it") from None
    if {"index", "masks"} - arrays.keys():
        raise ValueError(f"{path} is not a U^2-Net mask cache (has {sorted(arrays)}); remove it")
    if "sha256" not in arrays:
        raise ValueError(f"{path} records no image digests (an older format); remove it")
    index, masks, sha = arrays["index"], arrays["masks"], arrays["sha256"]
    return {int(i): (m, str(h)) for i, m, h in zip(index, masks, sha, strict=True)}


def _write_u2net_cache(path: str, known: dict) -> None:
    """Write the cache atomically (a kill never leaves half a file)."""
    keys = sorted(known)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(
                f, index=np.array(keys), masks=np.stack([known[k][0] for k in keys]),
                sha256=np.array([known[k][1] for k in keys]),
            )  # fmt: skip
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
