import pickle
import zipfile

import numpy as np
import pytest

from rpx.segment.pth import load_state_dict, save_state_dict


def _state():
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "bn.num_batches_tracked": np.array(7, np.int64),
        "double": np.arange(5, dtype=np.float64),
        "half": rng.normal(size=6).astype(np.float16),
        "empty": np.zeros((0, 3), np.float32),
        "transposed": rng.normal(size=(3, 5)).astype(np.float32).T,  # not C-contiguous
        "flags": np.array([True, False]),
    }


@pytest.mark.parametrize("legacy", [False, True])
def test_round_trip(tmp_path, legacy):
    state = _state()
    path = str(tmp_path / "s.pth")
    save_state_dict(path, state, legacy=legacy)
    assert zipfile.is_zipfile(path) != legacy
    loaded = load_state_dict(path)
    assert list(loaded) == list(state)
    for name, value in state.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)


def test_strips_dataparallel_prefix(tmp_path):
    path = str(tmp_path / "s.pth")
    save_state_dict(path, {"module.side1.bias": np.ones(1, np.float32)})
    assert list(load_state_dict(path)) == ["side1.bias"]


def test_refuses_foreign_globals(tmp_path):
    # A zip checkpoint whose pickle calls os.system must not run it.
    path = str(tmp_path / "evil.pth")
    payload = pickle.dumps({"x": _Evil()}, protocol=2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_state_dict(path)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_state_dict(str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    with open(junk, "wb") as f:
        pickle.dump("not a checkpoint", f)
    with pytest.raises(ValueError, match="path"):
        load_state_dict(str(junk))
    with pytest.raises(ValueError, match="dtype"):
        save_state_dict(str(tmp_path / "c.pth"), {"c": np.zeros(2, np.complex64)})
