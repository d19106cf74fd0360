"""The stride-1 convolution has two fast paths (wide per-sample patch matrices for few output channels, the
grouped patch matrix otherwise): both give the same output and gradients, in 1D, 2D and 3D, dilated and padded."""

from __future__ import annotations

import numpy as np
import pytest

from engine.layers import conv
from engine.layers.fast import wide
from engine.layers.naive import conv_naive

CASES = [
    ((3, 2, 11), (4, 2, 3), ((2, 1),), (2,)),
    ((2, 3, 7, 9), (5, 3, 3, 2), ((1, 0), (2, 2)), (1, 3)),
    ((2, 2, 5, 6, 4), (3, 2, 2, 3, 2), ((1, 0), (0, 1), (1, 1)), (2, 1, 1)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{len(c[0]) - 2}d")
def test_wide_and_grouped_paths_agree(case, monkeypatch):
    x_shape, w_shape, padding, dilation = case
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    stride = (1,) * len(dilation)
    results = {}
    for name, limit in (("wide", 1 << 20), ("grouped", 0)):
        monkeypatch.setattr(wide, "WIDE_MAX_CHANNELS", limit)
        out, cache = conv.conv_forward(x, w, b, stride, padding, dilation, 1)
        dout = np.random.default_rng(5).standard_normal(out.shape)
        results[name] = (out, *conv.conv_backward(dout, cache))
    np.testing.assert_allclose(results["wide"][0], conv_naive(x, w, b, stride, padding, dilation, 1), atol=1e-12)
    for what, mine, theirs in zip(("out", "dx", "dw", "db"), results["wide"], results["grouped"]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12, err_msg=what)
