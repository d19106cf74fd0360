"""Per-sample normalisation as forward/backward pairs: layer norm and instance norm (no running statistics).

Both standardise groups of values with their own mean and *biased* variance, the same in training and
inference; they differ in which values form a group and in the shape of the affine step:

* ``layer_norm`` (``torch.nn.LayerNorm``): the trailing axes of each sample, e.g. for ``x: (N, H, W, C)``
  with ``normalized_shape=(C,)``, each position's C channels; ``weight`` and ``bias`` have the normalised
  shape, ``out = xhat * weight + bias``.
* ``instance_norm`` (``torch.nn.InstanceNorm1d/2d/3d``, ONNX's InstanceNormalization): the spatial positions
  of each (sample, channel) of ``x: (N, C, *spatial)``; ``weight`` and ``bias`` have shape (C,).

``xhat = (x - mean) / sqrt(var + eps)`` over each group of M values. Backward, per group, with
``dxhat = dout * weight``: ``dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var + eps)``, the
same formula as batch norm's training mode (there the group is a channel across the batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.layers.grad_mode import param_grads_wanted


def _standardise(x: np.ndarray, axes: tuple[int, ...], eps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(xhat, inv_std)``: x standardised over ``axes`` (biased variance), and ``1 / sqrt(var + eps)`` (kept dims)."""
    xhat = x - x.mean(axis=axes, keepdims=True)
    var = np.mean(xhat * xhat, axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(var + np.asarray(eps, dtype=x.dtype))
    xhat *= inv_std
    return xhat, inv_std


def _standardise_backward(dxhat: np.ndarray, xhat: np.ndarray, inv_std: np.ndarray, axes: tuple[int, ...]):
    """``dx`` from the gradient of ``xhat``, through the group's mean and variance."""
    dx = dxhat - dxhat.mean(axis=axes, keepdims=True)
    dx -= xhat * np.mean(dxhat * xhat, axis=axes, keepdims=True)
    dx *= inv_std
    return dx


def layer_norm_forward(x: np.ndarray, normalized_ndim: int, weight: np.ndarray | None, bias: np.ndarray | None,
                       eps: float = 1e-5) -> tuple[np.ndarray, Any]:
    """Normalise each sample over its last ``normalized_ndim`` axes (``F.layer_norm``).

    Shape:
        x: (N, *lead, *normalized_shape) with ``len(normalized_shape) = normalized_ndim``;
        weight, bias: normalized_shape, or None (no scale, no shift); out: same as x.
    """
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    xhat, inv_std = _standardise(x, axes, eps)
    out = xhat if weight is None else xhat * weight
    if bias is not None:
        out = out + bias
    return out, (xhat, inv_std, weight, bias is not None, axes)


def layer_norm_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``dout`` (shape of x) -> ``(dx, dweight, dbias)``; the parameters' gradients have the normalised shape.

    ``dweight = sum(dout * xhat)`` and ``dbias = sum(dout)`` over every axis but the normalised ones; None
    where the parameter does not exist, or inside ``grad_mode.input_grads_only()``.
    """
    xhat, inv_std, weight, has_bias, axes = cache
    dx = _standardise_backward(dout if weight is None else dout * weight, xhat, inv_std, axes)
    if not param_grads_wanted():
        return dx, None, None
    lead = tuple(range(dout.ndim - len(axes)))
    dweight = (dout * xhat).sum(axis=lead) if weight is not None else None
    dbias = dout.sum(axis=lead) if has_bias else None
    return dx, dweight, dbias


def _channel_view(v: np.ndarray, ndim: int) -> np.ndarray:
    """``(C,)`` -> ``(1, C, 1, ...)`` so that it broadcasts against ``(N, C, *spatial)``."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def instance_norm_forward(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
                          eps: float = 1e-5) -> tuple[np.ndarray, Any]:
    """Normalise each channel of each sample over its positions (``F.instance_norm`` without running stats).

    Shape:
        x: (N, C, *spatial), at least one spatial axis; weight, bias: (C,) or None; out: same as x.
        With one position per channel every value standardises to 0 (the output is ``bias``), as ONNX
        computes it (PyTorch refuses such inputs).
    """
    axes = tuple(range(2, x.ndim))
    xhat, inv_std = _standardise(x, axes, eps)
    out = xhat if weight is None else xhat * _channel_view(weight, x.ndim)
    if bias is not None:
        out = out + _channel_view(bias, x.ndim)
    return out, (xhat, inv_std, weight, bias is not None, axes)


def instance_norm_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``dout`` (shape of x) -> ``(dx, dweight: (C,) or None, dbias: (C,) or None)``, sums over batch and positions."""
    xhat, inv_std, weight, has_bias, axes = cache
    dxhat = dout if weight is None else dout * _channel_view(weight, dout.ndim)
    dx = _standardise_backward(dxhat, xhat, inv_std, axes)
    if not param_grads_wanted():
        return dx, None, None
    outer = (0, *axes)
    dweight = (dout * xhat).sum(axis=outer) if weight is not None else None
    dbias = dout.sum(axis=outer) if has_bias else None
    return dx, dweight, dbias
