"""Elementwise arithmetic (sub, div, pow, sqrt), broadcasting (expand) and matmul as forward/backward pairs.

Two-input functions take arrays that already broadcast together with NumPy's rules (the ops in
``engine.ops.arith`` line them up, batch axis included); each input's gradient is summed back to its
own shape (``unbroadcast``). Values follow IEEE arithmetic and PyTorch where it matters: ``1 / 0`` is
inf, ``sqrt(-1)`` is nan, ``0 ** -1`` is inf, and so are the gradients PyTorch's autograd gives there.
They come without NumPy's RuntimeWarnings, as in PyTorch: a model that divides by zero gives inf
whichever engine runs it.

=======  ======================  ====================================================================
op       forward                 gradient (as PyTorch's autograd computes it)
=======  ======================  ====================================================================
sub      x1 - x2                 dx1 = dout, dx2 = -dout
div      x1 / x2                 dx1 = dout / x2, dx2 = -dout * (x1 / x2) / x2
pow      x ** exponent           0 when exponent == 0, else dout * exponent * x ** (exponent - 1)
sqrt     sqrt(x)                 dout / (2 * sqrt(x))  (inf at 0, as in PyTorch)
expand   x broadcast to a shape  dout summed over the broadcast axes
matmul   x1 @ x2                 dx1 = dout @ x2^T, dx2 = x1^T @ dout (over the last two axes)
=======  ======================  ====================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.layers.merge import unbroadcast

# IEEE results (inf, nan) without warnings, as PyTorch gives them
_QUIET = {"divide": "ignore", "invalid": "ignore", "over": "ignore"}


def sub_forward(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = x1 - x2``. Shape: x1, x2 that broadcast together; out: their broadcast shape."""
    return x1 - x2, (x1.shape, x2.shape)


def sub_backward(dout: np.ndarray, cache: Any) -> list[np.ndarray]:
    """``[dx1, dx2]``: ``dout`` and ``-dout``, each summed back to its input's shape."""
    shape1, shape2 = cache
    return [unbroadcast(dout, shape1), -unbroadcast(dout, shape2)]


def div_forward(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = x1 / x2`` (true division; ``x / 0`` is ±inf, ``0 / 0`` nan, as in PyTorch).

    Shape: x1, x2 that broadcast together; out: their broadcast shape.
    """
    with np.errstate(**_QUIET):
        out = x1 / x2
    return out, (x1.shape, x2, out)


def div_backward(dout: np.ndarray, cache: Any) -> list[np.ndarray]:
    """``[dx1, dx2]`` with ``dx1 = dout / x2`` and ``dx2 = -dout * x1 / x2**2``, summed back to each shape.

    ``x1 / x2**2`` is computed as PyTorch does, ``out / x2`` (reusing the forward's quotient).
    """
    shape1, x2, out = cache
    with np.errstate(**_QUIET):
        dx1 = dout / x2
        dx2 = -dout * (out / x2)
    return [unbroadcast(dx1, shape1), unbroadcast(dx2, x2.shape)]


def pow_forward(x: np.ndarray, exponent: float) -> tuple[np.ndarray, Any]:
    """``out = x ** exponent``, as ``torch.pow(x, exponent)``. x: any shape; out: same shape and dtype.

    A negative ``x`` to a fractional power is nan; ``0`` to a negative power is inf.
    """
    return _power(x, exponent), (x, exponent)


def pow_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """``dx = dout * exponent * x ** (exponent - 1)``; exactly 0 when ``exponent == 0`` (PyTorch's rule).

    At ``x = 0`` this is what PyTorch gives: ``dout`` for exponent 1, 0 for exponents above 1, and inf
    (so nan where ``dout`` is 0) for exponents between 0 and 1 and below 0.
    """
    x, exponent = cache
    if exponent == 0:
        return np.zeros_like(x, dtype=np.result_type(x, dout))
    with np.errstate(**_QUIET):
        return dout * (exponent * _power(x, exponent - 1))


def _power(x: np.ndarray, exponent: float) -> np.ndarray:
    """``x ** exponent`` computed as PyTorch computes it, so that the signs of infinities agree.

    PyTorch turns the exponents 0.5, -0.5, -1, -2, 2 and 3 into ``sqrt``, ``1 / sqrt``, ``1 / x``, ``1 / (x * x)``,
    ``x * x`` and ``x * x * x``; ``pow`` gives the same numbers except at -0.0, where ``1 / sqrt(-0.0)`` is -inf
    but ``pow(-0.0, -0.5)`` is +inf (C's rule).
    """
    with np.errstate(**_QUIET):
        if exponent == 0.5:
            return np.sqrt(x)
        if exponent == -0.5:
            return 1 / np.sqrt(x)
        if exponent == -1:
            return 1 / x
        if exponent == -2:
            return 1 / (x * x)
        if exponent == 2:
            return x * x
        if exponent == 3:
            return x * x * x
        return np.power(x, exponent)


def sqrt_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = sqrt(x)`` (nan for ``x < 0``, as ``torch.sqrt``). x: any shape; out: same shape and dtype."""
    with np.errstate(**_QUIET):
        out = np.sqrt(x)
    return out, out


def sqrt_inplace(x: np.ndarray) -> np.ndarray:
    """``sqrt_forward`` written into ``x`` (no cache: inference only). Returns ``x``."""
    with np.errstate(**_QUIET):
        return np.sqrt(x, out=x)


def sqrt_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """``dx = dout / (2 * sqrt(x))``, PyTorch's form: inf at ``x = 0`` (nan where ``dout`` is 0 there)."""
    out = cache
    with np.errstate(**_QUIET):
        return dout / (2 * out)


def expand_forward(x: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, Any]:
    """``x`` broadcast to ``shape`` (NumPy's rules, aligned at the last axis), as a read-only view.

    Shape: x: any shape that broadcasts to ``shape``; out: ``shape``. No values are copied: the view
    repeats them with stride 0 along the broadcast axes (``np.broadcast_to``), so expanding (C, 1, 1) to
    (C, 56, 56) costs nothing. It cannot be written to; ``np.array(out)`` makes a writeable copy.
    """
    return np.broadcast_to(x, shape), x.shape


def expand_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """``dx``: ``dout`` summed over the axes ``x`` was broadcast along (and the leading axes it gained)."""
    return unbroadcast(dout, cache)


def matmul_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    """``out = a @ b`` over the last two axes; the leading axes broadcast (``np.matmul`` on stacks).

    Shape:
        a: (*A, P, K); b: (*B, K, M) with A and B broadcasting together; out: (*broadcast(A, B), P, M).

    Both arrays have at least two axes (a vector is a one-row or one-column matrix: the op promotes
    it). When ``b`` is a single matrix shared by everything, ``(1, ..., 1, K, M)``, all of ``a``'s rows
    are multiplied in one BLAS call, ``a.reshape(-1, K) @ b``, rather than one call per leading index.
    """
    if _shared_matrix(a, b):
        rows = a.reshape(-1, a.shape[-1])
        weight = b.reshape(b.shape[-2:])
        return (rows @ weight).reshape(*a.shape[:-1], weight.shape[-1]), (a, b)
    return np.matmul(a, b), (a, b)


def matmul_backward(dout: np.ndarray, cache: Any) -> list[np.ndarray]:
    """``[da, db]``: ``da = dout @ b^T``, ``db = a^T @ dout`` (last two axes), summed back to each shape.

    dout: (*broadcast(A, B), P, M).
    """
    a, b = cache
    if _shared_matrix(a, b):
        weight = b.reshape(b.shape[-2:])
        rows = a.reshape(-1, a.shape[-1])
        drows = dout.reshape(-1, dout.shape[-1])
        da = (drows @ weight.T).reshape(a.shape)
        db = (rows.T @ drows).reshape(b.shape)
        return [da, db]
    da = np.matmul(dout, np.swapaxes(b, -1, -2))
    db = np.matmul(np.swapaxes(a, -1, -2), dout)
    return [unbroadcast(da, a.shape), unbroadcast(db, b.shape)]


def _shared_matrix(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``b`` is one (K, M) matrix for every leading index of ``a``, which keeps all its own."""
    return all(n == 1 for n in b.shape[:-2]) and a.ndim >= b.ndim
