"""Training data: splits in memory (CIFAR) or streamed from tfds (ImageNet), batch order,
and augmentation.

CIFAR-size datasets are held in host memory as uint8 arrays; a batch is gathered on the
host and augmented on the device inside the jitted train step (`augment_crop_flip`),
so the host does almost no work per step. ImageNet images have different sizes: each
is cropped and resized to the model's input on the host (`random_resized_crop`,
`center_crop`) in a thread pool that runs a few batches ahead.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Iterator

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from train import datasets

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet2012": 1000, "mnist": 10}
EVAL_SPLIT = {"imagenet2012": "validation"}


@dataclasses.dataclass
class Split:
    """One split: in-memory arrays (`images` uint8 [N,H,W,3], `labels` int32 [N]) or, for
    datasets of variable-size images, a random-access `source` cropped on the host."""

    name: str
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    source: object | None = None

    def __len__(self) -> int:
        return len(self.labels) if self.source is None else len(self.source)


def is_streamed(dataset: str) -> bool:
    """ImageNet-like datasets are streamed from a source; others are loaded into memory."""
    return dataset.startswith("imagenet")


def load_split(dataset: str, split: str, data_dir: str | None) -> Split:
    """Load `split` of `dataset` (see train.datasets.source for where it is read from)."""
    name = f"{dataset}/{split}"
    if not is_streamed(dataset):
        images, labels = datasets.load_arrays(dataset, split, data_dir)
        return Split(name, images=images, labels=labels)
    src = datasets.source(dataset, split, data_dir)
    if isinstance(src, datasets.ArraySource):
        return Split(name, images=src.images, labels=src.labels)
    return Split(name, source=src)


def num_classes(dataset: str, train: Split) -> int:
    """K for a known dataset, else 1 + the largest training label."""
    if dataset in NUM_CLASSES:
        return NUM_CLASSES[dataset]
    if train.labels is None:
        raise ValueError(f"dataset {dataset!r}: unknown number of classes, pass --num-classes")
    return int(train.labels.max()) + 1


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training permutation of epoch `epoch`: a pure function of (seed, epoch), so a
    resumed run sees exactly the batches the interrupted one would have seen."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def augment_crop_flip(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
    """Random crop after `pad`-pixel zero padding and random horizontal flip.

    Args:
      key: PRNG key.
      images: [B, H, W, C] uint8 or float.

    Returns:
      float32 [B, H, W, C], same value range.
    """
    b, h, w, c = images.shape
    x = jnp.pad(images.astype(jnp.float32), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k_row, k_col, k_flip = jax.random.split(key, 3)
    rows = jax.random.randint(k_row, (b,), 0, 2 * pad + 1)
    cols = jax.random.randint(k_col, (b,), 0, 2 * pad + 1)

    def crop(img, r, col):
        return jax.lax.dynamic_slice(img, (r, col, 0), (h, w, c))

    x = jax.vmap(crop)(x, rows, cols)
    flip = jax.random.bernoulli(k_flip, 0.5, (b,))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)


def random_resized_crop(
    rng: np.random.Generator, image: np.ndarray, size: int, scale=(0.08, 1.0)
) -> np.ndarray:
    """Inception-style crop: random area fraction in `scale`, aspect ratio in [3/4, 4/3],
    resized to [size, size, 3], flipped with probability 1/2. uint8 in, uint8 out."""
    h, w = image.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            break
    else:  # fall back to the central square, as torchvision does
        ch = cw = min(h, w)
        top, left = (h - ch) // 2, (w - cw) // 2
    crop = image[top : top + ch, left : left + cw]
    out = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
    return out[:, ::-1] if rng.random() < 0.5 else out


def center_crop(image: np.ndarray, size: int, resize: int | None = None) -> np.ndarray:
    """Resize the shorter side to `resize` (default size * 8/7, i.e. 256 for 224), then
    take the central [size, size, 3]. uint8 in, uint8 out."""
    resize = resize or int(round(size * 8 / 7))
    h, w = image.shape[:2]
    s = resize / min(h, w)
    nh, nw = max(size, int(round(h * s))), max(size, int(round(w * s)))
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    top, left = (nh - size) // 2, (nw - size) // 2
    return image[top : top + size, left : left + size]


def gather(
    split: Split, indices: np.ndarray, size: int, train: bool, seed=0
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [len(indices), size, size, 3] and labels int32 [len(indices)]:
    in-memory images as they are (augmented later on the device), streamed ones cropped
    on the host with randomness from `seed` (an int or a sequence of ints)."""
    if split.source is None:
        return split.images[indices], split.labels[indices]
    rng = np.random.default_rng(seed)
    images = np.empty((len(indices), size, size, 3), np.uint8)
    labels = np.empty((len(indices),), np.int32)
    for j, i in enumerate(indices):
        example = split.source[int(i)]
        img = np.asarray(example["image"])
        if img.ndim == 2 or img.shape[-1] == 1:  # a few ImageNet JPEGs are greyscale
            img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=-1)
        images[j] = random_resized_crop(rng, img, size) if train else center_crop(img, size)
        labels[j] = int(example["label"])
    return images, labels


def prefetch(fn, args_iter, ahead: int = 4, workers: int = 4) -> Iterator:
    """Yield fn(*args) for each args in `args_iter`, computing up to `ahead` in threads
    (cv2 releases the GIL, so host preprocessing overlaps with the device step)."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = []
        for args in args_iter:
            pending.append(pool.submit(fn, *args))
            if len(pending) > ahead:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def eval_batches(split: Split, batch_size: int, size: int) -> Iterator[tuple]:
    """Yield (images uint8 [batch_size,size,size,3], labels int32 [batch_size], mask bool
    [batch_size]) covering the split once; the last batch is padded and masked, so one
    compiled eval step serves every batch."""

    def make(start):
        idx = np.arange(start, min(start + batch_size, len(split)))
        images, labels = gather(split, idx, size, train=False)
        pad = batch_size - len(idx)
        mask = np.arange(batch_size) < len(idx)
        if pad:
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), np.uint8)])
            labels = np.concatenate([labels, np.zeros((pad,), np.int32)])
        return images, labels, mask

    yield from prefetch(make, ((s,) for s in range(0, len(split), batch_size)))
