"""Random-access image datasets: local .npz array files or tensorflow-datasets.

Read by `train/` (training, `python -m train.evaluate`) and by the experiments, which
read their data through it; rpx itself reads no datasets. Two sources, one interface
(`len(src)`, `src[i] -> {"image": uint8 [H, W, 3], "label": int}`):

- `data_dir` given: `DIR/{dataset}-{split}.npz` holding `image` uint8 [N, H, W, 3] and
  `label` [N], as `../shared/data/decode.py DIR` writes them (`cifar10-train.npz`, ...).
- no `data_dir`: `tfds.data_source(dataset, split=...)`, random access without
  TensorFlow; the dataset must already be prepared in the array_record format.
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np

DECODE_HINT = "python ../shared/data/decode.py DIR  (run from the project root)"


class DatasetMissingError(FileNotFoundError, ValueError):
    """A dataset folder, file or prepared tfds dataset is missing; the message says how
    to make it. Also a ValueError, so callers can treat it as bad input."""


class ArraySource:
    """Random access over in-memory arrays: `src[i] -> {"image", "label"}`.

    Attributes:
      images: uint8 [N, H, W, 3].
      labels: int32 [N].
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str = "arrays"):
        _check_arrays(images, labels, name)
        self.images = images
        self.labels = labels.astype(np.int32)
        self.name = name

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i) -> dict:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {self.name} with {len(self)} examples")
        return {"image": self.images[i], "label": int(self.labels[i])}

    def __repr__(self) -> str:
        return f"ArraySource({self.name}, n={len(self)}, image={self.images.shape[1:]})"


def _check_arrays(images, labels, name: str) -> None:
    """Raise ValueError saying what is wrong with an image/label pair of arrays."""
    if images.dtype != np.uint8:
        raise ValueError(f"{name}: `image` must be uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name}: `image` must have shape [N, H, W, 3], got {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{name}: `label` must have shape [N], got {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(
            f"{name}: `image` has {len(images)} examples but `label` has {len(labels)}"
        )
    if not len(images) or not all(images.shape[1:3]):
        raise ValueError(f"{name}: holds no images (`image` has shape {images.shape})")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: `label` must be integers, got {labels.dtype}")
    if len(labels) and labels.min() < 0:
        raise ValueError(f"{name}: `label` has negative values (min {labels.min()})")


def read_npz(path: str, names: tuple[str, ...], name: str | None = None) -> dict:
    """{name: array} of the arrays `names` in the .npz at `path`, each header checked
    against its bytes before anything is read: numpy allocates the shape a header
    declares, so a small file could otherwise claim terabytes. ValueError starting with
    `name` (default: the path) for a missing array, an array of Python objects (never
    unpickled), a header that disagrees with its bytes, or a file that is not an npz."""
    name = name or path
    try:
        with zipfile.ZipFile(path) as archive:
            listed = archive.namelist()
            held = [n[: -len(".npy")] for n in listed if n.endswith(".npy")]
            if len(set(listed)) != len(listed):
                raise ValueError("it names an array twice")  # which one numpy reads is a guess
            missing = [n for n in names if n not in held]
            if missing:
                raise KeyError(f"missing key(s) {missing}; has {held}")
            out = {}
            for array in names:
                info = archive.getinfo(f"{array}.npy")
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = {
                        (1, 0): np.lib.format.read_array_header_1_0,
                        (2, 0): np.lib.format.read_array_header_2_0,
                    }.get(version)
                    if read_header is None:
                        raise ValueError(f"`{array}` is in npy format {version}, not 1.0 or 2.0")
                    shape, _, dtype = read_header(f)
                    if dtype.hasobject:
                        raise ValueError(f"`{array}` holds Python objects, which are never read")
                    declared = math.prod(shape) * dtype.itemsize
                    if f.tell() + declared != info.file_size:
                        raise ValueError(
                            f"`{array}` declares {dtype} {shape} ({declared} bytes) but holds "
                            f"{info.file_size - f.tell()} bytes"
                        )
                with archive.open(info) as f:
                    out[array] = np.lib.format.read_array(f, allow_pickle=False)
    except KeyError as err:
        raise ValueError(f"{name}: {err.args[0]}") from None
    except Exception as err:  # zip, npy header and read errors alike: not such an npz
        raise ValueError(f"{name} is not a readable .npz file ({err})") from None
    return out


def _npz_source(dataset: str, split: str, data_dir: str) -> ArraySource:
    """Read and validate DIR/{dataset}-{split}.npz."""
    if not os.path.isdir(data_dir):
        raise DatasetMissingError(
            f"data_dir {data_dir!r} does not exist. Make it with the decoded arrays: {DECODE_HINT}"
        )
    path = os.path.join(data_dir, f"{dataset}-{split}.npz")
    if not os.path.isfile(path):
        present = sorted(f for f in os.listdir(data_dir) if f.endswith(".npz"))
        raise DatasetMissingError(
            f"{path} not found (data_dir holds {present or 'no .npz files'}). Expected "
            f"{dataset}-{split}.npz with `image` uint8 [N,H,W,3] and `label` [N]; for "
            f"CIFAR-10 make it with: {DECODE_HINT}"
        )
    arrays = read_npz(path, ("image", "label"))
    return ArraySource(arrays["image"], arrays["label"], name=path)


def _tfds_source(dataset: str, split: str):
    """tfds.data_source with errors that say how to prepare the dataset."""
    import tensorflow_datasets as tfds  # lazy: not installed on every machine

    try:
        return tfds.data_source(dataset, split=split, download=False)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise ValueError(f"dataset {dataset!r} is not a tensorflow-datasets name") from err
    except Exception as err:  # tfds raises KeyError, NotImplementedError, ... when unprepared
        # A prepared dataset failing for another reason (e.g. a bad split name) keeps its
        # own error; NotImplementedError means it was prepared as TFRecord, not array_record.
        if tfds.builder(dataset).is_prepared() and not isinstance(err, NotImplementedError):
            raise
        how = f"`tfds build {dataset} --file_format=array_record`"
        if dataset.startswith("imagenet"):
            how = (
                "download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (registration "
                "at https://image-net.org) into the tfds manual dir "
                "(~/tensorflow_datasets/downloads/manual/), then " + how
            )
        raise DatasetMissingError(
            f"tensorflow-datasets {dataset!r} split {split!r} is not prepared for random "
            f"access. To prepare it: {how}. Or pass data_dir=DIR holding "
            f"{dataset}-{split}.npz (for CIFAR-10: {DECODE_HINT}). Cause: {err!r}"
        ) from err


def source(dataset: str, split: str, data_dir: str | None = None):
    """A random-access dataset: `len(src)`, `src[i] -> {"image": uint8 [H,W,3], "label": int}`.

    Args:
      dataset: dataset name, e.g. "cifar10" or "imagenet2012".
      split: split name, e.g. "train", "test", "validation".
      data_dir: a folder holding `{dataset}-{split}.npz`; None reads tensorflow-datasets.

    Raises:
      DatasetMissingError (a FileNotFoundError and ValueError): the folder, file or
        prepared tfds dataset is missing; the message says how to make it.
      ValueError: the arrays have the wrong keys, dtype or shapes, or the name is unknown.
    """
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a non-empty string, got {dataset!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string, got {split!r}")
    if data_dir is not None:
        return _npz_source(dataset, split, os.fspath(data_dir))
    return _tfds_source(dataset, split)


def load_arrays(
    dataset: str, split: str, data_dir: str | None = None, indices=None
) -> tuple[np.ndarray, np.ndarray]:
    """Load a whole (small) split or the examples at `indices` into memory.

    Args:
      dataset, split, data_dir: as in `source`.
      indices: int sequence of example indices, or None for all.

    Returns:
      images uint8 [N, H, W, 3] and labels int32 [N].

    Raises:
      ValueError: an index out of range, or images of different sizes (e.g. raw
        ImageNet: resize them per example from `source` instead).
    """
    src = source(dataset, split, data_dir)
    n = len(src)
    if indices is None:
        idx = np.arange(n)
    else:
        idx = np.asarray(indices)
        if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(f"indices must be a 1-D sequence of ints, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"indices must lie in [0, {n}), got min {idx.min()} max {idx.max()}")
    if isinstance(src, ArraySource):
        return src.images[idx], src.labels[idx]
    examples = [src[int(i)] for i in idx]
    shapes = {np.shape(e["image"]) for e in examples}
    if len(shapes) > 1:
        raise ValueError(
            f"{dataset}/{split}: images have different shapes {sorted(shapes)[:4]}; "
            "use source() and resize them"
        )
    if not examples:
        return np.zeros((0, 0, 0, 3), np.uint8), np.zeros((0,), np.int32)
    images = np.stack([np.asarray(e["image"], np.uint8) for e in examples])
    labels = np.asarray([int(e["label"]) for e in examples], np.int32)
    return images, labels
