"""experiments.grid: which images a grid attacks (`pick_samples`, `--sample-order`)."""

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.cli import grid_from, resolve
from experiments.grid import Grid
from experiments.grid.samples import pick_samples
from experiments.images import ArrayImages
from tests.experiments.tiny import mock_cifar, tiny_predict


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    x, y = mock_cifar(tmp_path_factory.mktemp("data") / "d.npz", n=40, wrong=4)
    return ArrayImages(x, np.asarray(y), "mock")


def test_first_order_takes_the_first_correct_images_in_dataset_order(images):
    predict = tiny_predict()
    idx, probs = pick_samples(predict, images, 10, seed=3, batch=7, order="first")
    correct = np.flatnonzero(np.asarray(predict(images.images.astype(np.float32))).argmax(1)
                             == images.labels)  # fmt: skip
    np.testing.assert_array_equal(idx, correct[:10])
    assert idx.min() >= 4  # the first four are labelled wrong
    np.testing.assert_array_equal(probs.argmax(1), images.labels[idx])
    # a seed does not change it; a longer list extends it
    np.testing.assert_array_equal(pick_samples(predict, images, 10, seed=9, order="first")[0], idx)
    np.testing.assert_array_equal(pick_samples(predict, images, 15, 0, order="first")[0][:10], idx)


def test_first_order_walks_batches_in_dataset_order():
    images = np.zeros((7, 32, 32, 3), np.uint8)
    images[::2] = 255  # bright images are class 1 for this model

    def predict(x):
        bright = (x.mean((1, 2, 3)) > 100).astype(jnp.float32)
        return jnp.stack([1 - bright, bright], -1) * 0.98 + 0.01

    labels = np.array([1, 1, 1, 0, 1, 0, 0])
    picked = pick_samples(predict, ArrayImages(images, labels, "x"), 3, 0, batch=2, order="first")
    np.testing.assert_array_equal(picked[0], [0, 2, 3])


def test_random_order_is_a_seeded_sample_of_correct_images(images):
    predict = tiny_predict()
    a = pick_samples(predict, images, 10, seed=1)[0]
    assert not np.array_equal(a, np.sort(a))  # not the dataset order
    np.testing.assert_array_equal(pick_samples(predict, images, 10, seed=1)[0], a)
    assert (images.labels[a] >= 0).all() and (a >= 4).all()


def test_bad_sample_order_is_refused_naming_the_flag(images):
    with pytest.raises(ValueError, match="--sample-order"):
        pick_samples(tiny_predict(), images, 5, 0, order="last")
    with pytest.raises(ValueError, match="--sample-order"):
        Grid(models={"m": "w"}, regions=("original",), pixels=(1,), attacks=("untargeted",),
             sample_order="sorted")  # fmt: skip


def test_sample_order_flag_reaches_the_grid_and_its_settings():
    import argparse

    from experiments import cifar, cli

    p = argparse.ArgumentParser()
    cli.add_grid_flags(p, cifar.DEFAULTS)
    grid = grid_from(resolve(p.parse_args(["--sample-order=first"]), {}, cifar.DEFAULTS), "c")
    assert grid.sample_order == "first" and grid.settings()["sample_order"] == "first"
    default = grid_from(resolve(p.parse_args([]), {}, cifar.DEFAULTS), "c")
    assert default.settings()["sample_order"] == "random"
