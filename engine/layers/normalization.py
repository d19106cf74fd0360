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


def _channel_view(v: np.ndarray, ndim: int) -> np.ndarray:
    """``(C,)`` -> ``(1, C, 1, ...)`` so that it broadcasts against ``(N, C, *spatial)``."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


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
    """
    axes = (0, *range(2, x.ndim))
    count = x.size // x.shape[1]
    if training:
        if count < 2:
            raise ShapeError(f"batch norm in training mode needs more than one value per channel, got input "
                             f"shape {list(x.shape)}: use a batch of 2 or more, or inference mode")
        mean = x.mean(axis=axes)
        centred = x - _channel_view(mean, x.ndim)
        var = (centred * centred).mean(axis=axes)
        m = np.asarray(momentum, dtype=running_mean.dtype)
        running_mean *= 1 - m
        running_mean += m * mean.astype(running_mean.dtype)
        running_var *= 1 - m
        running_var += m * (var * (count / (count - 1))).astype(running_var.dtype)
    else:
        mean = running_mean.astype(x.dtype, copy=False)
        var = running_var.astype(x.dtype, copy=False)
        centred = x - _channel_view(mean, x.ndim)
    inv_std = 1 / np.sqrt(var + np.asarray(eps, dtype=x.dtype))
    xhat = centred * _channel_view(inv_std, x.ndim)
    out = xhat
    if weight is not None:
        out = out * _channel_view(weight, x.ndim)
    if bias is not None:
        out = out + _channel_view(bias, x.ndim)
    return out, (xhat, inv_std, weight, bias is not None, training)


def batch_norm_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``dout`` (shape of x) -> ``(dx, dweight: (C,) or None, dbias: (C,) or None)``.

    Inference: the statistics are constants, so ``dx = dout * weight / sqrt(var + eps)``.
    Training: the batch statistics depend on x too, which gives, per channel over its M values,
    ``dx = inv_std / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))`` with ``dxhat = dout * weight``.
    """
    xhat, inv_std, weight, has_bias, training = cache
    axes = (0, *range(2, dout.ndim))
    dweight = (dout * xhat).sum(axis=axes) if weight is not None else None
    dbias = dout.sum(axis=axes) if has_bias else None
    dxhat = dout * _channel_view(weight, dout.ndim) if weight is not None else dout
    if training:
        count = dout.size // dout.shape[1]
        sum_dxhat = _channel_view(dxhat.sum(axis=axes), dout.ndim)
        sum_dxhat_xhat = _channel_view((dxhat * xhat).sum(axis=axes), dout.ndim)
        dx = (dxhat - sum_dxhat / count - xhat * sum_dxhat_xhat / count) * _channel_view(inv_std, dout.ndim)
    else:
        dx = dxhat * _channel_view(inv_std, dout.ndim)
    return dx, dweight, dbias
