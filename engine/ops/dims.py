"""Axis arguments that count the batch axis (PyTorch's ``dim``), checked against a per-sample shape."""

from __future__ import annotations

from typing import Any

from engine.errors import SpecError
from engine.ops.base import Shape


def batch_dim(dim: Any, sample_shape: Shape, name: str, node_id: str) -> int:
    """``dim`` for an array ``(N, *sample_shape)`` as a positive axis index >= 1.

    As in PyTorch, ``dim`` counts the batch axis (1 is the first axis after it) and may be negative
    (-1 is the last axis). The batch axis itself is refused: an op on it would mix samples.
    """
    ndim = len(sample_shape) + 1
    if not isinstance(dim, int) or isinstance(dim, bool) or not -ndim <= dim < ndim:
        raise SpecError(node_id, f"{name} must be an int from 1 to {ndim - 1} (or -1 to -{ndim - 1} from the end) "
                                 f"for an input of shape [N, {', '.join(map(str, sample_shape))}]; got {dim!r}")
    axis = dim % ndim
    if axis == 0:
        raise SpecError(node_id, f"{name}={dim} is the batch axis, which would mix samples; "
                                 f"use 1 for the first axis after the batch")
    return axis
