"""Central-difference gradient checks, in float64, for layer functions and whole graphs.

A check compares an analytic gradient with ``(f(x + h) - f(x - h)) / 2h`` for a scalar
``f = sum(out * dout)`` with a fixed random ``dout``. The relative error reported is
``max |a - n| / max(|a| + |n|, tiny)`` over all elements; float64 checks pass well below 1e-6.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numeric_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f / d x by central differences, perturbing ``x`` in place (and restoring it)."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = f()
        x[i] = old - h
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``max |a - n| / max(max(|a| + |n|), 1e-12)``: 0 for a perfect match, about 1 for nonsense."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"gradient shape {analytic.shape} != numeric shape {numeric.shape}")
    scale = max(float(np.max(np.abs(analytic) + np.abs(numeric), initial=0.0)), 1e-12)
    return float(np.max(np.abs(analytic - numeric), initial=0.0)) / scale


def check_function(
    forward: Callable[..., np.ndarray],
    analytic: Callable[[np.ndarray], tuple[np.ndarray, ...]],
    arrays: list[np.ndarray],
    dout: np.ndarray | None = None,
    seed: int = 0,
) -> list[float]:
    """Relative errors of the analytic gradients of ``forward(*arrays)``, one per array.

    ``analytic(dout)`` must return the gradients of every array in ``arrays``, in order, for the
    upstream gradient ``dout`` (evaluated at the unperturbed arrays).
    """
    out = forward(*arrays)
    if dout is None:
        dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    grads = analytic(dout)
    errors = []
    for array, grad in zip(arrays, grads):
        numeric = numeric_gradient(lambda: float(np.sum(forward(*arrays) * dout)), array)
        errors.append(relative_error(grad, numeric))
    return errors
