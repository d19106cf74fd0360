"""Batch normalisation as a forward/backward pair, in training and inference modes (PyTorch's ``F.batch_norm``).

Statistics are per channel (axis 1), over the batch and every spatial position: for
``x: (N, C, H, W)`` each channel has ``M = N * H * W`` values.

* Training: ``mean`` and the *biased* ``var`` of the batch normalise ``x``; the running
  statistics are updated **in place** with ``running = (1 - momentum) * running + momentum * batch``,
  using the *unbiased* variance ``var * M / (M - 1)`` for ``running_var``, as PyTorch does.
* Inference: ``running_mean`` and ``running_var`` normalise ``x``; nothing is updated.

``out = weight * (x - mean) / sqrt(var + eps) + bias``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import ShapeError
from engine.layers.grad_mode import param_grads_wanted


def _channel_view(v: np.ndarray, ndim: int) -> np.ndarray:
    """``(C,)`` -> ``(1, C, 1, ...)`` so that it broadcasts against ``(N, C, *spatial)``."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum(a * b)`` per channel of ``(N, C, *spatial)`` arrays, without the product's temporary: (C,)."""
    n, c = a.shape[:2]
    return np.einsum("ncp,ncp->c", a.reshape(n, c, -1), b.reshape(n, c, -1))


def batch_norm_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, Any]:
    """Normalise each channel; in training, also update ``running_mean`` / ``running_var`` in place.

    Shape:
        x: (N, C) or (N, C, *spatial); weight, bias (None: no affine step), running_mean,
        running_var: (C,); out: same as x.

    Inference folds the constants into one scale and shift per channel, as PyTorch's CPU kernel does:
    ``out = x * scale + shift`` with ``scale = weight / sqrt(running_var + eps)`` and
    ``shift = bias - running_mean * scale`` (two passes over x; the cache is x itself, already kept).
    """
    if not training:
        return _inference_forward(x, weight, bias, running_mean, running_var, eps)
    axes = (0, *range(2, x.ndim))
    count = x.size // x.shape[1]
    if count < 2:
        raise ShapeError(f"batch norm in training mode needs more than one value per channel, got input "
                         f"shape {list(x.shape)}: use a batch of 2 or more, or inference mode")
    mean = x.mean(axis=axes)
    xhat = x - _channel_view(mean, x.ndim)
    var = _channel_dot(xhat, xhat) / count
    m = np.asarray(momentum, dtype=running_mean.dtype)
    running_mean *= 1 - m
    running_mean += m * mean.astype(running_mean.dtype)
    running_var *= 1 - m
    running_var += m * (var * (count / (count - 1))).astype(running_var.dtype)
    inv_std = 1 / np.sqrt(var + np.asarray(eps, dtype=x.dtype))
    xhat *= _channel_view(inv_std, x.ndim)
    out = xhat if weight is None else xhat * _channel_view(weight, x.ndim)
    if bias is not None:
        out = out + _channel_view(bias, x.ndim) if out is xhat else np.add(out, _channel_view(bias, x.ndim), out=out)
    return out, (xhat, inv_std, weight, bias is not None, True)


def _inference_forward(x, weight, bias, running_mean, running_var, eps):
    mean = running_mean.astype(x.dtype, copy=False)
    inv_std = 1 / np.sqrt(running_var.astype(x.dtype, copy=False) + np.asarray(eps, dtype=x.dtype))
    scale = inv_std if weight is None else weight.astype(x.dtype, copy=False) * inv_std
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias.astype(x.dtype, copy=False)
    out = x * _channel_view(scale, x.ndim)
    out += _channel_view(shift, x.ndim)
    return out, (x, mean, inv_std, scale, weight, bias is not None, False)


def batch_norm_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``dout`` (shape of x) -> ``(dx, dweight: (C,) or None, dbias: (C,) or None)``.

    Inference: the statistics are constants, so ``dx = dout * weight / sqrt(var + eps)`` and
    ``dweight = sum(dout * xhat)`` with ``xhat = (x - running_mean) / sqrt(running_var + eps)``.
    Inside ``grad_mode.input_grads_only()`` inference skips dweight and dbias (None).
    Training: the batch statistics depend on x too, which gives, per channel over its M values,
    ``dx = inv_std / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))`` with ``dxhat = dout * weight``.
    """
    axes = (0, *range(2, dout.ndim))
    if not cache[-1]:
        x, mean, inv_std, scale, weight, has_bias, _ = cache
        dx = dout * _channel_view(scale, dout.ndim)
        if not param_grads_wanted():  # attribution: the input's gradient only
            return dx, None, None
        dbias = dout.sum(axis=axes) if has_bias else None
        dweight = None
        if weight is not None:
            centred = x - _channel_view(mean, x.ndim)
            dweight = _channel_dot(dout, centred) * inv_std
        return dx, dweight, dbias
    xhat, inv_std, weight, has_bias, _ = cache
    count = dout.size // dout.shape[1]
    sum_dout = dout.sum(axis=axes)
    sum_dout_xhat = _channel_dot(dout, xhat)
    gain = inv_std if weight is None else weight * inv_std  # dxhat = dout * weight, so the sums scale by weight
    dx = xhat * _channel_view(-gain * sum_dout_xhat / count, dout.ndim)
    dx += dout * _channel_view(gain, dout.ndim)
    dx -= _channel_view(gain * sum_dout / count, dout.ndim)
    return dx, (sum_dout_xhat if weight is not None else None), (sum_dout if has_bias else None)
