"""``.npy`` tensors in and out, parsed safely: no pickles, the header checked before any data is allocated."""

from __future__ import annotations

import io
import math

import numpy as np

from app.errors import ApiError, plain_text

NPY_MAGIC = b"\x93NUMPY"
NPY_MEDIA_TYPE = "application/x-npy"
#: largest |value| accepted in an input tensor: preprocessed inputs are within about ±10, and values far
#: beyond this overflow float32 (±3.4e38) a few layers in, giving NaN maps and statistics
MAX_ABS_VALUE = 1e6


#: what a readable header holds, for the message when it does not
HEADER_FORM = ("it must be the dictionary numpy.save writes, with literal values only, e.g. "
               "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 28, 28)}: a known dtype, True or False, "
               "and whole numbers of at least 0")


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
    except ValueError as exc:  # numpy's text may quote its parser's objects (<ast.Call object at 0x...>)
        raise ApiError(422, f"the .npy header cannot be read: {HEADER_FORM}; write the file with numpy.save") from exc
    if dtype.hasobject or dtype.kind not in "fiub":
        raise ApiError(422, f"the tensor's dtype is {dtype}; send numbers (float32 preferred, any float, int or "
                            "bool dtype is converted)")
    elements = math.prod(shape)
    if elements == 0:
        raise ApiError(422, f"the tensor is empty (shape {list(shape)}): send at least one input, e.g. [1, C, H, W]")
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
        raise ApiError(422, f"the .npy file cannot be read ({plain_text(exc)}): write it with numpy.save") from exc
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf, refused just below
        array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ApiError(422, "the tensor contains NaN or infinity (or values too large for float32): send finite values")
    largest = float(np.abs(array).max())
    if largest > MAX_ABS_VALUE:
        raise ApiError(422, f"the tensor holds values up to {largest:.3g}; inputs must stay within ±{MAX_ABS_VALUE:g}, "
                            "or the activations overflow float32: send the preprocessed input (usually within ±10, "
                            "see the model's 'preprocessing')")
    return array


def to_npy(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (float32)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()
