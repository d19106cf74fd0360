"""Feature visualisation's picture: the Fourier parametrisation, colour decorrelation, the normalisation, the chain.

Each backward pass is checked by central differences with a negative control, and against PyTorch's autograd
(``torch.fft.irfft2``) where torch is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.gradcheck import check_function
from engine.learned import image_param as ip
from engine.models.bundle import Preprocessing

# odd and even widths: the Nyquist column exists only for even widths
SHAPES = [(4, 6), (5, 5), (4, 5), (3, 8)]


# --- frequencies and scale, by hand -------------------------------------------------------------------------------

def test_frequencies_by_hand():
    f = ip.spectrum_frequencies(4, 4)
    # fy = [0, 1/4, -1/2, -1/4] down the rows, fx = [0, 1/4, 1/2] across the columns
    np.testing.assert_allclose(f[:, 0], [0, 0.25, 0.5, 0.25])
    np.testing.assert_allclose(f[0], [0, 0.25, 0.5])
    np.testing.assert_allclose(f[1, 1], np.hypot(0.25, 0.25))
    assert ip.spectrum_frequencies(5, 5).shape == (5, 3)


def test_scale_by_hand():
    s = ip.spectrum_scale(4, 4)
    # sqrt(16) / max(f, 1/4): the zero frequency is floored at 1/4, so it and f = 1/4 both get 4 * 4 = 16
    assert s[0, 0] == pytest.approx(16) and s[0, 1] == pytest.approx(16)
    assert s[0, 2] == pytest.approx(4 / 0.5)
    assert np.allclose(ip.spectrum_scale(4, 4, decay_power=0.0), 4)  # no decay: every frequency alike


def test_conjugate_multiplicity():
    np.testing.assert_array_equal(ip.conjugate_multiplicity(6), [1, 2, 2, 1])
    np.testing.assert_array_equal(ip.conjugate_multiplicity(5), [1, 2, 2])


def test_a_zero_frequency_spectrum_is_a_flat_picture():
    spectrum = np.zeros((2, 1, 4, 3))
    spectrum[0, 0, 0, 0] = 2.0
    image, _ = ip.fft_image_forward(spectrum, 4, 4)
    # irfft2 of a lone DC coefficient a is a / (H W) everywhere: 2 * 16 / 16 * 0.25 = 0.5
    np.testing.assert_allclose(image, 0.5)


def test_one_frequency_is_a_cosine():
    spectrum = np.zeros((2, 1, 4, 3))
    spectrum[0, 0, 0, 1] = 1.0  # fx = 1/4 cycles per pixel along the columns
    image, _ = ip.fft_image_forward(spectrum, 4, 4)
    # X[0, 1] and its conjugate X[0, 3]: 2 cos(2 pi x / 4) * 16 / 16 * 0.25
    np.testing.assert_allclose(image[0], np.tile(0.5 * np.cos(np.pi / 2 * np.arange(4)), (4, 1)), atol=1e-15)


# --- gradient checks ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_fft_image_gradient_check(rng, shape):
    h, w = shape
    spectrum = rng.standard_normal((2, 2, h, w // 2 + 1))
    errors = check_function(lambda s: ip.fft_image_forward(s, h, w)[0],
                            lambda d: (ip.fft_image_backward(d, ip.fft_image_forward(spectrum, h, w)[1]),), [spectrum])
    assert errors[0] < 1e-7, errors


@pytest.mark.parametrize("shape", [(4, 6), (5, 5)])
def test_fft_image_gradient_check_catches_a_missing_conjugate_factor(rng, shape):
    """Negative control: the adjoint without the factor 2 of the columns that stand for two frequencies fails."""
    h, w = shape
    spectrum = rng.standard_normal((2, 1, h, w // 2 + 1))
    scale = ip.spectrum_scale(h, w)

    def wrong(dout):
        d = np.fft.rfft2(dout) / (h * w) * scale * ip.FFT_OUTPUT_SCALE
        return (np.stack([d.real, d.imag]),)

    errors = check_function(lambda s: ip.fft_image_forward(s, h, w)[0], wrong, [spectrum])
    assert errors[0] > 1e-2, errors


def test_decorrelate_gradient_check_and_negative_control(rng):
    t = rng.standard_normal((3, 4, 5))
    assert check_function(lambda a: ip.decorrelate_forward(a)[0],
                          lambda d: (ip.decorrelate_backward(d, None),), [t])[0] < 1e-7
    # the matrix is not symmetric: using it instead of its transpose must fail
    wrong = check_function(lambda a: ip.decorrelate_forward(a)[0],
                           lambda d: (np.einsum("cd,dhw->chw", ip.COLOR_MATRIX, d),), [t])[0]
    assert wrong > 1e-2


def test_colour_matrix_is_lucids_normalised():
    norms = np.linalg.norm(ip.COLOR_MATRIX, axis=0)
    assert norms.max() == pytest.approx(1.0) and np.all(norms <= 1 + 1e-12)
    # the first decorrelated axis is luminance: it moves R, G and B together, nearly equally
    luminance = ip.COLOR_MATRIX[:, 0]
    assert np.all(luminance > 0) and luminance.max() / luminance.min() < 1.05


@pytest.mark.parametrize("invert", [False, True])
def test_normalise_gradient_check_and_negative_control(rng, invert):
    pixels = rng.uniform(size=(3, 3, 4))
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)

    def forward(p):
        return ip.normalise_forward(p, mean, std, invert)[0]

    cache = ip.normalise_forward(pixels, mean, std, invert)[1]
    assert check_function(forward, lambda d: (ip.normalise_backward(d, cache),), [pixels])[0] < 1e-7
    ignoring_invert = check_function(forward, lambda d: (d / np.reshape(std, (-1, 1, 1)),), [pixels])[0]
    assert (ignoring_invert > 0.5) == invert


@pytest.mark.parametrize("invert", [False, True])
def test_normalise_matches_preprocessing(rng, invert):
    """The model's input for a picture is what Preprocessing.normalize makes of the same pixels."""
    prep = Preprocessing(resize=6, crop=6, mean=(0.3, 0.4, 0.5), std=(0.2, 0.25, 0.3), invert=invert)
    image = rng.integers(0, 256, size=(6, 6, 3)).astype(np.uint8)
    mine = ip.normalise_forward(image.transpose(2, 0, 1) / 255.0, prep.mean, prep.std, invert)[0]
    np.testing.assert_allclose(mine, prep.normalize(image)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels,decorrelate", [(3, True), (1, False), (3, False)])
def test_chain_gradient_check(rng, channels, decorrelate):
    image = ip.ImageParametrisation(channels, 5, 6, decorrelate_colours=decorrelate)
    spectrum = rng.standard_normal(image.spectrum_shape) * 0.5
    errors = check_function(lambda s: image.forward(s)[0],
                            lambda d: (image.backward(d, image.forward(spectrum)[1]),), [spectrum])
    assert errors[0] < 1e-7, errors


def test_chain_gradient_check_catches_a_forgotten_sigmoid(rng):
    """Negative control: skipping the sigmoid's derivative in the chain fails."""
    image = ip.ImageParametrisation(3, 4, 4)
    spectrum = rng.standard_normal(image.spectrum_shape)

    def wrong(dout):
        fft_cache = image.forward(spectrum)[1][0]
        return (ip.fft_image_backward(ip.decorrelate_backward(dout, None), fft_cache),)

    assert check_function(lambda s: image.forward(s)[0], wrong, [spectrum])[0] > 1e-2


def test_initial_picture_is_a_faint_noise_near_grey():
    image = ip.ImageParametrisation(3, 32, 32)
    pixels, _ = image.forward(image.initial_spectrum(np.random.default_rng(0)))
    assert pixels.shape == (3, 32, 32)
    assert abs(pixels.mean() - 0.5) < 0.02 and 0 < pixels.std() < 0.05


def test_decorrelation_needs_three_channels():
    with pytest.raises(ValueError, match="3 channels"):
        ip.ImageParametrisation(1, 4, 4, decorrelate_colours=True)


# --- PyTorch ---------------------------------------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("shape", SHAPES)
def test_chain_matches_pytorch(torch_or_skip, rng, shape):
    """torch.fft.irfft2, the colour matrix and torch.sigmoid, differentiated by autograd, give the same picture and
    the same gradient of the spectrum's real and imaginary parts."""
    torch = torch_or_skip
    h, w = shape
    image = ip.ImageParametrisation(3, h, w)
    spectrum = rng.standard_normal(image.spectrum_shape)
    dout = rng.standard_normal((3, h, w))
    pixels, cache = image.forward(spectrum)
    mine = image.backward(dout, cache)

    re = torch.tensor(spectrum[0], requires_grad=True)
    im = torch.tensor(spectrum[1], requires_grad=True)
    scale = torch.tensor(ip.spectrum_scale(h, w))
    t = torch.fft.irfft2(torch.complex(re, im) * scale, s=(h, w)) * ip.FFT_OUTPUT_SCALE
    rgb = torch.einsum("cd,dhw->chw", torch.tensor(ip.COLOR_MATRIX), t)
    theirs = torch.sigmoid(rgb)
    theirs.backward(torch.tensor(dout))
    np.testing.assert_allclose(pixels, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mine[0], re.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mine[1], im.grad.numpy(), rtol=1e-9, atol=1e-12)
