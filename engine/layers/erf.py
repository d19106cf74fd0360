"""The error function ``erf`` on NumPy arrays, to float64 precision (NumPy has none; ``math.erf`` is scalar).

``erf(x) = 2/sqrt(pi) * integral from 0 to x of exp(-t^2) dt``, which the exact GELU needs:
``gelu(x) = x * Phi(x)`` with the normal CDF ``Phi(x) = (1 + erf(x / sqrt 2)) / 2``.

The method and its coefficients are those of Sun's fdlibm ``s_erf.c`` (1993), which C libraries (and so
``math.erf`` and PyTorch's CPU ``erf``) use; the error is below one unit in the last place. Five ranges of
``|x|``, each with its own rational approximation:

======================  ==========================================================================
``|x| < 0.84375``       ``erf(x) = x + x * P(x^2) / Q(x^2)``
``0.84375 .. 1.25``     ``erf(x) = c + P(s) / Q(s)`` with ``s = |x| - 1`` and ``c = 0.84506291151``
``1.25 .. 1/0.35``      ``erf(x) = 1 - exp(-x^2 - 0.5625 + R(1/x^2) / S(1/x^2)) / |x|``
``1/0.35 .. 6``         the same with other coefficients R, S
``|x| >= 6``            ``erf(x) = 1`` (erfc(6) = 2e-17 is below float64's resolution near 1)
======================  ==========================================================================

and ``erf(-x) = -erf(x)``. In the exponential ranges ``x^2`` is split as ``z^2 - (z - x)(z + x)`` with
``z`` the high half of ``x``'s bits, so that ``exp(-x^2)`` carries no rounding error from squaring.
The loop ``np.vectorize(math.erf)`` is the obviously correct reference; tests compare the two.
"""

from __future__ import annotations

import numpy as np

# erf on [0, 0.84375]: x + x * P(x^2) / Q(x^2)
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
# erf on [0.84375, 1.25]: c + P(s) / Q(s), s = x - 1
_ERX = 8.45062911510467529297e-01
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
# erfc on [1.25, 1/0.35]: exp(-x^2 - 0.5625 + R(1/x^2) / S(1/x^2)) / x
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
# erfc on [1/0.35, 6]
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)


def _poly(coefficients: tuple[float, ...], t: np.ndarray) -> np.ndarray:
    """``c0 + c1 t + c2 t^2 + ...`` by Horner's rule."""
    result = np.full_like(t, coefficients[-1])
    for c in coefficients[-2::-1]:
        result *= t
        result += c
    return result


def _erfc_tail(a: np.ndarray, r: tuple[float, ...], s: tuple[float, ...]) -> np.ndarray:
    """``erfc(a)`` for ``a >= 1.25``: ``exp(-a^2 - 0.5625 + R/S) / a``, with ``a^2`` split exactly."""
    t = 1 / (a * a)
    z = (a.view(np.uint64) & np.uint64(0xFFFFFFFF00000000)).view(np.float64)  # a's high 32 bits
    return np.exp(-z * z - 0.5625) * np.exp((z - a) * (z + a) + _poly(r, t) / _poly(s, t)) / a


def erf(x: np.ndarray) -> np.ndarray:
    """``erf(x)`` elementwise, computed in float64 (a new float64 array of x's shape); NaN stays NaN.

    Most activations lie in the first range, so its formula runs on the whole array (on ``min(|x|, 0.84375)``,
    which keeps it finite) and only the other values are gathered, computed and written back.
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x).ravel()
    out = np.minimum(a, 0.84375)
    t = out * out
    out *= _poly(_PP, t) / _poly(_QQ, t)
    out += a
    rest = np.flatnonzero(a >= 0.84375)  # NaN compares False: it keeps the first range's NaN
    if rest.size:
        b = a[rest]
        r = np.ones_like(b)  # |x| >= 6
        m = b < 1.25
        s = b[m] - 1
        r[m] = _ERX + _poly(_PA, s) / _poly(_QA, s)
        m = (b >= 1.25) & (b < 1 / 0.35)
        r[m] = 1 - _erfc_tail(b[m], _RA, _SA)
        m = (b >= 1 / 0.35) & (b < 6)
        r[m] = 1 - _erfc_tail(b[m], _RB, _SB)
        out[rest] = r
    return np.copysign(out, x.ravel()).reshape(x.shape)
