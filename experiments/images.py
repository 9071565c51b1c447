"""The test images an experiment attacks, read through `train.datasets`, by dataset index.

Both kinds are called as `images(indices int [M]) -> (uint8 [M, H, W, 3], labels int
[M])` and have `total` (how many there are), `name` (where they come from) and `labels`
(all labels, or None where they are not known without reading every image):

- `ArrayImages`, in memory: CIFAR-10 from one .npz (`--data-file`) or a split
  (`cifar10_test`);
- `ResizedImages`, read one at a time and resized: ImageNet from an image folder or a
  split.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "train", "assets")  # the shipped classifiers and test sample
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclasses.dataclass(frozen=True)
class ArrayImages:
    """images uint8 [N, H, W, 3] and labels int [N] in memory; `name` says whence."""

    images: np.ndarray
    labels: np.ndarray
    name: str

    @property
    def total(self) -> int:
        return len(self.images)

    def __call__(self, indices):
        return self.images[indices], self.labels[indices]


def cifar10_test(data_file: str | None = None, data_dir: str | None = None) -> ArrayImages:
    """The CIFAR-10 test images of `data_file` (one .npz with `image` and `label`; named
    by its absolute path), else of the split in `data_dir` or tensorflow-datasets.
    ValueError (naming --data-file) for a file that is not such an npz."""
    from train import datasets

    if not data_file:
        images, labels = datasets.load_arrays("cifar10", "test", data_dir)
        return ArrayImages(images, labels, f"cifar10/test from {data_dir or 'tfds'}")
    flag = f"--data-file {data_file}"
    arrays = datasets.read_npz(data_file, ("image", "label"), name=flag)
    src = datasets.ArraySource(arrays["image"], arrays["label"], name=flag)
    return ArrayImages(src.images, src.labels, os.path.abspath(data_file))


class ResizedImages:
    """Images read one at a time, resized to [size, size, 3] (cv2 INTER_AREA): from
    `image_folder` (one sub-folder per class, sorted names = class indices) or else the
    `split` of imagenet2012 in `data_dir` or tensorflow-datasets."""

    def __init__(self, size: int, image_folder=None, split="validation", data_dir=None):
        self.size = size
        self.labels = None
        if image_folder:
            files, labels = folder_files(image_folder)
            self.labels = labels
            self.read = lambda i: (_read_rgb(files[i]), labels[i])
            self.total = len(files)
            self.name = f"folder {os.path.abspath(image_folder)}"
        else:
            from train import datasets

            src = datasets.source("imagenet2012", split, data_dir)

            def example(i):
                e = src[i]  # decodes the image: read it once
                return np.asarray(e["image"]), int(e["label"])

            self.read = example
            self.total = len(src)
            self.name = f"imagenet2012/{split} from {data_dir or 'tfds'}"

    def __call__(self, indices):
        examples = [self.read(int(i)) for i in indices]
        images = np.stack([self._resized(image) for image, _ in examples])
        return images, np.array([label for _, label in examples], np.int64)

    def _resized(self, image):
        if image.shape[:2] == (self.size, self.size):
            return image.astype(np.uint8)
        return cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)


def _read_rgb(path: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB of an image file; ValueError naming it when cv2 cannot read it
    or its header declares more pixels than Pillow's decompression-bomb limit."""
    from PIL import Image

    # A small compressed file can declare a huge image, which cv2 would decode in full
    # (its own limit is 2**30 pixels, 3 GiB); Pillow reads only the header here.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as header:
                pixels = header.size[0] * header.size[1]
    except Image.DecompressionBombError:  # Pillow's own refusal, past twice its limit
        pixels = math.inf
    except Exception:  # a format Pillow does not know: cv2 may still read it
        pixels = 0
    if pixels > Image.MAX_IMAGE_PIXELS:
        raise ValueError(
            f"--image-folder: {path} declares more than {Image.MAX_IMAGE_PIXELS:,} pixels: "
            "a decompression bomb, or a photo to resize first"
        )
    image = cv2.imread(path)
    if image is None:
        raise ValueError(f"--image-folder: cannot read {path} as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def folder_files(root: str) -> tuple[list[str], np.ndarray]:
    """Image files under root/<class>/ and their labels (sorted class-folder order)."""
    if not os.path.isdir(root):
        raise ValueError(f"--image-folder {root} is not a folder")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    files, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, name))):
            if f.lower().endswith(IMAGE_SUFFIXES):
                files.append(os.path.join(root, name, f))
                labels.append(label)
    if not files:
        raise ValueError(f"--image-folder {root} holds no images in class sub-folders")
    return files, np.asarray(labels, np.int64)
