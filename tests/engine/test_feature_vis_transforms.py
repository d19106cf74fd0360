"""Transformation robustness: the affine source points by hand, bilinear sampling's gradient (with a negative
control), and PyTorch's ``F.grid_sample`` (bilinear, zeros padding, align_corners=False) as the reference."""

from __future__ import annotations

import numpy as np
import pytest

from engine.gradcheck import check_function
from engine.learned.transforms import (
    NO_TRANSFORMS,
    RobustnessTransforms,
    affine_source_points,
    bilinear_sample_backward,
    bilinear_sample_forward,
)


def _random_points(rng, height, width, out=(5, 6)):
    """Source points over and around the picture (some outside it, some on exact pixel rows or columns)."""
    sy = rng.uniform(-1.5, height + 0.5, size=out)
    sx = rng.uniform(-1.5, width + 0.5, size=out)
    sy[0, :3] = [0.0, 2.0, height - 1.0]
    return sy, sx


# --- the source points, by hand -------------------------------------------------------------------------------

def test_identity_reads_every_pixel_where_it_is():
    x = np.arange(2 * 4 * 5, dtype=np.float64).reshape(2, 4, 5)
    out, _ = bilinear_sample_forward(x, *affine_source_points(4, 5))
    np.testing.assert_array_equal(out, x)


def test_quarter_turn_is_rot90():
    """90 degrees counter-clockwise as drawn (rows pointing down), as np.rot90; the other way for -90."""
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4)
    out, _ = bilinear_sample_forward(x, *affine_source_points(4, 4, angle=90))
    np.testing.assert_allclose(out[0], np.rot90(x[0]), atol=1e-12)
    out, _ = bilinear_sample_forward(x, *affine_source_points(4, 4, angle=-90))
    np.testing.assert_allclose(out[0], np.rot90(x[0], -1), atol=1e-12)


def test_integer_shift_moves_the_picture_and_fills_zeros():
    x = np.arange(1, 17, dtype=np.float64).reshape(1, 4, 4)
    out, _ = bilinear_sample_forward(x, *affine_source_points(4, 4, shift=(1, -2)))
    expected = np.zeros((4, 4))
    expected[1:, :2] = x[0, :3, 2:]  # one row down, two columns left
    np.testing.assert_array_equal(out[0], expected)


def test_zoom_by_two_about_the_centre():
    sy, sx = affine_source_points(5, 5, scale=2.0)
    # the centre stays; the corner (0, 0) reads halfway to the centre, (1, 1)
    assert (sy[2, 2], sx[2, 2]) == (2.0, 2.0)
    assert (sy[0, 0], sx[0, 0]) == (1.0, 1.0)


def test_halfway_sample_is_the_average_by_hand():
    x = np.array([[[0.0, 4.0], [8.0, 12.0]]])
    out, _ = bilinear_sample_forward(x, np.array([[0.5, 0.0]]), np.array([[0.5, 0.25]]))
    # (0.5, 0.5): the mean of the four, 6; (0, 0.25): 3/4 of 0 and 1/4 of 4 = 1
    np.testing.assert_allclose(out[0], [[6.0, 1.0]])


def test_bad_scale_is_refused():
    with pytest.raises(ValueError, match="scale"):
        affine_source_points(4, 4, scale=0.0)


# --- gradient checks ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 4, 5), (1, 6, 6)])
def test_bilinear_gradient_check(rng, shape):
    x = rng.standard_normal(shape)
    points = _random_points(rng, *shape[1:])
    errors = check_function(lambda a: bilinear_sample_forward(a, *points)[0],
                            lambda d: (bilinear_sample_backward(d, bilinear_sample_forward(x, *points)[1]),), [x])
    assert errors[0] < 1e-7, errors


def test_bilinear_gradient_check_catches_swapped_weights(rng):
    """Negative control: scattering each corner's gradient with another corner's weight must fail."""
    x = rng.standard_normal((2, 5, 5))
    points = _random_points(rng, 5, 5)

    def wrong(dout):
        indices, weights, shape = bilinear_sample_forward(x, *points)[1]
        return (bilinear_sample_backward(dout, (indices, weights[::-1], shape)),)

    errors = check_function(lambda a: bilinear_sample_forward(a, *points)[0], wrong, [x])
    assert errors[0] > 1e-2, errors


def test_float32_stays_float32(rng):
    x = rng.standard_normal((3, 4, 4)).astype(np.float32)
    out, cache = bilinear_sample_forward(x, *affine_source_points(4, 4, angle=10))
    assert out.dtype == np.float32 and bilinear_sample_backward(out, cache).dtype == np.float32


# --- the random transforms -------------------------------------------------------------------------------------

def test_transforms_are_seeded_and_within_their_ranges():
    transforms = RobustnessTransforms()
    first = transforms.sample(np.random.default_rng(7), 32, 32)
    again = transforms.sample(np.random.default_rng(7), 32, 32)
    other = transforms.sample(np.random.default_rng(8), 32, 32)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])
    assert transforms.shift_for(128, 128) == 8 and transforms.shift_for(28, 28) == 2
    # the centre reads |shift| / scale away from itself: at most sqrt(2^2 + 2^2) / 0.9 for 32 × 32;
    # neighbouring pixels read about 1 / scale apart (between 1 / 1.1 and 1 / 0.9)
    rng = np.random.default_rng(0)
    for _ in range(20):
        sy, sx = transforms.sample(rng, 32, 32)
        centre = np.array([sy[15:17, 15:17].mean(), sx[15:17, 15:17].mean()])
        assert np.hypot(*(centre - 15.5)) <= np.sqrt(8) / 0.9 + 1e-9
        step = np.hypot(sy[0, 1] - sy[0, 0], sx[0, 1] - sx[0, 0])
        assert 1 / 1.1 - 1e-9 <= step <= 1 / 0.9 + 1e-9


def test_no_transforms_is_the_identity():
    sy, sx = NO_TRANSFORMS.sample(np.random.default_rng(0), 6, 7)
    x = np.random.default_rng(1).standard_normal((1, 6, 7))
    np.testing.assert_allclose(bilinear_sample_forward(x, sy, sx)[0], x, atol=1e-12)


# --- PyTorch ---------------------------------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("angle,scale,shift", [(0.0, 1.0, (0, 0)), (17.0, 0.93, (2, -3)), (-8.0, 1.1, (-1, 1)),
                                               (90.0, 1.0, (0, 0))])
def test_matches_grid_sample(torch_or_skip, rng, angle, scale, shift):
    """F.grid_sample with align_corners=False puts pixel centres at ((2 i + 1) / n - 1): the same sampler."""
    torch = torch_or_skip
    x = rng.standard_normal((3, 7, 9))
    sy, sx = affine_source_points(7, 9, scale, angle, shift)
    out, cache = bilinear_sample_forward(x, sy, sx)
    dout = rng.standard_normal(out.shape)
    grid = np.stack([(2 * sx + 1) / 9 - 1, (2 * sy + 1) / 7 - 1], axis=-1)[None]
    tx = torch.tensor(x[None], requires_grad=True)
    ref = torch.nn.functional.grid_sample(tx, torch.tensor(grid), mode="bilinear", padding_mode="zeros",
                                          align_corners=False)
    ref.backward(torch.tensor(dout[None]))
    np.testing.assert_allclose(out, ref.detach().numpy()[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bilinear_sample_backward(dout, cache), tx.grad.numpy()[0], rtol=1e-10, atol=1e-12)
