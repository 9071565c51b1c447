"""train.datasets on a small npz the test writes and on tfds.testing.mock_data."""

import numpy as np
import pytest

from train import datasets


def _write(tmp_path, name="cifar10-test.npz", n=6, **override):
    rng = np.random.default_rng(0)
    arrays = {
        "image": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
        "label": (np.arange(n) % 3).astype(np.uint8),
    }
    arrays.update(override)
    np.savez(tmp_path / name, **arrays)
    return arrays


def test_npz_source_and_load_arrays(tmp_path):
    arrays = _write(tmp_path)
    src = datasets.source("cifar10", "test", data_dir=str(tmp_path))
    assert len(src) == 6
    ex = src[4]
    np.testing.assert_array_equal(ex["image"], arrays["image"][4])
    assert ex["label"] == 1 and isinstance(ex["label"], int)
    with pytest.raises(IndexError):
        src[6]

    images, labels = datasets.load_arrays("cifar10", "test", data_dir=tmp_path)
    assert images.dtype == np.uint8 and images.shape == (6, 8, 8, 3)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, arrays["label"])

    images, labels = datasets.load_arrays("cifar10", "test", str(tmp_path), indices=[5, 0])
    np.testing.assert_array_equal(images, arrays["image"][[5, 0]])
    np.testing.assert_array_equal(labels, [2, 0])


def test_missing_dir_and_file_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="decode.py"):
        datasets.source("cifar10", "train", data_dir=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="data_dir"):
        datasets.source("cifar10", "train", data_dir=str(tmp_path / "nope"))
    _write(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cifar10-train\.npz.*decode\.py"):
        datasets.source("cifar10", "train", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    "override, message",
    [
        ({"image": np.zeros((6, 8, 8), np.uint8)}, r"\[N, H, W, 3\]"),
        ({"image": np.zeros((6, 8, 8, 3), np.float32)}, "uint8"),
        ({"label": np.zeros((5,), np.int64)}, "6 examples but `label` has 5"),
        ({"label": np.zeros((6, 1), np.int64)}, r"shape \[N\]"),
        ({"label": np.full((6,), 0.5)}, "integers"),
    ],
)
def test_bad_arrays_name_the_file_and_problem(tmp_path, override, message):
    _write(tmp_path, **override)
    with pytest.raises(ValueError, match=message) as info:
        datasets.source("cifar10", "test", data_dir=str(tmp_path))
    assert "cifar10-test.npz" in str(info.value)


def test_missing_key(tmp_path):
    np.savez(tmp_path / "cifar10-test.npz", image=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="missing key.*label"):
        datasets.source("cifar10", "test", data_dir=str(tmp_path))


def test_bad_indices(tmp_path):
    _write(tmp_path)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 6\)"):
        datasets.load_arrays("cifar10", "test", str(tmp_path), indices=[0, 6])
    with pytest.raises(ValueError, match="indices"):
        datasets.load_arrays("cifar10", "test", str(tmp_path), indices=[0.5])
    with pytest.raises(ValueError, match="split"):
        datasets.source("cifar10", "", str(tmp_path))


def test_tfds_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        src = datasets.source("cifar10", "train")
        assert len(src) == 5
        assert src[0]["image"].shape == (32, 32, 3)
        images, labels = datasets.load_arrays("cifar10", "train", indices=[1, 3])
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (2,) and labels.dtype == np.int32
    assert ((labels >= 0) & (labels < 10)).all()


def test_tfds_not_prepared_says_what_to_do(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="tfds build imagenet2012") as info:
        datasets.source("imagenet2012", "validation")
    assert "manual" in str(info.value)
    with pytest.raises(ValueError, match="not a tensorflow-datasets name"):
        datasets.source("no_such_dataset_xyz", "train")
    del tfds


def _npy(shape, dtype, payload: bytes) -> bytes:
    """An .npy member whose header declares `shape` and `dtype` over `payload`."""
    import io

    out = io.BytesIO()
    header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + payload


@pytest.mark.parametrize(
    "image, message",
    [
        # 3 TB declared over 100 bytes: numpy would allocate the declared shape first.
        (_npy((10**9, 32, 32, 3), "|u1", b"\0" * 100), r"declares uint8 \(1000000000, 32, 32, 3\)"),
        (_npy((6, 8, 8, 3), "|u1", b"\0" * 10), "holds 10 bytes"),  # cut short
        (_npy((2,), "|O", b"\0" * 16), "Python objects"),
    ],
)
def test_an_array_header_that_disagrees_with_its_bytes_is_refused(tmp_path, image, message):
    import resource
    import zipfile

    path = tmp_path / "cifar10-test.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("image.npy", image)
        z.writestr("label.npy", _npy((6,), "<i8", b"\0" * 48))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused = f"cifar10-test.npz is not a readable .npz file .*{message}"
    with pytest.raises(ValueError, match=refused):
        datasets.source("cifar10", "test", data_dir=str(tmp_path))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


def test_an_npz_naming_an_array_twice_is_refused(tmp_path):
    import warnings
    import zipfile

    _write(tmp_path)
    with zipfile.ZipFile(tmp_path / "cifar10-test.npz", "a") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate it writes
        z.writestr("label.npy", _npy((6,), "<i8", b"\1" * 48))
    with pytest.raises(ValueError, match="names an array twice"):
        datasets.source("cifar10", "test", data_dir=str(tmp_path))


def test_an_empty_data_file_is_refused(tmp_path):
    _write(tmp_path, image=np.zeros((0, 8, 8, 3), np.uint8), label=np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match="cifar10-test.npz: holds no images"):
        datasets.source("cifar10", "test", data_dir=str(tmp_path))
