"""Copying every ``step``-th column of an array, fast where the step is 2.

NumPy copies a strided slice value by value; with a step of 2 along the last axis (a stride-2 convolution's
phases and patches) that is about twice as slow per value as a contiguous copy. ``copy_columns`` reads such
columns in pairs instead, as 8-byte integers, and keeps each integer's low half: on a little-endian machine,
the left value of the pair. The narrowing cast keeps the bits exactly (any NaN payload, -0.0, subnormals).
Other steps, other item sizes and big-endian machines take NumPy's plain copy.

Measured (ce8b311): about twice as fast as NumPy's strided copy, for the stride-2 depthwise copies
(``engine.layers.fast.depthwise_copies``) and patch matrices (``engine.layers.fast.im2col``).
"""

from __future__ import annotations

import sys

import numpy as np


def pairs_readable(x: np.ndarray) -> bool:
    """Whether ``copy_every_other`` can read x: 4-byte values, in the machine's own byte order (little-endian),
    contiguous along the last axis."""
    return (x.dtype.itemsize == 4 and x.dtype.byteorder in "=|" and sys.byteorder == "little"
            and x.strides[-1] == 4)


def copy_every_other(target: np.ndarray, rows: np.ndarray, columns: slice) -> None:
    """``target[...] = rows[..., columns]`` for a step-2 ``columns``, twice as fast as NumPy's strided copy.

    Each value is read with its right-hand neighbour as one 8-byte integer, and the integer's low half, which
    on a little-endian machine is the left value, is kept (a narrowing cast, exact for any bit pattern). A
    pair that would run past the end of a row leaves its last value to a plain copy.
    """
    count = target.shape[-1]
    pairs = min(count, (rows.shape[-1] - columns.start) // 2)
    if pairs > 0:
        words = rows[..., columns.start:columns.start + 2 * pairs].view(np.uint64)
        np.copyto(target[..., :pairs].view(np.uint32), words, casting="unsafe")
    if pairs < count:
        target[..., pairs:] = rows[..., columns.start + 2 * pairs::2][..., :count - pairs]


def copy_columns(target: np.ndarray, rows: np.ndarray, columns: slice) -> None:
    """``target[...] = rows[..., columns]``, with ``target``'s last axis as long as the slice (any step)."""
    if columns.step == 2 and pairs_readable(rows) and target.strides[-1] == target.itemsize == 4:
        copy_every_other(target, rows, columns)
    else:
        target[...] = rows[..., columns]
