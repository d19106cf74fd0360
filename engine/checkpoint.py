"""Read PyTorch checkpoints (``torch.save`` files) into NumPy arrays, without PyTorch and without trusting them.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file names: a malicious
checkpoint can call ``os.system``. This reader unpickles with an allow-list. A state dict needs
only four kinds of globals, and each is mapped to a harmless NumPy-side stand-in:

* ``collections.OrderedDict``                     -> ``collections.OrderedDict``
* ``torch.FloatStorage`` and the other storage types -> a dtype marker
* ``torch._utils._rebuild_tensor_v2`` (and ``_rebuild_tensor``) -> a pending view of a storage
* ``torch._utils._rebuild_parameter``             -> the tensor itself

Any other global raises :class:`CheckpointError` naming it, before anything is called.

Two on-disk layouts exist. The *legacy* one (``torch.save(..., _use_new_zipfile_serialization=False)``,
and every file written before PyTorch 1.6) is a run of pickles followed by raw bytes::

    pickle(MAGIC_NUMBER) pickle(1001) pickle(sys_info) pickle(object) pickle([storage keys])
    then, for each key in that order: int64 little-endian element count, then the elements

The *zip* layout (the default since 1.6) holds ``<name>/data.pkl`` and one file ``<name>/data/<key>``
per storage. Both are read here; storages are referenced from the pickle through ``persistent_load``
with ``("storage", storage_type, key, location, numel[, view_metadata])``.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from engine.errors import EngineError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

#: torch storage type name -> NumPy dtype (little-endian, as torch writes them)
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(EngineError):
    """A checkpoint that cannot be read safely or at all; the message says what was wrong."""


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its dtype matters."""

    name: str
    dtype: np.dtype


@dataclass
class _Storage:
    """A storage named by the pickle; ``data`` is filled in once its bytes have been read."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _View:
    """A slice of another storage (very old checkpoints): ``numel`` elements from ``offset``."""

    base: _Storage
    offset: int
    numel: int

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype


@dataclass
class _PendingTensor:
    """A tensor whose storage bytes come after the pickle: resolved to an array at the end."""

    storage: _Storage | _View
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any, *_ignored: Any) -> _PendingTensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, ...)``."""
    if not isinstance(storage, _Storage | _View):
        raise CheckpointError(f"a tensor in the checkpoint is built from {type(storage).__name__}, not a storage")
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or storage_offset < 0:
        raise CheckpointError(f"a tensor has an invalid layout: size {list(size)}, stride {list(stride)}, "
                              f"offset {storage_offset}")
    if all(s > 0 for s in size):
        last = storage_offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= storage.numel:
            raise CheckpointError(f"a tensor of size {list(size)} reaches element {last} of a storage "
                                  f"with only {storage.numel}")
    return _PendingTensor(storage, int(storage_offset), size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, *_ignored: Any) -> Any:
    """Stand-in for ``torch._utils._rebuild_parameter``: a parameter is just its tensor here."""
    return data


#: (module, name) -> what the unpickler gets instead (plus the storage types). Everything else is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allow-listed globals and records the storages it meets."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])  # a fresh marker: the pickle cannot alter a shared one
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"the checkpoint asks to call '{module}.{name}', which a file of weights never needs; "
                "refusing to load it (only tensors, storages and OrderedDict are allowed)"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage | _View:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise CheckpointError(f"unknown persistent reference {pid!r} in the checkpoint (expected a storage)")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if not isinstance(storage_type, _StorageType) or storage_type.name not in STORAGE_DTYPES:
            raise CheckpointError(f"storage '{key}' has unsupported type {storage_type!r}; supported: "
                                  f"{', '.join(STORAGE_DTYPES)}")
        if numel < 0:
            raise CheckpointError(f"storage '{key}' claims a negative size {numel}")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, STORAGE_DTYPES[storage_type.name], numel)
        view_metadata = pid[5] if len(pid) > 5 else None
        if view_metadata is None:
            return storage
        _view_key, offset, view_numel = view_metadata
        if offset < 0 or view_numel < 0 or offset + view_numel > storage.numel:
            raise CheckpointError(f"a view of storage '{key}' reaches past its end")
        return _View(storage, int(offset), int(view_numel))


def _load_pickle(file: BinaryIO, what: str) -> tuple[Any, RestrictedUnpickler]:
    unpickler = RestrictedUnpickler(file)
    try:
        return unpickler.load(), unpickler
    except CheckpointError:
        raise
    except Exception as exc:  # a truncated or garbled file: pickle raises many kinds
        raise CheckpointError(
            f"the checkpoint's {what} is not a readable pickle ({type(exc).__name__}: {exc})"
        ) from exc


def _read_legacy_storages(file: BinaryIO, storages: dict[str, _Storage], keys: Any, file_size: int) -> None:
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError("the checkpoint's list of storage keys is not a list of strings")
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise CheckpointError(f"the checkpoint lists storage '{key}', which no tensor uses")
        header = file.read(8)
        if len(header) != 8:
            raise CheckpointError(f"the checkpoint ends before storage '{key}'")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise CheckpointError(f"storage '{key}' holds {numel} elements, but its tensors expect {storage.numel}")
        nbytes = numel * storage.dtype.itemsize
        if file.tell() + nbytes > file_size:
            raise CheckpointError(f"the checkpoint ends inside storage '{key}' ({nbytes} bytes expected)")
        storage.data = np.frombuffer(file.read(nbytes), dtype=storage.dtype)


def _resolve(obj: Any) -> Any:
    """Replace every pending tensor in dicts, lists and tuples by a NumPy array of its own."""
    if isinstance(obj, _PendingTensor):
        storage = obj.storage
        if isinstance(storage, _View):
            base, offset = storage.base, storage.offset + obj.offset
        else:
            base, offset = storage, obj.offset
        if base.data is None:
            raise CheckpointError(f"storage '{base.key}' is used by a tensor but its bytes are missing")
        item = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base.data[offset:], shape=obj.size, strides=tuple(s * item for s in obj.stride), writeable=False
        )
        return np.array(view, dtype=base.dtype.newbyteorder("="), order="C", copy=True)  # own, C-order, native
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v) for v in obj)
    return obj


def _load_legacy(file: BinaryIO, file_size: int) -> Any:
    magic, _ = _load_pickle(file, "header")
    if magic != MAGIC_NUMBER:
        raise CheckpointError("this is not a PyTorch checkpoint (its first pickle is not torch's magic number)")
    protocol, _ = _load_pickle(file, "header")
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"checkpoint protocol {protocol} is not supported (only {LEGACY_PROTOCOL_VERSION})")
    sys_info, _ = _load_pickle(file, "header")
    if isinstance(sys_info, Mapping) and not sys_info.get("little_endian", True):
        raise CheckpointError("the checkpoint was written on a big-endian machine, which this reader does not support")
    obj, unpickler = _load_pickle(file, "object")
    keys, _ = _load_pickle(file, "storage key list")
    _read_legacy_storages(file, unpickler.storages, keys, file_size)
    return _resolve(obj)


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"a zip checkpoint holds exactly one data.pkl; this one holds {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        obj, unpickler = _load_pickle(io.BytesIO(archive.read(pickles[0])), "object")
        for key, storage in unpickler.storages.items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise CheckpointError(f"storage '{key}' is missing from the zip checkpoint")
            info = archive.getinfo(entry)
            nbytes = storage.numel * storage.dtype.itemsize
            if info.file_size != nbytes:
                raise CheckpointError(f"storage '{key}' has {info.file_size} bytes, expected {nbytes}")
            storage.data = np.frombuffer(archive.read(entry), dtype=storage.dtype)
    return _resolve(obj)


def load_checkpoint(path: str | Path) -> Any:
    """Read a ``torch.save`` file (legacy or zip) into plain Python containers of NumPy arrays.

    Raises :class:`CheckpointError` for a file that names any global besides tensors, storages
    and ``OrderedDict``, and for truncated or inconsistent files. Nothing in the file is executed.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as file:
            return _load_legacy(file, path.stat().st_size)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path.name}: {exc}") from exc
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"checkpoint {path.name} is a damaged zip file: {exc}") from exc
    except RecursionError as exc:
        raise CheckpointError(f"checkpoint {path.name} nests containers too deeply to read") from exc


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A checkpoint holding a state dict (``{"name": tensor}``), as ``{"name": array}`` in file order."""
    obj = load_checkpoint(path)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # the common {"state_dict": ..., "epoch": ...} wrapper
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {Path(path).name} holds a {type(obj).__name__}, not a state dict")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(f"checkpoint {Path(path).name} has entries that are not named tensors: "
                              f"{', '.join(bad[:10])}")
    return dict(obj)
