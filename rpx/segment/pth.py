"""Read (and write) PyTorch `.pth` state dicts without torch, and load U^2-Net weights.

A `torch.save` file is either a zip archive (torch >= 1.6: `<name>/data.pkl`, raw storages
in `<name>/data/<key>`) or the legacy stream (magic number, protocol, sys info, the
pickle, the storage keys, then each storage as an int64 element count and its bytes).
Either way the pickle only needs a handful of globals to rebuild a state dict; the
unpickler here resolves exactly those (tensor rebuild functions, storage dtypes,
OrderedDict) and refuses every other global, so a checkpoint cannot run code.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from rpx.segment.u2net import U2NET, U2NETP, U2Net

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _Storage:
    """A storage named in the pickle; its bytes are attached once read."""

    def __init__(self, dtype, numel: int):
        self.dtype, self.numel = np.dtype(dtype), numel
        self.data: np.ndarray | None = None


class _Tensor:
    """A tensor view of a storage, materialised after all storages are read."""

    def __init__(self, ref, offset, size, stride):
        self.ref, self.offset, self.size, self.stride = ref, offset, size, stride

    def materialise(self) -> np.ndarray:
        storage, view = self.ref
        data = storage.data
        if view is not None:  # legacy storage view: a slice of the root storage
            data = data[view[0] : view[0] + view[1]]
        if not self.size:  # 0-d tensor (e.g. num_batches_tracked)
            return data[self.offset].copy()
        if 0 in self.size:
            return np.zeros(self.size, data.dtype)
        strides = [s * data.itemsize for s in self.stride]
        return np.lib.stride_tricks.as_strided(data[self.offset :], self.size, strides).copy()


def _rebuild_tensor(ref, storage_offset, size, stride, *unused):
    return _Tensor(ref, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
    return data


class _Unpickler(pickle.Unpickler):
    """Rebuilds tensors as numpy arrays; any other global is refused."""

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid):
        # ("storage", dtype, key, location, numel[, view_metadata (legacy only)])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        key = str(pid[2])
        if key not in self._storages:
            self._storages[key] = _Storage(pid[1], int(pid[4]))
        view = None
        if len(pid) > 5 and pid[5] is not None:  # (view_key, offset, view_size)
            view = (int(pid[5][1]), int(pid[5][2]))
        return (self._storages[key], view)


def _materialise(obj):
    if isinstance(obj, _Tensor):
        return obj.materialise()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _load_zip(path: str) -> dict:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"path: {path} has {len(pickles)} data.pkl records, expected 1")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and archive.read(byteorder).strip() != b"little":
            raise ValueError(f"path: {path} is big-endian, which is not supported")
        storages: dict = {}
        obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            storage.data = np.frombuffer(raw, storage.dtype, count=storage.numel)
    return _materialise(obj)


def _load_legacy(path: str) -> dict:
    with open(path, "rb") as f:
        if pickle.load(f) != _LEGACY_MAGIC:
            raise ValueError(f"path: {path} is neither a zip nor a legacy torch.save file")
        if pickle.load(f) != _LEGACY_PROTOCOL:
            raise ValueError(f"path: {path} has an unsupported legacy protocol version")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"path: {path} is big-endian, which is not supported")
        storages: dict = {}
        obj = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            storage = storages[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            raw = f.read(numel * storage.dtype.itemsize)
            storage.data = np.frombuffer(raw, storage.dtype, count=numel)
    return _materialise(obj)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict file (zip or legacy format) into numpy arrays, no torch.

    Returns an (ordered) dict name -> array with the tensor's shape and dtype. A leading
    "module." (from nn.DataParallel) is stripped. Raises ValueError for a file that is not
    a torch.save state dict, or pickle.UnpicklingError for one that names other globals.
    """
    if not os.path.isfile(path):
        raise ValueError(f"path: no file at {path}")
    obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"path: {path} holds a {type(obj).__name__}, not a state dict")
    return collections.OrderedDict(
        (k[len("module.") :] if k.startswith("module.") else k, np.asarray(v))
        for k, v in obj.items()
    )


# --- writing (tests, and exporting Flax weights back to PyTorch) ---------------------------


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


# --- U^2-Net weights -----------------------------------------------------------------------


def _flax_path(name: str, array: np.ndarray):
    """Torch state-dict name -> (Flax variable path, array in Flax layout), or None to skip."""
    *module, leaf = name.split(".")
    if leaf == "num_batches_tracked":
        return None
    if leaf == "weight" and array.ndim == 4:  # conv: [out, in, kh, kw] -> [kh, kw, in, out]
        return ("params", *module, "kernel"), array.transpose(2, 3, 1, 0)
    if leaf == "weight" and array.ndim == 1:  # batch norm gamma
        return ("params", *module, "scale"), array
    if leaf == "bias":
        return ("params", *module, "bias"), array
    if leaf == "running_mean":
        return ("batch_stats", *module, "mean"), array
    if leaf == "running_var":
        return ("batch_stats", *module, "var"), array
    return ("unknown", name), array


def _torch_name(path: tuple) -> str:
    """Flax variable path -> the official state-dict name it is loaded from."""
    leaf = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}
    return ".".join([*path[1:-1], leaf.get(path[-1], path[-1])])


def to_variables(state_dict: dict, model: U2Net) -> dict:
    """Map an official U^2-Net state dict onto `model`'s Flax variables.

    Every Flax parameter and batch statistic must be found with the right shape and every
    tensor of the state dict (except num_batches_tracked) must be used; otherwise
    ValueError naming the offending entries.

    Returns {"params": ..., "batch_stats": ...} of float32 jax arrays.
    """
    from flax import traverse_util

    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    expected = traverse_util.flatten_dict(jax.tree.map(lambda a: a.shape, shapes))
    flat, unknown, wrong, seen = {}, [], [], set()
    for name, array in state_dict.items():
        mapped = _flax_path(name, np.asarray(array))
        if mapped is None:
            continue
        path, value = mapped
        if path not in expected:
            unknown.append(name)
        elif value.shape != expected[path]:
            wrong.append(f"{name} {np.shape(array)} (Flax {expected[path]})")
            seen.add(path)
        else:
            flat[path] = jnp.asarray(value, jnp.float32)
    missing = [_torch_name(p) for p in expected if p not in flat and p not in seen]
    if unknown or wrong or missing:
        raise ValueError(
            "state_dict does not match the model: "
            f"unexpected {unknown[:5]} ({len(unknown)}), wrong shapes {wrong[:5]} "
            f"({len(wrong)}), missing {missing[:5]} ({len(missing)})"
        )
    return traverse_util.unflatten_dict(flat)


def load_u2net(path: str, variant: str | None = None) -> tuple[U2Net, dict]:
    """Load an official checkpoint (`u2net.pth` or `u2netp.pth`) into Flax, no torch needed.

    Args:
      path: the .pth file.
      variant: "u2net" or "u2netp"; None infers it from the first stage's width.

    Returns:
      (model, variables) for `model.apply(variables, x)` and rpx.segment.u2net.masks.
    """
    state = load_state_dict(path)
    if variant is None:
        key = "stage1.rebnconv1.conv_s1.weight"
        if key not in state:
            raise ValueError(f"path: {path} has no {key}; is it a U^2-Net checkpoint?")
        variant = "u2net" if state[key].shape[0] == 32 else "u2netp"
    models = {"u2net": U2NET, "u2netp": U2NETP}
    if variant not in models:
        raise ValueError(f"variant must be 'u2net' or 'u2netp', got {variant!r}")
    model = models[variant]()
    return model, to_variables(state, model)
