"""Two inputs through one network: how one node's activation differs between them, and where.

Given the activations ``a`` and ``b`` of the same node for two inputs (one sample each, no batch axis), channels
first, :func:`activation_difference` returns the difference ``d = a − b`` and its summary:

* per channel ``c``: ``mean |d[c]|`` and ``max |d[c]|`` (a vector ``(F,)`` is one channel of F numbers);
* overall: ``max |d|`` and ``mean |d|``;
* the cosine similarity of the flattened activations, ``a · b / (‖a‖ ‖b‖)``: 1 when they point the same way
  (whatever their lengths), 0 when orthogonal, −1 when opposite;
* the relative change ``‖d‖ / ‖a‖`` (``‖·‖``: the Euclidean norm of all the numbers);
* the channels that changed most: the ``top_k`` largest ``mean |d[c]|``, ties to the lower channel.

Shapes::

    a, b:                 (C, H, W), (C, L), (C, D, H, W), ... or (F,), the same for both
    difference:           the shape of a, float32: a − b exactly as float32 subtracts
    channel_mean_abs:     (C,)  (C = 1 for a vector)
    channel_max_abs:      (C,)

Zero vectors, chosen so that identical activations always compare as identical:

* ``a`` and ``b`` both all zeros: cosine 1 (``a == b``; PyTorch's ``cosine_similarity``, whose ε keeps the
  denominator positive, would say 0);
* exactly one of them all zeros: cosine 0 (no direction in common; PyTorch says 0 too);
* ``a`` all zeros: the relative change is undefined, ``None`` (there is nothing for the change to be relative to).

Sums and norms are taken in float64; the difference itself is float32, as the activations are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import ShapeError

#: channels listed as those that changed most, unless asked otherwise
TOP_K = 5


@dataclass(frozen=True)
class ChannelChange:
    """One channel's change: ``mean |d[c]|``, ``max |d[c]|`` and where in the channel the largest ``|d|`` is (its
    index in the channel's own axes, e.g. (row, column) for (C, H, W); the first one in C order on a tie)."""

    channel: int
    mean_abs: float
    max_abs: float
    largest_at: tuple[int, ...]


@dataclass(frozen=True)
class ActivationDifference:
    """``a − b`` and its summary (see the module's docstring for every field's definition)."""

    difference: np.ndarray  # the shape of a, float32
    channel_mean_abs: np.ndarray  # (C,) float64
    channel_max_abs: np.ndarray  # (C,) float64
    max_abs: float
    mean_abs: float
    norm_a: float
    norm_b: float
    norm_difference: float
    cosine_similarity: float
    relative_change: float | None
    top_channels: tuple[ChannelChange, ...]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """``a · b / (‖a‖ ‖b‖)`` over every number of ``a`` and ``b`` (any shape, the same size), in float64, within
    [−1, 1]; 1 when both are all zeros, 0 when only one is."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    norm_x, norm_y = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if norm_x == 0.0 or norm_y == 0.0:
        return 1.0 if norm_x == norm_y else 0.0
    return float(np.clip(np.dot(x, y) / (norm_x * norm_y), -1.0, 1.0))


def channel_view(x: np.ndarray) -> np.ndarray:
    """``x`` as ``(C, rest)``: axis 0 is the channel; a vector ``(F,)`` is one channel, ``(1, F)``."""
    return x.reshape(1, -1) if x.ndim < 2 else x.reshape(x.shape[0], -1)


def activation_difference(a: np.ndarray, b: np.ndarray, top_k: int = TOP_K) -> ActivationDifference:
    """``a − b`` for two activations of one node (see the module's docstring) and its summary; ``top_k`` channels
    that changed most (fewer when the node has fewer). ``ShapeError`` when the shapes differ or are empty."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise ShapeError(f"the two activations have shapes {list(a.shape)} and {list(b.shape)}: compare two "
                         "activations of the same node (one sample each, no batch axis)")
    if a.size == 0:
        raise ShapeError(f"the activations of shape {list(a.shape)} hold no numbers: there is nothing to compare")
    if top_k < 1:
        raise ShapeError(f"top_k is {top_k}: ask for at least one channel")
    difference = np.subtract(a, b)
    size = np.abs(difference)
    per_channel = channel_view(size)
    channel_mean = per_channel.mean(axis=1, dtype=np.float64)
    channel_max = per_channel.max(axis=1).astype(np.float64)
    norm_a = float(np.linalg.norm(a.reshape(-1).astype(np.float64)))
    norm_difference = float(np.linalg.norm(difference.reshape(-1).astype(np.float64)))
    order = np.argsort(-channel_mean, kind="stable")[:top_k]  # stable: ties keep the lower channel first
    channel_shape = a.shape[1:] if a.ndim >= 2 else a.shape
    top = tuple(ChannelChange(channel=int(c), mean_abs=float(channel_mean[c]), max_abs=float(channel_max[c]),
                              largest_at=tuple(int(i) for i in np.unravel_index(int(np.argmax(per_channel[c])),
                                                                                 channel_shape)))
                for c in order)
    return ActivationDifference(
        difference=difference, channel_mean_abs=channel_mean, channel_max_abs=channel_max,
        max_abs=float(size.max()), mean_abs=float(size.mean(dtype=np.float64)), norm_a=norm_a,
        norm_b=float(np.linalg.norm(b.reshape(-1).astype(np.float64))), norm_difference=norm_difference,
        cosine_similarity=cosine_similarity(a, b),
        relative_change=norm_difference / norm_a if norm_a > 0 else None, top_channels=top)
