"""An uncompressed ``.npz`` whose arrays start on 64-byte boundaries, so a reader can map them instead of copying.

Why: storing VGG-16's 528 MiB of weights with ``np.savez_compressed`` took 19-28 s of a 44 s upload and saved 7%
(random-looking float32 barely compresses), and every worker that loaded the model decompressed its own copy into
memory (3.8-4.5 s, 528 MiB each; ``scripts/bench_model_upload.py``). Written by :func:`save_aligned` the file takes
a second, and :func:`load_mapped` maps it: the arrays are read-only views of the file, the pages come from the
system's page cache, which every worker on the machine shares, and the kernel may drop them when memory is short.

The file is still an ordinary ``.npz``: ``np.load`` reads it anywhere. Each member is stored (``ZIP_STORED``), and
the zip header before it carries an extra field of padding (id 0xD935, the one Android's ``zipalign`` uses for the
same purpose) so that the array's data, after the zip header and the ``.npy`` header (which NumPy pads to 64
bytes), starts at a multiple of 64 in the file. :func:`load_mapped` reads any ``.npz``: members that are stored
and aligned are mapped, the others (compressed ones, or ``np.savez``'s unaligned ones) are read into memory.

A mapped array is only as good as the file under it: the store writes a weights file once, in a staging
directory, and renames it into place; it never writes into one that may be mapped (replacing or deleting it is
safe: a mapping keeps the old file's data alive).
"""

from __future__ import annotations

import io
import mmap
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

ALIGN = 64
#: the extra field's id: Android's zipalign uses it to pad zip entries the same way
PADDING_ID = 0xD935
#: a zip local file header: signature, versions, flags, method, time, date, crc, sizes, name and extra lengths
LOCAL_HEADER = struct.Struct("<4s5H3L2H")
LOCAL_SIGNATURE = b"PK\x03\x04"
ZIP64_EXTRA_BYTES = 20  # what zipfile adds to a local header when the member may pass 4 GiB


def npy_header(array: np.ndarray) -> bytes:
    """The ``.npy`` header NumPy writes before ``array``'s data (magic, version, dict, padded to 64 bytes)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, np.lib.format.header_data_from_array_1_0(array))
    return buffer.getvalue()


def padding_extra(offset: int, name: bytes, header: int, zip64: bool) -> bytes:
    """The extra field that makes the data of a member whose local header starts at ``offset`` begin at a multiple
    of ``ALIGN``: ``30 + len(name) + len(extra) (+ 20 for zip64) + header`` bytes after ``offset``."""
    start = offset + LOCAL_HEADER.size + len(name) + header + (ZIP64_EXTRA_BYTES if zip64 else 0)
    pad = -start % ALIGN
    if pad == 0:
        return b""
    if pad < 4:  # an extra field is at least its 4-byte id and length
        pad += ALIGN
    return struct.pack("<HH", PADDING_ID, pad - 4) + bytes(pad - 4)


def save_aligned(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` (``name.npy`` members) with each array's data 64-byte aligned."""
    with open(path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            array = np.asarray(value, order="C")  # not ascontiguousarray: it makes a scalar 1-D
            if array.dtype.hasobject:
                raise ValueError(f"array '{name}' holds Python objects: only numbers can be stored")
            header = npy_header(array)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = len(header) + array.nbytes
            zip64 = info.file_size * 1.05 > zipfile.ZIP64_LIMIT  # zipfile's own rule for a member's header
            info.extra = padding_extra(handle.tell(), info.filename.encode("utf-8"), len(header), zip64)
            with archive.open(info, "w", force_zip64=zip64) as member:
                member.write(header)
                member.write(array.data if array.size else b"")


def load_mapped(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, by name (``np.load``'s names: ``.npy`` dropped).

    Stored members whose data is 64-byte aligned are read-only views of one shared mapping of the file; the rest
    are read into memory. Never unpickles: an array of Python objects is a ``ValueError``, as is a member that is
    not a ``.npy`` or whose header disagrees with its size. A file that is not a zip raises
    ``zipfile.BadZipFile``."""
    arrays: dict[str, np.ndarray] = {}
    with open(path, "rb") as handle, zipfile.ZipFile(handle) as archive:
        mapping: mmap.mmap | None = None
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type == zipfile.ZIP_STORED:
                if mapping is None:  # one mapping of the whole file, shared by its arrays (one descriptor)
                    mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                mapped = _mapped_member(handle, mapping, info)
                if mapped is not None:
                    arrays[name] = mapped
                    continue
            with archive.open(info) as member:
                arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
    return arrays


def _mapped_member(handle: BinaryIO, mapping: mmap.mmap, info: zipfile.ZipInfo) -> np.ndarray | None:
    """A stored member as a view of ``mapping``; None when its data is not aligned (then it is read instead)."""
    handle.seek(info.header_offset)
    local = handle.read(LOCAL_HEADER.size)
    if len(local) < LOCAL_HEADER.size or local[:4] != LOCAL_SIGNATURE:
        raise zipfile.BadZipFile(f"member '{info.filename}' has no local header where the directory says")
    name_length, extra_length = LOCAL_HEADER.unpack(local)[-2:]
    start = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
    handle.seek(start)
    shape, fortran, dtype = read_npy_header(handle, info.filename)
    offset = handle.tell()
    count = int(np.prod(shape, dtype=np.int64))
    if offset - start + count * dtype.itemsize != info.file_size:
        raise ValueError(f"member '{info.filename}' holds {info.file_size:,} bytes, but its header declares "
                         f"{dtype} of shape {shape}: the file is damaged")
    if offset % ALIGN or count == 0:
        return None
    if offset + count * dtype.itemsize > len(mapping):
        raise ValueError(f"member '{info.filename}' ends past the end of the file: the file is truncated")
    flat = np.frombuffer(mapping, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C")


def read_npy_header(handle: BinaryIO, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from the ``.npy`` header at the handle's position; ValueError for a member that
    is not a ``.npy`` or holds Python objects (never unpickled)."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"member '{what}' is a .npy of version {version}, which weights are never written in")
    if dtype.hasobject:
        raise ValueError(f"member '{what}' holds Python objects, which are never unpickled (allow_pickle=False)")
    return tuple(shape), bool(fortran), dtype


def is_mapped(array: np.ndarray) -> bool:
    """Whether ``array``'s data is a view of a memory-mapped file (an ``mmap`` down its chain of bases)."""
    base: object = array
    while base is not None:
        if isinstance(base, mmap.mmap | np.memmap):
            return True
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return False
