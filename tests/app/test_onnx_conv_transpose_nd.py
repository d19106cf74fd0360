"""ONNX ConvTranspose in 1D and 3D: imported as conv_transpose1d / conv_transpose3d and checked against
onnxruntime (strides, asymmetric pads, output_padding, groups, dilation, auto_pad SAME_UPPER)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")

from app.importers import import_onnx
from engine.graph import Graph
from tests.app.onnx_models import Builder, run_onnxruntime


@pytest.mark.parametrize("shape, kernel, attrs", [
    (["N", 4, 7], (4, 3, 3), {"strides": [2], "pads": [1, 0], "output_padding": [1]}),
    (["N", 4, 3, 4, 3], (4, 2, 2, 3, 2), {"strides": [2, 1, 2], "group": 2}),
    (["N", 2, 5], (2, 3, 4), {"dilations": [2], "auto_pad": "SAME_UPPER", "strides": [2]}),
])
def test_conv_transpose_1d_and_3d_import_and_match_onnxruntime(shape, kernel, attrs):
    """1D and 3D ConvTranspose become conv_transpose1d / conv_transpose3d, equal to onnxruntime within 1e-5."""
    b = Builder(shape)
    out_channels = kernel[1] * attrs.get("group", 1)
    y = b.node("ConvTranspose", ["x", b.weight(kernel), b.weight((out_channels,))], **attrs)
    data = b.build(y)
    spec, params, _ = import_onnx(data)
    assert [n["op"] for n in spec["nodes"]] == [f"conv_transpose{len(shape) - 2}d"]
    x = b.sample()
    reference = run_onnxruntime(data, x)
    mine = Graph(spec).forward(x, params).output
    assert mine.shape == reference.shape
    assert np.abs(mine - reference).max() <= 1e-5 * np.abs(reference).max()
