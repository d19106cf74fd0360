"""The playground refuses numbers whose products or sums would not be finite, with a clear EngineError."""

from __future__ import annotations

import math

import pytest

from engine.errors import EngineError
from engine.playground import MAX_ABS_VALUE, conv_steps, pool_steps


@pytest.mark.parametrize("grid, kernel, bias", [
    ([[10**400, 2.0]], [[1.0]], 0.0),  # beyond float64: was an OverflowError
    ([[1e200, 2.0]], [[1.0]], 0.0),
    ([[1.0, 2.0]], [[1e200]], 0.0),
    ([[1.0, 2.0]], [[1.0]], 10**400),
    ([[1.0, 2.0]], [[1.0]], 1e200),
])
def test_conv_refuses_values_beyond_the_bound(grid, kernel, bias):
    with pytest.raises(EngineError, match="1e\\+150"):
        conv_steps(grid, kernel, bias, 1, 0, 1)


def test_values_at_the_bound_stay_finite():
    result = conv_steps([[MAX_ABS_VALUE] * 32] * 32, [[MAX_ABS_VALUE] * 32] * 32, MAX_ABS_VALUE, 1, 0, 1)
    expected = 32 * 32 * MAX_ABS_VALUE**2  # the bias is lost in rounding at this magnitude
    assert result.output[0][0] == pytest.approx(expected, rel=1e-12) and math.isfinite(result.output[0][0])


def test_pool_refuses_values_beyond_the_bound():
    with pytest.raises(EngineError, match="keep values within"):
        pool_steps([[1e300, 1e300], [1.0, 1.0]], 2, None, 0, 1, kind="avg")
