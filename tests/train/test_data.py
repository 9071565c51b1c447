"""Data pipelines: npz files the test writes, tfds.testing.mock_data, augmentation."""

import jax
import numpy as np
import pytest

from train import data


def test_crop_flip_is_a_shifted_maybe_flipped_crop():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    out = np.asarray(data.augment_crop_flip(jax.random.key(0), images, pad=2))
    assert out.shape == images.shape and out.dtype == np.float32
    padded = np.pad(images.astype(np.float32), ((0, 0), (2, 2), (2, 2), (0, 0)))
    for img, res in zip(padded, out, strict=True):
        crops = [
            c
            for r in range(5)
            for col in range(5)
            for c in (img[r : r + 8, col : col + 8], img[r : r + 8, col : col + 8][:, ::-1])
        ]
        assert any(np.array_equal(res, c) for c in crops)
    # Different keys move different images: the augmentation is not the identity.
    assert not np.array_equal(out, images.astype(np.float32))


def test_epoch_order_is_reproducible():
    a, b = data.epoch_order(100, seed=1, epoch=3), data.epoch_order(100, seed=1, epoch=3)
    np.testing.assert_array_equal(a, b)
    assert sorted(a) == list(range(100))
    assert not np.array_equal(a, data.epoch_order(100, seed=1, epoch=4))


def test_npz_split_and_eval_batches(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 3], np.uint8)
    np.savez(tmp_path / "toy-test.npz", image=images, label=labels)
    split = data.load_split("toy", "test", str(tmp_path))
    assert len(split) == 7 and split.labels.dtype == np.int32
    assert data.num_classes("toy", split) == 4
    assert data.num_classes("cifar10", split) == 10

    batches = list(data.eval_batches(split, batch_size=3, size=8))
    assert [b[2].tolist() for b in batches][-1] == [True, False, False]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches])[:7], images)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches])[:7], labels)


def test_prefetch_keeps_order():
    assert list(data.prefetch(lambda i: i * i, ((i,) for i in range(20)), ahead=3)) == [
        i * i for i in range(20)
    ]


def test_tfds_mock_cifar10_in_memory():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        split = data.load_split("cifar10", "train", None)
    assert split.images.shape == (6, 32, 32, 3) and len(split) == 6
    images, labels = data.gather(split, np.array([4, 1]), 32, train=True)
    np.testing.assert_array_equal(images, split.images[[4, 1]])
    np.testing.assert_array_equal(labels, split.labels[[4, 1]])


def test_tfds_mock_imagenet_streamed_and_cropped():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        split = data.load_split("imagenet2012", "validation", None)
        assert split.source is not None and len(split) == 4
        for train in (True, False):
            images, labels = data.gather(split, np.arange(4), 24, train=train, seed=0)
            assert images.shape == (4, 24, 24, 3) and images.dtype == np.uint8
            assert labels.shape == (4,) and ((labels >= 0) & (labels < 1000)).all()


def test_crops_of_odd_images():
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (30, 90, 3), dtype=np.uint8)
    assert data.random_resized_crop(rng, wide, 16).shape == (16, 16, 3)
    assert data.center_crop(wide, 16).shape == (16, 16, 3)
    tiny = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)  # smaller than the output
    assert data.center_crop(tiny, 16).shape == (16, 16, 3)
    # A constant image stays constant through crop and resize.
    flat = np.full((40, 50, 3), 77, np.uint8)
    assert (data.random_resized_crop(rng, flat, 8) == 77).all()
