"""Mask cache: masks of a set of images computed once, stored as npz, loaded by index.

File layout (one `.npz`, written atomically):
  `masks`  uint8 [N, H, ceil(W / 8)]  np.packbits of the bool masks along W
  `paths`  int8 [N]                   GrabCut path code per image (rpx.segment.PATHS),
                                      -1 for masks from elsewhere (e.g. U^2-Net)
  `meta`   0-d str                    JSON: method, settings, data, dataset, split, shape,
                                      and any extras the writer records

The settings that made the masks and the images they are of (`data`: `data_identity`,
the image count and a content digest) are recorded, so a cache built with other
settings or from other images is refused rather than silently mixed with fresh masks.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from rpx.segment.grabcut import PATHS, GrabCutSettings, grabcut, path_counts

FORMAT_VERSION = 1


def data_identity(images, labels) -> str:
    """What identifies a set of images wherever its file lies: count and content digest.

    images: uint8 [N, H, W, C]; labels: int [N] (the dataset's, hashed as int64).
    """
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.asarray(labels, np.int64).tobytes())
    return f"{len(images)} images, sha256 {digest.hexdigest()[:16]}"


def save_masks(path: str, masks, paths, settings: dict, **info) -> None:
    """Write a mask cache.

    Args:
      path: output `.npz` file (its folder is created).
      masks: bool [N, H, W], True = foreground.
      paths: int [N] GrabCut path codes in [0, len(PATHS)), or None for masks that did
        not come from rpx.segment.grabcut (stored as -1).
      settings: dict of the settings that made the masks (e.g. GrabCutSettings.to_dict()).
      **info: JSON-serialisable extras recorded with them (method, dataset, split, ...);
        `data=data_identity(images, labels)` ties the cache to its images (MaskCache's
        `data` check refuses a cache without it).
    """
    masks = np.asarray(masks)
    paths = np.full(masks.shape[:1], -1) if paths is None else np.asarray(paths)
    if masks.dtype != bool or masks.ndim != 3:
        raise ValueError(f"masks must be bool [N, H, W], got {masks.dtype} {masks.shape}")
    if paths.shape != masks.shape[:1]:
        raise ValueError(f"paths must have shape [{masks.shape[0]}], got {paths.shape}")
    if paths.size and not ((paths == -1).all() or (paths.min() >= 0 and paths.max() < len(PATHS))):
        raise ValueError(
            f"paths must be codes in [0, {len(PATHS)}), got {paths.min()}..{paths.max()}"
        )
    if not isinstance(settings, dict):
        raise ValueError(f"settings must be a dict, got {type(settings).__name__}")
    meta = dict(info, settings=settings, shape=list(masks.shape), version=FORMAT_VERSION)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Write next to the target and rename: a crash never leaves a half-written cache.
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(
                f,
                masks=np.packbits(masks, axis=-1),
                paths=paths.astype(np.int8),
                meta=np.array(json.dumps(meta, sort_keys=True)),
            )
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it the cache
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a cache is for everyone to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class MaskCache:
    """Read access to a mask cache: `cache[indices] -> bool [len(indices), H, W]`.

    Args:
      path: the `.npz` written by `save_masks` / `build_cache`.
      settings: if given (dict or GrabCutSettings), the recorded settings must equal it,
        else ValueError (the cache was built with other settings).
      data: if given (`data_identity` of the images about to be used), the cache must
        record the same, else ValueError (masks of other images, or a cache that does
        not say which images it holds).

    Attributes:
      paths: int8 [N] path code per image; meta: the recorded JSON dict;
      settings: meta["settings"]; shape: (N, H, W).
    """

    def __init__(
        self, path: str, settings: dict | GrabCutSettings | None = None, data: str | None = None
    ):
        if not os.path.isfile(path):
            raise ValueError(f"path: no mask cache at {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = {"masks", "paths", "meta"} - set(npz.files)
                if missing:
                    raise ValueError(f"missing {sorted(missing)}")
                self._packed = npz["masks"]
                self.paths = npz["paths"]
                self.meta = json.loads(str(npz["meta"]))
            self.settings = self.meta["settings"]
            self.shape = tuple(self.meta["shape"])
        except Exception as err:  # zip, npy, JSON and key errors alike: not a cache
            raise ValueError(f"path: {path} is not a mask cache ({err})") from None
        self._check_layout(path)
        self.path = path
        if isinstance(settings, GrabCutSettings):
            settings = settings.to_dict()
        if settings is not None and settings != self.settings:
            raise ValueError(
                f"settings: {path} was built with {self.settings}, not the requested {settings}"
            )
        if data is not None and self.meta.get("data") != data:
            if "data" not in self.meta:
                raise ValueError(
                    f"data: {path} does not record which images its masks are of (built "
                    "before caches recorded it): rebuild it (build_cache; for a dataset split, "
                    "python -m experiments.masks --force)"
                )
            raise ValueError(
                f"data: {path} holds masks of other images ({self.meta['data']}), not of "
                f"these ({data})"
            )

    def _check_layout(self, path: str) -> None:
        """ValueError unless meta's shape (N, H, W) is what the arrays hold: indexing
        trusts it (a wrong W unpacks wrong masks, a wrong N reads past the arrays)."""
        shape = self.shape
        if not (len(shape) == 3 and all(isinstance(v, int) and v >= 0 for v in shape)):
            raise ValueError(f"path: {path} is not a mask cache (meta shape {list(shape)})")
        n, h, w = shape
        packed = (n, h, (w + 7) // 8)
        if self._packed.dtype != np.uint8 or self._packed.shape != packed:
            raise ValueError(
                f"path: {path} is a broken mask cache: its meta says {n} masks of {h} x {w}, "
                f"so masks must be uint8 {packed}, got {self._packed.dtype} "
                f"{self._packed.shape}"
            )
        # packbits pads each row with zero bits: set ones mean masks wider than meta's W.
        pad = (1 << (-w % 8)) - 1
        if pad and n * h and (self._packed[..., -1] & pad).any():
            raise ValueError(
                f"path: {path} is a broken mask cache: its meta says {n} masks of {h} x {w}, "
                f"but they have pixels past column {w}"
            )
        codes = self.paths
        if (
            codes.shape != (n,)
            or not np.issubdtype(codes.dtype, np.integer)
            or not np.isin(codes, np.arange(-1, len(PATHS))).all()
        ):
            raise ValueError(
                f"path: {path} is a broken mask cache: paths must be {n} codes in "
                f"[-1, {len(PATHS)}), got {codes.dtype} {codes.shape}"
            )
        if not isinstance(self.settings, dict):
            raise ValueError(f"path: {path} is not a mask cache (settings not a JSON object)")

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, indices) -> np.ndarray:
        """An int gives bool [H, W]; an int array [M] (or slice) gives bool [M, H, W]."""
        if isinstance(indices, slice):
            indices = np.arange(len(self))[indices]
        idx = np.asarray(indices)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got {idx.dtype}")
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ValueError(f"indices must lie in [0, {len(self)}), got {idx.min()}..{idx.max()}")
        width = self.shape[2]
        return np.unpackbits(self._packed[idx], axis=-1, count=width).astype(bool)

    def path_counts(self) -> dict[str, int]:
        """How many cached masks came from each GrabCut path ({} for other methods)."""
        if self.paths.size and (self.paths == -1).all():
            return {}
        return path_counts(self.paths)


def build_cache(
    images,
    path: str,
    settings: GrabCutSettings | None = None,
    *,
    data: str,
    workers: int | None = None,
    **info,
) -> MaskCache:
    """GrabCut masks for uint8 [N, H, W, 3] images, saved to `path`; returns the cache.

    `data` (`data_identity(images, labels)`) names the images, so the cache is refused
    for others; `info` (e.g. dataset="cifar10", split="test") is recorded with it.
    """
    settings = settings or GrabCutSettings()
    masks, paths = grabcut(images, settings, workers=workers, return_paths=True)
    save_masks(path, masks, paths, settings.to_dict(), method="grabcut", data=data, **info)
    return MaskCache(path, settings, data)
