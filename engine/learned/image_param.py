"""The picture feature visualisation optimises, as Lucid draws it: a Fourier spectrum, decorrelated colours, a sigmoid.

Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017 (https://distill.pub/2017/feature-visualization/),
section "Preconditioning and Parameterization", and Lucid's implementation (github.com/tensorflow/lucid,
``lucid/optvis/param/spatial.py: fft_image`` and ``lucid/optvis/param/color.py: to_valid_rgb``). Gradient ascent on
the pixels themselves finds high-frequency noise; describing the image by its Fourier coefficients scaled by
1/frequency makes every frequency equally easy to change, so the steps whiten the gradient and the result is smoother.

The chain, one forward/backward pair per link (``C`` channels, an ``H × W`` image, ``F = W // 2 + 1``)::

    spectrum (2, C, H, F)   real and imaginary parts, the parameters Adam changes
      -- fft_image -->      t (C, H, W) = irfft2(scale * (re + i im)) / 4, scale = sqrt(H W) / max(f, 1 / max(H, W))
      -- decorrelate -->    for RGB: every pixel's colour vector times Lucid's colour matrix (ImageNet's colour
                            correlations), so a step changes luminance and chroma, not R, G and B separately
      -- sigmoid -->        pixels (C, H, W) in (0, 1)
      -- normalise -->      the model's input: (1 - p if invert else p) - mean) / std per channel

The inverse FFT's backward: ``image = irfft2(X)`` is linear in the real and imaginary parts of X, and its adjoint is
``dX = m * rfft2(dimage) / (H W)`` with ``m = 2`` for the columns that stand for two conjugate frequencies
(``0 < l < W / 2``) and ``m = 1`` for the zero-frequency column (and, for even W, the Nyquist column ``l = W / 2``),
whose imaginary parts the inverse transform ignores: their gradient is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.layers.activation import sigmoid_backward, sigmoid_forward

#: Lucid's ``color_correlation_svd_sqrt``: the square root of ImageNet's 3 × 3 colour covariance (by an SVD);
#: rows are R, G, B, columns the decorrelated axes (luminance first). Lucid normalises it by its largest column norm.
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02],
                                       [0.27, 0.00, -0.05],
                                       [0.27, -0.09, 0.03]])
COLOR_MATRIX = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
#: Lucid divides the image by 4 after the inverse FFT ("is that a magic constant?", its source asks): with the
#: initial spectrum's standard deviation 0.01 the starting picture is a faint grey noise around 0.5
FFT_OUTPUT_SCALE = 0.25
#: Lucid's standard deviation of the initial spectrum
INIT_SD = 0.01


# --- the Fourier parametrisation ---------------------------------------------------------------------------

def spectrum_frequencies(height: int, width: int) -> np.ndarray:
    """The frequency (cycles per pixel) of each coefficient of ``rfft2`` of an ``height × width`` image.

    Returns ``(H, W // 2 + 1)``: ``sqrt(fy^2 + fx^2)``, ``fy`` from ``fftfreq(H)``, ``fx`` the first
    ``W // 2 + 1`` of ``fftfreq(W)`` taken as non-negative (the last one is the Nyquist frequency 0.5 for even W).
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.abs(np.fft.fftfreq(width)[: width // 2 + 1])
    return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> np.ndarray:
    """Lucid's per-coefficient scale ``sqrt(H W) / max(f, 1 / max(H, W)) ** decay_power``: ``(H, W // 2 + 1)``.

    ``1 / f`` gives every frequency the same energy per step; the floor ``1 / max(H, W)`` keeps the
    zero frequency finite; ``sqrt(H W)`` undoes ``irfft2``'s ``1 / (H W)`` so the map is near unitary.
    """
    floor = 1.0 / max(height, width)
    return np.sqrt(height * width) / np.maximum(spectrum_frequencies(height, width), floor) ** decay_power


def conjugate_multiplicity(width: int) -> np.ndarray:
    """``m: (W // 2 + 1,)``, how many columns of the full spectrum each ``rfft2`` column stands for (1 or 2)."""
    m = np.full(width // 2 + 1, 2.0)
    m[0] = 1.0
    if width % 2 == 0:
        m[-1] = 1.0  # the Nyquist column is its own conjugate
    return m


def fft_image_forward(spectrum: np.ndarray, height: int, width: int,
                      decay_power: float = 1.0) -> tuple[np.ndarray, Any]:
    """The image a scaled spectrum describes.

    spectrum: (2, C, H, W // 2 + 1), real and imaginary parts
    Returns t: (C, H, W) = ``irfft2(scale * (spectrum[0] + i spectrum[1]), s=(H, W)) * FFT_OUTPUT_SCALE``.
    """
    if spectrum.ndim != 4 or spectrum.shape[0] != 2 or spectrum.shape[2:] != (height, width // 2 + 1):
        raise ValueError(f"spectrum must be (2, C, {height}, {width // 2 + 1}) for a {height} × {width} image, "
                         f"got {list(spectrum.shape)}")
    scale = spectrum_scale(height, width, decay_power)
    coefficients = scale * (spectrum[0] + 1j * spectrum[1])
    image = np.fft.irfft2(coefficients, s=(height, width)) * FFT_OUTPUT_SCALE
    return image.astype(spectrum.dtype, copy=False), (scale, height, width)


def fft_image_backward(dimage: np.ndarray, cache: Any) -> np.ndarray:
    """dimage: (C, H, W) -> dspectrum: (2, C, H, W // 2 + 1) (see the module's docstring for the adjoint)."""
    scale, height, width = cache
    dcoefficients = np.fft.rfft2(dimage) * (conjugate_multiplicity(width) / (height * width))
    dcoefficients *= scale * FFT_OUTPUT_SCALE
    return np.stack([dcoefficients.real, dcoefficients.imag]).astype(dimage.dtype, copy=False)


# --- colour decorrelation ------------------------------------------------------------------------------------

def decorrelate_forward(t: np.ndarray) -> tuple[np.ndarray, Any]:
    """t: (3, H, W) in the decorrelated colour space -> (3, H, W) RGB: ``out[c] = sum_d COLOR_MATRIX[c, d] t[d]``."""
    if t.shape[0] != 3:
        raise ValueError(f"colour decorrelation needs 3 channels, got {t.shape[0]}")
    return np.einsum("cd,dhw->chw", COLOR_MATRIX.astype(t.dtype), t), None


def decorrelate_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """dout: (3, H, W) -> dt: (3, H, W) = ``COLOR_MATRIX.T`` applied to every pixel."""
    return np.einsum("cd,chw->dhw", COLOR_MATRIX.astype(dout.dtype), dout)


# --- the model's normalisation -------------------------------------------------------------------------------

def normalise_forward(pixels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
                      invert: bool = False) -> tuple[np.ndarray, Any]:
    """pixels: (C, H, W) in [0, 1] -> the model's input (C, H, W): ``((1 - p if invert else p) - mean) / std``.

    The same formula as ``Preprocessing.normalize`` (one mean and std per channel, or one for all).
    """
    m = np.asarray(mean, dtype=pixels.dtype).reshape(-1, 1, 1)
    s = np.asarray(std, dtype=pixels.dtype).reshape(-1, 1, 1)
    p = 1 - pixels if invert else pixels
    return (p - m) / s, (s, invert)


def normalise_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    s, invert = cache
    return -dout / s if invert else dout / s


# --- the chain -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageParametrisation:
    """Spectrum -> pixels: ``fft_image``, then ``decorrelate`` (if ``decorrelate_colours``), then sigmoid.

    channels, height, width: the picture's shape; ``decorrelate_colours`` needs 3 channels (RGB).
    """

    channels: int
    height: int
    width: int
    decorrelate_colours: bool = True
    decay_power: float = 1.0

    def __post_init__(self) -> None:
        if self.decorrelate_colours and self.channels != 3:
            raise ValueError(f"colour decorrelation is for RGB pictures (3 channels), not {self.channels}")

    @property
    def spectrum_shape(self) -> tuple[int, int, int, int]:
        return (2, self.channels, self.height, self.width // 2 + 1)

    def initial_spectrum(self, rng: np.random.Generator, sd: float = INIT_SD) -> np.ndarray:
        """Lucid's start: normal noise of standard deviation ``sd`` (the picture is then a faint noise near grey)."""
        return rng.normal(0.0, sd, size=self.spectrum_shape)

    def forward(self, spectrum: np.ndarray) -> tuple[np.ndarray, Any]:
        """spectrum: (2, C, H, W // 2 + 1) -> pixels: (C, H, W) in (0, 1), and the cache for ``backward``."""
        t, fft_cache = fft_image_forward(spectrum, self.height, self.width, self.decay_power)
        colour_cache = None
        if self.decorrelate_colours:
            t, colour_cache = decorrelate_forward(t)
        pixels, sigmoid_cache = sigmoid_forward(t)
        return pixels, (fft_cache, colour_cache, sigmoid_cache)

    def backward(self, dpixels: np.ndarray, cache: Any) -> np.ndarray:
        """dpixels: (C, H, W) -> dspectrum: (2, C, H, W // 2 + 1)."""
        fft_cache, colour_cache, sigmoid_cache = cache
        dt = sigmoid_backward(dpixels, sigmoid_cache)
        if self.decorrelate_colours:
            dt = decorrelate_backward(dt, colour_cache)
        return fft_image_backward(dt, fft_cache)
