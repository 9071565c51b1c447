"""rpx.segment.pth: round trips, and hostile or broken files refused with a ValueError.

Hostile files carry pickles that call os.system, eval or subprocess.Popen through REDUCE,
in every pickle slot of both formats and protocols 2..5: nothing may run. Broken files
have tensors reaching past their storage, storages shorter or longer than declared, or
are truncated or random: each must be a ValueError naming the path, nothing rawer.
"""

import pickle
import pickletools
import re
import shlex
import struct
import subprocess
import time
import zipfile

import numpy as np
import pytest

from rpx.segment.pth import load_state_dict
from tests.rpx.segment.pth_writer import save_state_dict

LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)  # as torch.save writes it
LEGACY_SLOTS = ["magic", "protocol", "sys_info", "pickle", "keys"]


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


def _legacy_parts(path) -> list[bytes]:
    """A legacy file split into its five pickles and the storage records after them."""
    data = path.read_bytes()
    parts, start = [], 0
    for _ in LEGACY_SLOTS:
        # genops only parses opcodes (it runs nothing) and stops at each pickle's STOP.
        stop = [pos for _, _, pos in pickletools.genops(data[start:])][-1]
        parts.append(data[start : start + stop + 1])
        start += stop + 1
    return parts + [data[start:]]


def _rewrite_zip(path, changes: dict, deflate=()) -> None:
    """Rewrite a zip with some entries replaced (bytes) or removed (None), `deflate` compressed."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries.update(changes)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            if data is not None:
                how = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
                archive.writestr(name, data, how)


def _tamper(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


def _refused(path):
    """pytest.raises for the ValueError that must name `path`."""
    return pytest.raises(ValueError, match=re.escape(str(path)))


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


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_state_dict(str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    with open(junk, "wb") as f:
        pickle.dump("not a checkpoint", f)
    with _refused(junk):
        load_state_dict(str(junk))
    with pytest.raises(ValueError, match="dtype"):
        save_state_dict(str(tmp_path / "c.pth"), {"c": np.zeros(2, np.complex64)})


# --- hostile pickles ---------------------------------------------------------------------


class _Call:
    """Pickles as the call fn(*args), as a hostile checkpoint would smuggle it in."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payload(kind: str, marker) -> _Call:
    import os

    if kind == "os.system":
        return _Call(os.system, (f"touch {shlex.quote(str(marker))}",))
    if kind == "eval":
        return _Call(eval, (f"open({str(marker)!r}, 'w').close()",))
    return _Call(subprocess.Popen, (["touch", str(marker)],))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["os.system", "eval", "subprocess.Popen"])
@pytest.mark.parametrize("where", [*(f"legacy {s}" for s in LEGACY_SLOTS), "plain", "zip"])
def test_hostile_pickle_runs_nothing(tmp_path, where, kind, protocol):
    marker = tmp_path / "MARKER"
    hostile = pickle.dumps(_payload(kind, marker), protocol=protocol)
    path = tmp_path / "hostile.pth"
    if where == "plain":
        path.write_bytes(hostile)
    elif where == "zip":
        save_state_dict(str(path), _state())
        _rewrite_zip(path, {"archive/data.pkl": hostile})
    else:
        save_state_dict(str(path), _state(), legacy=True)
        parts = _legacy_parts(path)
        parts[LEGACY_SLOTS.index(where.split()[1])] = hostile
        path.write_bytes(b"".join(parts))
    try:
        with _refused(path):
            load_state_dict(str(path))
    finally:
        if kind == "subprocess.Popen":
            time.sleep(0.2)  # a spawned `touch` may still be starting
        assert not marker.exists(), f"the {kind} payload ran"


# --- tensors and storages that do not fit ------------------------------------------------

# save_state_dict writes t = arange(6).reshape(2, 3) as: storage of 6 floats, offset
# `QK\x00` (after BINPERSID), size `(K\x02K\x03t`, stride `(K\x03K\x01t`.
TAMPERS = {
    "size past the end": (b"(K\x02K\x03t", b"(K\x02K\x04t"),
    "offset past the end": (b"QK\x00", b"QK\x01"),
    "stride past the end": (b"(K\x03K\x01t", b"(K\x04K\x01t"),
    "huge size": (b"(K\x02K\x03t", b"(K\x02J\x00\x00\x00\x10t"),  # 2 x 2**28 floats
    "negative size": (b"(K\x02K\x03t", b"(J\xfe\xff\xff\xffK\x03t"),
    "negative stride": (b"(K\x03K\x01t", b"(K\x03J\xff\xff\xff\xfft"),
    "negative offset": (b"QK\x00", b"QJ\xff\xff\xff\xff"),
    "rank mismatch": (b"(K\x03K\x01t", b"(K\x03t"),
    # Legacy only (its storage ids end in view metadata, None here): views of the root.
    "view past its root": (b"K\x06NtQ", b"K\x06(X\x01\x00\x00\x00vK\x02K\x06ttQ"),
    "tensor past its view": (b"K\x06NtQ", b"K\x06(X\x01\x00\x00\x00vK\x00K\x03ttQ"),
}
T = np.arange(6, dtype=np.float32).reshape(2, 3)


def _tampered(tmp_path, legacy: bool, old: bytes, new: bytes):
    """A file holding T whose pickle has `old` replaced by `new`."""
    path = tmp_path / "t.pth"
    save_state_dict(str(path), {"t": T}, legacy=legacy)
    if legacy:
        path.write_bytes(_tamper(path.read_bytes(), old, new))
    else:
        with zipfile.ZipFile(path) as archive:
            pickled = archive.read("archive/data.pkl")
        _rewrite_zip(path, {"archive/data.pkl": _tamper(pickled, old, new)})
    return path


@pytest.mark.parametrize(
    "legacy, tamper",
    [(legacy, t) for legacy in (False, True) for t in TAMPERS if legacy or "view" not in t],
)
def test_tensor_outside_its_storage_is_refused(tmp_path, legacy, tamper):
    path = _tampered(tmp_path, legacy, *TAMPERS[tamper])
    with _refused(path):
        load_state_dict(str(path))


def test_legacy_view_inside_its_root_still_loads(tmp_path):
    view = b"K\x06(X\x01\x00\x00\x00vK\x00K\x06ttQ"  # the whole root, as a view
    path = _tampered(tmp_path, True, b"K\x06NtQ", view)
    np.testing.assert_array_equal(load_state_dict(str(path))["t"], T)


@pytest.mark.parametrize(
    "count, declared",
    [(7, 6), (5, 6), (2**62, 6), (2**40, 2**40)],  # records hold 6 floats (24 bytes)
)
def test_legacy_storage_count_must_match_its_bytes(tmp_path, count, declared):
    path = tmp_path / "t.pth"
    save_state_dict(str(path), {"t": T}, legacy=True)
    parts = _legacy_parts(path)
    if declared != 6:
        numel = b"\x8a" + bytes([6]) + declared.to_bytes(6, "little")  # LONG1
        parts[3] = _tamper(parts[3], b"K\x06NtQ", numel + b"NtQ")
    parts[5] = struct.pack("<q", count) + parts[5][8:]
    path.write_bytes(b"".join(parts))
    with _refused(path):
        load_state_dict(str(path))


@pytest.mark.parametrize("keys", [[], ["0", "0"], ["0", "1"]])
def test_legacy_storage_keys_must_match_the_pickle(tmp_path, keys):
    path = tmp_path / "t.pth"
    save_state_dict(str(path), {"t": T}, legacy=True)
    parts = _legacy_parts(path)
    parts[4] = pickle.dumps(keys, protocol=2)
    path.write_bytes(b"".join(parts))
    with _refused(path):
        load_state_dict(str(path))


@pytest.mark.parametrize(
    "record", [T.tobytes()[:20], T.tobytes() + b"\0" * 4, None], ids=["short", "long", "missing"]
)
def test_zip_storage_record_must_hold_numel_items(tmp_path, record):
    path = tmp_path / "t.pth"
    save_state_dict(str(path), {"t": T})
    _rewrite_zip(path, {"archive/data/0": record})
    with _refused(path):
        load_state_dict(str(path))


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "t.pth"
    save_state_dict(str(path), {"t": T})
    _rewrite_zip(path, {"archive/data.pkl": None})
    with _refused(path):
        load_state_dict(str(path))


# --- truncated and garbage files ---------------------------------------------------------


def _escapes(path, contents) -> list:
    """Each of `contents` written to `path` and loaded: those not refused as they should be."""
    escaped = []
    for i, data in enumerate(contents):
        path.write_bytes(data)
        try:
            load_state_dict(str(path))
            escaped.append((i, "loaded"))
        except ValueError as e:
            if str(path) not in str(e):
                escaped.append((i, repr(e)))
        except Exception as e:  # noqa: BLE001 - any other exception is the failure here
            escaped.append((i, repr(e)))
    return escaped


@pytest.mark.parametrize("legacy", [False, True])
def test_every_truncation_is_refused(tmp_path, legacy):
    path = tmp_path / "s.pth"
    save_state_dict(str(path), _state(), legacy=legacy)
    data = path.read_bytes()
    escaped = _escapes(tmp_path / "cut.pth", [data[:n] for n in range(len(data))])
    assert not escaped, f"{len(escaped)} of {len(data)} cuts escaped, e.g. {escaped[:3]}"


def test_garbage_is_refused(tmp_path):
    save_state_dict(str(tmp_path / "s.pth"), _state(), legacy=True)
    header = b"".join(_legacy_parts(tmp_path / "s.pth")[:3])  # magic, protocol, sys info
    rng = np.random.default_rng(0)
    contents = [b""]
    for prefix in [b"", b"PK\x03\x04", LEGACY_MAGIC, header]:
        for _ in range(40):
            contents.append(prefix + rng.bytes(int(rng.integers(0, 3000))))
    escaped = _escapes(tmp_path / "garbage.pth", contents)
    assert not escaped, f"{len(escaped)} of {len(contents)} escaped, e.g. {escaped[:3]}"


# --- memory: nothing may hold much more than the file's own size --------------------------


@pytest.mark.parametrize("member", ["archive/data.pkl", "archive/data/0", "archive/byteorder"])
def test_zip_compressed_record_is_refused(tmp_path, member):
    path = tmp_path / "t.pth"
    save_state_dict(str(path), {"t": T})
    _rewrite_zip(path, {}, deflate=[member])
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*compressed"):
        load_state_dict(str(path))


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    # 16 MiB of zeros deflate to about 16 KB: a storage that would inflate 1000-fold.
    big = np.zeros(2**22, np.float32)
    path = tmp_path / "bomb.pth"
    save_state_dict(str(path), {"t": big})
    _rewrite_zip(path, {}, deflate=["archive/data/0"])
    assert path.stat().st_size < big.nbytes // 100
    with pytest.raises(ValueError, match="compressed"):
        load_state_dict(str(path))


def test_zip_record_named_twice_is_refused(tmp_path):
    path = tmp_path / "t.pth"
    save_state_dict(str(path), {"t": T})
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning, match="Duplicate"):
        archive.writestr("archive/data/0", (T + 1).tobytes())
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*twice"):
        load_state_dict(str(path))


@pytest.mark.parametrize("legacy", [False, True])
def test_views_repeating_elements_beyond_the_file_are_refused(tmp_path, legacy):
    # Stride 0 on a 6-element storage: 2**10 x 2**10 floats (4 MiB) from a ~1 KB file.
    tamper = (b"(K\x02K\x03t(K\x03K\x01t", b"(M\x00\x04M\x00\x04t(K\x00K\x00t")
    path = _tampered(tmp_path, legacy, *tamper)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*twice the file"):
        load_state_dict(str(path))


def test_a_view_repeating_elements_within_the_file_still_loads(tmp_path):
    # (2, 3) with row stride 0: both rows are the storage's first three elements.
    path = _tampered(tmp_path, False, b"(K\x03K\x01t", b"(K\x00K\x01t")
    np.testing.assert_array_equal(load_state_dict(str(path))["t"], [T[0], T[0]])
