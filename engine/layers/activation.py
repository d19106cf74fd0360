"""Elementwise activations as forward/backward pairs.

Every ``*_forward(x, ...)`` takes ``x`` of any shape, e.g. ``(N, C, H, W)``, and returns
``(out, cache)`` with ``out`` of the same shape and dtype; every ``*_backward(dout, cache)``
returns ``dx`` of that shape. At the kinks (where the derivative does not exist) the gradient is
the one PyTorch's autograd gives, so that comparisons with PyTorch are exact:

=============  ======================================  =========================================
function       forward                                 gradient at the kinks (as PyTorch)
=============  ======================================  =========================================
relu           max(x, 0)                               0 at x = 0
relu6          min(max(x, 0), 6)                       0 at x = 0 and at x = 6 (``hardtanh``)
leaky_relu     x if x > 0 else negative_slope * x      negative_slope at x = 0
clip           min(max(x, min), max)                   1 at x = min and at x = max (``clamp``)
hardsigmoid    clip(alpha * x + beta, 0, 1)            0 where alpha * x + beta is 0 or 1
hardswish      x * clip(x / 6 + 1/2, 0, 1)             0 at x = -3, 1 at x = 3
=============  ======================================  =========================================

``hardsigmoid`` takes ONNX's ``alpha`` and ``beta``; the defaults 1/6 and 1/2 give PyTorch's
``x / 6 + 1/2`` (clipped). ``sigmoid`` is evaluated without overflow for large ``|x|``.

``gelu`` is smooth: ``x * Phi(x)`` with the normal CDF ``Phi(x) = (1 + erf(x / sqrt 2)) / 2`` (``erf`` from
``engine.layers.erf``, to float64 precision), or with ``approximate="tanh"`` the tanh form BERT and GPT-2 used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.layers.erf import erf


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = max(x, 0)``. x: any shape.

    Floats are computed as ``clip(x, 0, inf)``, on current NumPy builds about three times faster than
    ``np.maximum``; NaN stays NaN and -0.0 stays -0.0, as in PyTorch (``np.maximum`` gives +0.0)."""
    if x.dtype.kind != "f":  # integers: exact, without passing through floats
        return np.maximum(x, 0), x
    return np.clip(x, 0, np.inf).astype(x.dtype, copy=False), x


def relu_inplace(x: np.ndarray) -> np.ndarray:
    """``relu_forward`` written into ``x`` (floats; no cache: inference only). Returns ``x``."""
    return np.clip(x, 0, np.inf, out=x)


def relu_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    x = cache
    return dout * (x > 0)


def relu6_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = min(max(x, 0), 6)``, as in MobileNet and EfficientNet-Lite. x: any shape."""
    return np.clip(x, 0, 6).astype(x.dtype, copy=False), x


def relu6_inplace(x: np.ndarray) -> np.ndarray:
    """``relu6_forward`` written into ``x`` (no cache: inference only). Returns ``x``."""
    return np.clip(x, 0, 6, out=x)


def relu6_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    x = cache
    return dout * ((x > 0) & (x < 6))


def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01) -> tuple[np.ndarray, Any]:
    """``out = x`` where ``x > 0``, else ``negative_slope * x``. x: any shape."""
    slope = np.asarray(negative_slope, dtype=x.dtype)
    return np.where(x > 0, x, x * slope), (x, slope)


def leaky_relu_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, slope = cache
    return np.where(x > 0, dout, dout * slope)


def clip_forward(x: np.ndarray, min: float | None = None, max: float | None = None) -> tuple[np.ndarray, Any]:
    """``out = min(max(x, min), max)``; ``None`` leaves that side open (ONNX's Clip). x: any shape."""
    lo = -np.inf if min is None else min
    hi = np.inf if max is None else max
    return np.clip(x, lo, hi).astype(x.dtype, copy=False), (x, lo, hi)


def clip_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, lo, hi = cache
    return dout * ((x >= lo) & (x <= hi))


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = 1 / (1 + exp(-x))``, computed from ``exp(-|x|)`` so that it never overflows. x: any shape."""
    z = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)
    return out, out


def sigmoid_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    out = cache
    return dout * out * (1 - out)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = tanh(x)``. x: any shape."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    out = cache
    return dout * (1 - out * out)


def silu_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = x * sigmoid(x)`` (SiLU, also called swish). x: any shape."""
    s, _ = sigmoid_forward(x)
    return x * s, (x, s)


def silu_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, s = cache
    return dout * s * (1 + x * (1 - s))


def hardsigmoid_forward(x: np.ndarray, alpha: float = 1 / 6, beta: float = 0.5) -> tuple[np.ndarray, Any]:
    """``out = clip(alpha * x + beta, 0, 1)`` (ONNX HardSigmoid; PyTorch's with the defaults). x: any shape."""
    a = np.asarray(alpha, dtype=x.dtype)
    z = x * a + np.asarray(beta, dtype=x.dtype)
    return np.clip(z, 0, 1).astype(x.dtype, copy=False), (z, a)


def hardsigmoid_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    z, a = cache
    return dout * ((z > 0) & (z < 1)) * a


def hardswish_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = x * clip(x / 6 + 1/2, 0, 1)`` (MobileNetV3's h-swish). x: any shape."""
    gate = np.clip(x / np.asarray(6, dtype=x.dtype) + np.asarray(0.5, dtype=x.dtype), 0, 1)
    return x * gate, x


def hardswish_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    x = cache
    middle = x / np.asarray(3, dtype=x.dtype) + np.asarray(0.5, dtype=x.dtype)
    slope = np.where(x <= -3, 0, np.where(x < 3, middle, 1)).astype(x.dtype, copy=False)
    return dout * slope


def identity_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = x`` (ONNX Identity; a named no-op a visualiser can still point at). x: any shape."""
    return x, None


def identity_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    return dout


GELU_APPROXIMATIONS = ("none", "tanh")
_SQRT_2_OVER_PI = float(np.sqrt(2 / np.pi))
_INV_SQRT_2PI = float(1 / np.sqrt(2 * np.pi))


def gelu_forward(x: np.ndarray, approximate: str = "none") -> tuple[np.ndarray, Any]:
    """GELU, as ``torch.nn.GELU(approximate)``. x: any shape; out: same shape and dtype.

    ``approximate="none"``: ``out = x * Phi(x) = x / 2 * (1 + erf(x / sqrt 2))``, erf evaluated in float64.
    ``approximate="tanh"``: ``out = x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))``, in x's dtype.
    """
    if approximate == "none":
        cdf = (0.5 * (1 + erf(x.astype(np.float64, copy=False) * np.sqrt(0.5)))).astype(x.dtype, copy=False)
        return x * cdf, (x, cdf, approximate)
    if approximate == "tanh":
        xc = np.clip(x, -1e4, 1e4)  # tanh is +-1 long before: keeps x^3 finite in float32
        t = np.tanh(np.asarray(_SQRT_2_OVER_PI, dtype=x.dtype) * (xc + np.asarray(0.044715, dtype=x.dtype) * xc ** 3))
        return np.asarray(0.5, dtype=x.dtype) * x * (1 + t), (x, t, approximate)
    raise ValueError(f"approximate must be one of {', '.join(GELU_APPROXIMATIONS)}, got {approximate!r}")


def gelu_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """``dx = dout * (Phi(x) + x * phi(x))`` with the normal density ``phi(x) = exp(-x^2 / 2) / sqrt(2 pi)``;

    for the tanh form, ``dx = dout * ((1 + t) / 2 + x / 2 * (1 - t^2) * sqrt(2 / pi) * (1 + 3 * 0.044715 x^2))``.
    """
    x, s, approximate = cache
    xc = np.clip(x, -1e4, 1e4)  # x^2 stays finite; where it is clipped, phi and 1 - t^2 are exactly 0
    one = np.asarray(1, dtype=x.dtype)
    if approximate == "none":
        pdf = np.exp(np.asarray(-0.5, dtype=x.dtype) * xc * xc) * np.asarray(_INV_SQRT_2PI, dtype=x.dtype)
        return dout * (s + x * pdf)
    slope = np.asarray(_SQRT_2_OVER_PI, dtype=x.dtype) * (one + np.asarray(3 * 0.044715, dtype=x.dtype) * xc * xc)
    half = np.asarray(0.5, dtype=x.dtype)
    return dout * (half * (one + s) + half * x * (one - s * s) * slope)
