"""Read PyTorch `.pth` state dicts without torch (U^2-Net's names: rpx.segment.u2net_names).

A `torch.save` file is either a zip archive (torch >= 1.6: starts with a zip local header;
`<name>/data.pkl`, raw storages in `<name>/data/<key>`) or the legacy stream (five pickles:
magic number, protocol, sys info, the state dict, the storage keys; then each storage as an
int64 element count and its bytes).

Checkpoints come from elsewhere, so reading one must neither run code nor read outside a
buffer:
- the format is told from the first bytes (the zip header, or the magic number's pickle
  byte for byte), so a file that is neither is refused before anything is unpickled;
- every pickle goes through a restricted unpickler: the state dict's resolves only the
  handful of globals a state dict needs (tensor rebuild functions, storage dtypes,
  OrderedDict), the legacy header's and key list's none at all;
- every storage must hold exactly the elements its id declares (checked before its bytes
  are read), and every tensor's offset, sizes and strides must stay inside its storage;
- nothing may make the reader hold much more memory than the file's size: zip records must
  be stored, as torch.save writes them (a compressed one could inflate without bound), and
  the tensors together may hold at most twice the file's bytes (views can repeat
  elements); a zip naming one record twice is ambiguous and refused.
Any failure, including a truncated or corrupt file, is a ValueError naming the path.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import zipfile
from typing import NamedTuple

import numpy as np

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
# The magic number as each pickle protocol writes it (torch.save uses 2 unless told
# otherwise): a legacy file is recognised by these bytes, without unpickling anything.
_LEGACY_HEADS = tuple(
    pickle.dumps(_LEGACY_MAGIC, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)
)
_ZIP_HEAD = b"PK\x03\x04"  # a local file header, as torch itself checks


class _Invalid(ValueError):
    """Why a file is not a valid state dict, phrased to follow "path: <path>"."""


class _Storage:
    """A storage named in the pickle; its bytes are attached once read (and checked)."""

    def __init__(self, dtype, numel: int):
        self.dtype, self.numel = np.dtype(dtype), numel
        self.data: np.ndarray | None = None


class _StorageRef(NamedTuple):
    """A persistent id resolved: elements [start, stop) of a storage (a legacy view or all)."""

    storage: _Storage
    start: int
    stop: int


class _Tensor(NamedTuple):
    """A strided view checked to lie inside its storage, materialised once storages are read.

    A NamedTuple so that the pickle (BUILD) cannot change the fields after the check.
    """

    storage: _Storage
    offset: int  # in elements from the start of the storage
    size: tuple
    stride: tuple

    def materialise(self) -> np.ndarray:
        data = self.storage.data
        if 0 in self.size:
            return np.zeros(self.size, data.dtype)
        strides = [s * data.itemsize for s in self.stride]
        return np.lib.stride_tricks.as_strided(data[self.offset :], self.size, strides).copy()


def _count(x, what: str) -> int:
    """x as a non-negative int (an offset, size, stride or element count), else _Invalid."""
    if not isinstance(x, (int, np.integer)):
        raise _Invalid(f"has a {what} of type {type(x).__name__}")
    if x < 0:
        raise _Invalid(f"has a negative {what} ({x})")
    return int(x)


def _rebuild_tensor(ref, storage_offset, size, stride, *unused):
    """torch._utils._rebuild_tensor(_v2), refusing views that reach outside the storage."""
    if not isinstance(ref, _StorageRef):
        raise _Invalid("rebuilds a tensor from something that is not a storage")
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))):
        raise _Invalid("has a tensor whose size or stride is not a tuple")
    if len(size) != len(stride):
        raise _Invalid(f"has a tensor with {len(size)} sizes but {len(stride)} strides")
    offset = _count(storage_offset, "storage offset")
    size = tuple(_count(n, "tensor size") for n in size)
    stride = tuple(_count(s, "tensor stride") for s in stride)
    # Elements the view needs: up to its last element, or none at all when it is empty.
    last = sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    extent = 0 if 0 in size else offset + last + 1
    if extent > ref.stop - ref.start:
        raise _Invalid(
            f"has a tensor (offset {offset}, size {size}, stride {stride}) that reaches "
            f"element {extent} of a storage of {ref.stop - ref.start}"
        )
    return _Tensor(ref.storage, ref.start + offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


class _Unpickler(pickle.Unpickler):
    """The only unpickler used: tensors become checked views, every other global is refused.

    With storages=None (the legacy header and storage key list, plain data) no global and
    no persistent id is resolved at all.
    """

    def __init__(self, file, storages: dict | None):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if self._storages is not None:
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                return _rebuild_tensor
            if module == "torch._utils" and name == "_rebuild_parameter":
                return _rebuild_parameter
            if module == "torch" and name in _STORAGE_DTYPES:
                return _STORAGE_DTYPES[name]
        raise _Invalid(f"refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid):
        # ("storage", dtype, key, location, numel[, view_metadata (legacy only)])
        if not (
            self._storages is not None
            and isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and any(pid[1] is t for t in _STORAGE_DTYPES.values())
        ):
            raise _Invalid(f"has an unsupported persistent id {str(pid)[:100]}")
        key, numel = str(pid[2]), _count(pid[4], "storage size")
        storage = self._storages.setdefault(key, _Storage(pid[1], numel))
        if storage.dtype != np.dtype(pid[1]) or storage.numel != numel:
            raise _Invalid(f"declares storage {key!r} with two dtypes or sizes")
        if len(pid) == 5 or pid[5] is None:
            return _StorageRef(storage, 0, numel)
        view = pid[5]  # (view_key, offset, view_size), in elements of the root storage
        if not (isinstance(view, tuple) and len(view) == 3):
            raise _Invalid(f"has unsupported view metadata {str(view)[:100]}")
        start = _count(view[1], "storage view offset")
        stop = start + _count(view[2], "storage view size")
        if stop > numel:
            raise _Invalid(f"has a view reaching element {stop} of storage {key!r} of {numel}")
        return _StorageRef(storage, start, stop)


def _tensors(obj):
    """Every _Tensor in the unpickled object (dicts, lists and tuples searched)."""
    if isinstance(obj, _Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _check_total(obj, file_size: int) -> None:
    """Refuse tensors that together would hold more than twice the file's bytes.

    Views may repeat elements (stride 0, overlapping or shared storages), so a small file
    could otherwise describe gigabytes; real state dicts share a storage at most between
    a few tied tensors.
    """
    total = sum(math.prod(t.size) * t.storage.dtype.itemsize for t in _tensors(obj))
    if total > 2 * file_size:
        raise _Invalid(
            f"has tensors of {total} bytes in all, more than twice the file's {file_size} "
            "(views repeating elements)"
        )


def _materialise(obj):
    """The unpickled object with its tensors turned into numpy arrays."""
    if isinstance(obj, _Tensor):
        return obj.materialise()
    if isinstance(obj, _StorageRef):
        raise _Invalid("holds a bare storage where a tensor was expected")
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    """The bytes of a stored (uncompressed) member, which can hold no more than the file does.

    torch.save stores every member; a compressed one could inflate far past the file's own
    size (a zip bomb), so it is refused before anything is inflated.
    """
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        raise _Invalid(f"has a compressed record {name} (torch.save stores every record)")
    if info.file_size != info.compress_size:
        raise _Invalid(f"has a stored record {name} whose sizes disagree")
    return archive.read(name)


def _read_zip(f) -> object:
    """The object of a zip-format file, its storages read and checked."""
    with zipfile.ZipFile(f) as archive:
        listed = archive.namelist()
        names = set(listed)
        if len(names) != len(listed):
            # zipfile would silently read the last of two records with one name.
            twice = sorted({n for n in listed if listed.count(n) > 1})
            raise _Invalid(f"has records named twice: {twice[:5]}")
        pickles = [n for n in names if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise _Invalid(f"has {len(pickles)} data.pkl records, expected 1")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and _member(archive, byteorder).strip() != b"little":
            raise _Invalid("is big-endian, which is not supported")
        storages: dict = {}
        obj = _Unpickler(io.BytesIO(_member(archive, pickles[0])), storages).load()
        for key, storage in storages.items():
            name = f"{prefix}data/{key}"
            if name not in names:
                raise _Invalid(f"has no record {name} for storage {key!r}")
            nbytes = storage.numel * storage.dtype.itemsize
            # The directory's size first, so a huge declared storage is never read; then
            # the bytes themselves, which a crafted directory entry may misstate.
            size = archive.getinfo(name).file_size
            raw = _member(archive, name) if size == nbytes else b""
            if len(raw) != nbytes:
                raise _Invalid(
                    f"has {size} bytes in {name}, but its storage id declares "
                    f"{storage.numel} x {storage.dtype} = {nbytes}"
                )
            storage.data = np.frombuffer(raw, storage.dtype)
    return obj


def _read_legacy(f, file_size: int) -> object:
    """The object of a legacy stream (`f` past its magic number), storages read and checked."""
    if _Unpickler(f, None).load() != _LEGACY_PROTOCOL:
        raise _Invalid("has an unsupported legacy protocol version")
    sys_info = _Unpickler(f, None).load()
    if not isinstance(sys_info, dict):
        raise _Invalid("has no legacy sys info")
    if not sys_info.get("little_endian", True):
        raise _Invalid("is big-endian, which is not supported")
    storages: dict = {}
    obj = _Unpickler(f, storages).load()
    keys = _Unpickler(f, None).load()
    if not isinstance(keys, list):
        raise _Invalid("has no legacy storage key list")
    for key in map(str, keys):
        storage = storages.get(key)
        if storage is None:
            raise _Invalid(f"has bytes for storage {key!r}, which no tensor uses")
        if storage.data is not None:
            raise _Invalid(f"has storage {key!r} twice")
        head = f.read(8)
        if len(head) != 8:
            raise _Invalid(f"ends before storage {key!r}")
        (numel,) = struct.unpack("<q", head)
        if numel != storage.numel:
            raise _Invalid(
                f"has {numel} elements in storage {key!r}, whose id declares {storage.numel}"
            )
        nbytes = numel * storage.dtype.itemsize
        # Compared with what is left before reading, so a huge count allocates nothing.
        left = file_size - f.tell()
        raw = f.read(nbytes) if nbytes <= left else b""
        if len(raw) != nbytes:
            raise _Invalid(f"ends inside storage {key!r} ({left} of its {nbytes} bytes)")
        storage.data = np.frombuffer(raw, storage.dtype)
    unread = [key for key, storage in storages.items() if storage.data is None]
    if unread:
        raise _Invalid(f"has no bytes for storages {unread[:5]} ({len(unread)})")
    return obj


def _read(f) -> object:
    """The object a torch.save file holds, tensors as numpy arrays."""
    file_size = os.fstat(f.fileno()).st_size
    head = f.read(max(map(len, _LEGACY_HEADS)))
    if head.startswith(_ZIP_HEAD):
        f.seek(0)
        obj = _read_zip(f)
    else:
        magic = next((m for m in _LEGACY_HEADS if head.startswith(m)), None)
        if magic is None:
            raise _Invalid("is neither a zip nor a legacy torch.save file")
        f.seek(len(magic))
        obj = _read_legacy(f, file_size)
    _check_total(obj, file_size)
    return _materialise(obj)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict file (zip or legacy format) into numpy arrays, no torch.

    Returns an (ordered) dict name -> array with the tensor's shape and dtype. A leading
    "module." (from nn.DataParallel) is stripped. Raises ValueError naming the path for a
    file that is not a valid torch.save state dict: another format, truncated or corrupt,
    a pickle naming any global beyond the few a state dict needs (nothing is run), or a
    tensor or storage that does not fit the bytes present.
    """
    if not os.path.isfile(path):
        raise ValueError(f"path: no file at {path}")
    with open(path, "rb") as f:
        try:
            obj = _read(f)
        except _Invalid as e:
            raise ValueError(f"path: {path} {e}") from e
        except MemoryError:
            raise  # a real shortage, not a property of the file
        except Exception as e:
            # The parsers' own errors on a truncated or corrupt file (EOFError,
            # UnpicklingError, struct.error, BadZipFile, ...) all mean the same thing.
            raise ValueError(
                f"path: {path} is not a valid torch.save file ({type(e).__name__}: {e})"
            ) from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"path: {path} holds a {type(obj).__name__}, not a state dict")
    return collections.OrderedDict(
        (
            k[len("module.") :] if isinstance(k, str) and k.startswith("module.") else k,
            np.asarray(v),
        )
        for k, v in obj.items()
    )
