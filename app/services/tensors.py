"""``.npy`` tensors in and out, parsed safely: no pickles, the header checked before any data is allocated."""

from __future__ import annotations

import io

import numpy as np

from app.errors import ApiError

NPY_MAGIC = b"\x93NUMPY"
NPY_MEDIA_TYPE = "application/x-npy"


def is_npy(data: bytes) -> bool:
    return data.startswith(NPY_MAGIC)


def parse_npy(data: bytes, max_elements: int) -> np.ndarray:
    """A ``.npy`` file's array as float32, refusing pickles, non-numeric dtypes, oversized and non-finite data."""
    if not is_npy(data):
        raise ApiError(415, "this body is not a .npy file (it does not start with \\x93NUMPY): "
                            "write one with numpy.save(f, array), or send an image as multipart field 'image'")
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(buffer)
        else:
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(buffer)
    except ValueError as exc:
        raise ApiError(422, f"the .npy header cannot be read ({exc}): write the file with numpy.save") from exc
    if dtype.hasobject or dtype.kind not in "fiub":
        raise ApiError(422, f"the tensor's dtype is {dtype}; send numbers (float32 preferred, any float, int or "
                            "bool dtype is converted)")
    elements = int(np.prod(shape, dtype=np.int64))
    if elements > max_elements:
        raise ApiError(413, f"the tensor has shape {list(shape)} = {elements:,} elements, more than the "
                            f"{max_elements:,} this server accepts: send a smaller batch or input")
    needed = elements * dtype.itemsize
    if len(data) - buffer.tell() < needed:
        raise ApiError(422, f"the .npy file is truncated: shape {list(shape)} of {dtype} needs {needed:,} bytes of "
                            f"data, the body has {len(data) - buffer.tell():,}")
    buffer.seek(0)
    try:
        array = np.load(buffer, allow_pickle=False)
    except ValueError as exc:
        raise ApiError(422, f"the .npy file cannot be read: {exc}") from exc
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ApiError(422, "the tensor contains NaN or infinity (or values too large for float32): send finite values")
    return array


def to_npy(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (float32)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()
