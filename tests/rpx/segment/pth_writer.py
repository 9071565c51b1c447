"""Write a dict of numpy arrays as a torch.save file (both formats), for the reader's tests.

Byte for byte what torch.save writes for a state dict of contiguous tensors (checked once
against real torch, docs/segmentation/README.md); tests tamper with these bytes to build
hostile and broken files.
"""

import pickle
import struct
import zipfile

import numpy as np

from rpx.segment.pth import _LEGACY_MAGIC, _LEGACY_PROTOCOL, _STORAGE_DTYPES


def _op_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE


def _op_int(i: int) -> bytes:
    if 0 <= i < 256:
        return b"K" + bytes([i])  # BININT1
    if -(2**31) <= i < 2**31:
        return b"J" + struct.pack("<i", i)  # BININT
    b = i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(b)]) + b  # LONG1


def _op_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t" if items else b")"  # MARK ... TUPLE / EMPTY_TUPLE


def _op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


_ORDERED_DICT = _op_global("collections", "OrderedDict") + b")R"  # OrderedDict()


def _state_pickle(arrays: list[tuple[str, np.ndarray]], legacy: bool) -> bytes:
    """Protocol-2 pickle of an OrderedDict of tensors, as torch.save writes it."""
    names = {np.dtype(v): k for k, v in _STORAGE_DTYPES.items()}
    out = [b"\x80\x02", _ORDERED_DICT, b"("]
    for key, (name, array) in enumerate(arrays):
        if array.dtype not in names:
            raise ValueError(f"state_dict[{name!r}] has unsupported dtype {array.dtype}")
        pid = [
            _op_str("storage"),
            _op_global("torch", names[array.dtype]),
            _op_str(str(key)),
            _op_str("cpu"),
            _op_int(array.size),
        ]
        if legacy:
            pid.append(b"N")  # no view metadata
        strides = [s // array.itemsize for s in array.strides] if array.size else [1] * array.ndim
        args = [
            _op_tuple(pid) + b"Q",  # BINPERSID
            _op_int(0),
            _op_tuple([_op_int(d) for d in array.shape]),
            _op_tuple([_op_int(s) for s in strides]),
            b"\x89",  # requires_grad False
            _ORDERED_DICT,  # backward hooks
        ]
        out += [_op_str(name), _op_global("torch._utils", "_rebuild_tensor_v2")]
        out += [_op_tuple(args), b"R"]
    out.append(b"u.")  # SETITEMS, STOP
    return b"".join(out)


def save_state_dict(path: str, state_dict: dict, legacy: bool = False) -> None:
    """Write a dict name -> numpy array as a file `torch.load` reads (no torch needed).

    legacy=False writes the zip format of torch >= 1.6, legacy=True the older stream.
    """
    arrays = [(str(k), np.array(v, order="C")) for k, v in state_dict.items()]
    pickled = _state_pickle(arrays, legacy)
    if legacy:
        with open(path, "wb") as f:
            pickle.dump(_LEGACY_MAGIC, f, protocol=2)
            pickle.dump(_LEGACY_PROTOCOL, f, protocol=2)
            sys_info = dict(
                protocol_version=_LEGACY_PROTOCOL,
                little_endian=True,
                type_sizes=dict(short=2, int=4, long=4),
            )
            pickle.dump(sys_info, f, protocol=2)
            f.write(pickled)
            pickle.dump([str(k) for k in range(len(arrays))], f, protocol=2)
            for _, array in arrays:
                f.write(struct.pack("<q", array.size))
                f.write(array.tobytes())
        return
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/byteorder", "little")
        for key, (_, array) in enumerate(arrays):
            archive.writestr(f"archive/data/{key}", array.tobytes())
        archive.writestr("archive/version", "3\n")
