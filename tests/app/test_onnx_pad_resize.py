"""ONNX Pad that cannot be folded, Resize and Upsample: imported as the engine's ``pad`` and ``upsample`` ops
and checked against onnxruntime (and, for a model exported by torch.onnx.export, against PyTorch).

Outputs must agree within 1e-5 relative to the reference's largest magnitude. Pads and upsampling copy
values, so most cases agree exactly; convolutions add float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")

from app.importers import OnnxImportError, import_onnx
from engine.graph import Graph
from tests.app.onnx_models import Builder, check_against_onnxruntime, export_with_torch, run_onnxruntime

RELATIVE = 1e-5


def pads(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def floats(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def check(builder: Builder, output: str, batch: int = 2) -> tuple[dict, dict, dict]:
    return check_against_onnxruntime(builder, output, RELATIVE, batch)


def ops(spec: dict) -> list[str]:
    return [n["op"] for n in spec["nodes"]]


# --- Pad ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, engine_mode", [("reflect", "reflect"), ("edge", "replicate"),
                                               ("constant", "constant")])
@pytest.mark.parametrize("shape, pad_values", [
    ([1, 2, 7], (0, 0, 2, 0, 0, 3)),
    (["N", 3, 5, 6], (0, 0, 1, 2, 0, 0, 3, 1)),
    ([2, 2, 3, 4, 5], (0, 0, 1, 0, 2, 0, 0, 2, 1, 1)),
])
def test_pad_modes_before_a_relu(mode, engine_mode, shape, pad_values):
    """A Pad read by a Relu cannot fold: it becomes a pad node (constant mode pads with 0.75 here)."""
    b = Builder(shape, opset=13)
    inputs = ["x", b.const(pads(*pad_values))] + ([b.const(np.float32(0.75))] if mode == "constant" else [])
    p = b.node("Pad", inputs, name="the_pad", mode=mode)
    spec, _, info = check(b, b.node("Relu", [p]))
    assert ops(spec) == ["pad", "relu"]
    node = spec["nodes"][0]
    assert node["mode"] == engine_mode and node["id"] == "the_pad"
    assert node.get("value", 0.0) == (0.75 if mode == "constant" else 0.0)
    assert info["node_map"]["the_pad"] == ["the_pad"]


def test_pad_opset2_attributes_as_the_output():
    b = Builder([1, 2, 4, 4], opset=9)
    spec, _, info = check(b, b.node("Pad", [b.node("Relu", ["x"])], name="last", pads=[0, 0, 1, 0, 0, 0, 2, 3],
                                    mode="constant", value=-2.0))
    assert ops(spec) == ["relu", "pad"] and spec["nodes"][1]["value"] == -2.0
    assert any("kept as pad node 'last'" in note and "output" in note for note in info["notes"])
    assert info["node_map"]["last"] == ["last"]


def test_pad_opset18_axes_reflect():
    b = Builder(["N", 2, 6, 5], opset=18)
    p = b.node("Pad", ["x", b.const(pads(2, 1)), "", b.const(pads(-1))], mode="reflect")  # W only: before 2, after 1
    spec, _, _ = check(b, b.node("Sigmoid", [p]))
    assert spec["nodes"][0]["padding"] == [[0, 0], [2, 1]]


@pytest.mark.parametrize("reader, attrs", [
    ("Conv", {}),
    ("MaxPool", {"kernel_shape": [3, 3]}),
    ("AveragePool", {"kernel_shape": [3, 3], "count_include_pad": 0}),
])
def test_constant_pad_a_conv_or_pool_cannot_absorb(reader, attrs):
    """Non-zero padding before a Conv, zero padding before a MaxPool of a signed input, and zero padding
    before an AveragePool that does not count padding: a pad node, then the op."""
    b = Builder(["N", 3, 7, 6])
    value = [b.const(np.float32(1.5))] if reader == "Conv" else []
    p = b.node("Pad", ["x", b.const(pads(0, 0, 1, 2, 0, 0, 2, 0)), *value], name="pad1")
    inputs = [p, b.weight((4, 3, 3, 3)), b.weight((4,))] if reader == "Conv" else [p]
    spec, _, info = check(b, b.node(reader, inputs, name="reader", **attrs))
    assert ops(spec)[0] == "pad" and len(spec["nodes"]) == 2
    assert spec["nodes"][1]["padding"] == [[0, 0], [0, 0]]
    assert info["node_map"]["pad1"] == ["pad1"] and info["node_map"]["reader"] == ["reader"]
    assert any("Pad node 'pad1'" in note and "kept as pad node" in note for note in info["notes"])


def test_a_foldable_pad_still_folds_and_a_second_reader_gets_a_pad_node():
    b = Builder(["N", 3, 6, 6])
    p = b.node("Pad", ["x", b.const(pads(0, 0, 1, 1, 0, 0, 1, 1))], name="shared")
    conv = b.node("Conv", [p, b.weight((3, 3, 3, 3)), b.weight((3,))], name="conv", pads=[1, 1, 1, 1])  # folds
    other = b.node("Relu", [p], name="relu")                                                            # cannot
    spec, _, info = check(b, b.node("Add", [conv, other], name="sum"))
    assert ops(spec) == ["conv2d", "pad", "relu", "add"]
    assert spec["nodes"][0]["padding"] == [[2, 2], [2, 2]] and spec["nodes"][0]["inputs"] == ["input"]
    assert spec["nodes"][1]["inputs"] == ["input"] and info["node_map"]["shared"] == ["shared"]
    assert any("folded into the padding of 'conv'" in note for note in info["notes"])


def test_nested_pads_of_different_kinds():
    b = Builder([1, 2, 5, 5], opset=13)
    inner = b.node("Pad", ["x", b.const(pads(0, 0, 1, 0, 0, 0, 0, 1)), b.const(np.float32(3.0))], name="inner")
    outer = b.node("Pad", [inner, b.const(pads(0, 0, 2, 2, 0, 0, 2, 2))], name="outer", mode="reflect")
    spec, _, _ = check(b, b.node("Relu", [outer]))
    assert ops(spec) == ["pad", "pad", "relu"]
    assert [n.get("mode") for n in spec["nodes"][:2]] == ["constant", "reflect"]


def test_existing_fold_into_conv_is_unchanged():
    b = Builder(["N", 3, 9, 8], opset=11)
    p = b.node("Pad", ["x", b.const(pads(0, 0, 1, 0, 0, 0, 2, 1))])
    spec, _, _ = check(b, b.node("Conv", [p, b.weight((4, 3, 3, 3)), b.weight((4,))], strides=[2, 2],
                                 pads=[1, 1, 0, 0]))
    assert ops(spec) == ["conv2d"] and spec["nodes"][0]["padding"] == [[2, 2], [1, 1]]


# --- Resize and Upsample --------------------------------------------------------------------------
def _resize(b: Builder, x: str, scales: np.ndarray | None = None, sizes: np.ndarray | None = None, **attrs) -> str:
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"} | attrs
    roi = "" if b.opset >= 13 else b.const(floats())  # optional from opset 13
    scale_input = b.const(scales) if scales is not None else ("" if b.opset >= 13 else b.const(floats()))
    inputs = [x, roi, scale_input] + ([b.const(sizes)] if sizes is not None else [])
    return b.node("Resize", inputs, name="up", **attrs)


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_resize_scales_2d(opset):
    b = Builder(["N", 3, 4, 5], opset=opset)
    spec, _, _ = check(b, b.node("Relu", [_resize(b, b.node("Sigmoid", ["x"]), floats(1, 1, 2, 3))]))
    assert ops(spec) == ["sigmoid", "upsample", "relu"] and spec["nodes"][1]["scale_factor"] == [2, 3]


@pytest.mark.parametrize("shape, scales", [([1, 2, 6], (1, 1, 3)), ([2, 2, 2, 3, 2], (1, 1, 2, 1, 3))])
def test_resize_1d_and_3d(shape, scales):
    b = Builder(shape, opset=13)
    spec, _, _ = check(b, _resize(b, "x", floats(*scales)))
    assert ops(spec) == ["upsample"] and spec["nodes"][0]["scale_factor"] == list(scales[2:])


def test_resize_sizes():
    b = Builder([2, 2, 3, 4], opset=13)
    spec, _, _ = check(b, _resize(b, "x", sizes=pads(2, 2, 6, 16)))
    assert spec["nodes"][0]["scale_factor"] == [2, 4]


def test_resize_sizes_from_the_shape_with_a_dynamic_batch():
    """F.interpolate(size=...) as exporters write it: Shape -> Slice (N, C) -> Concat with the new sizes."""
    b = Builder(["N", 2, 3, 4], opset=13)
    batch_and_channels = b.node("Slice", [b.node("Shape", ["x"]), b.const(pads(0)), b.const(pads(2))])
    sizes = b.node("Concat", [batch_and_channels, b.const(pads(9, 8))], axis=0)
    up = b.node("Resize", ["x", "", "", sizes], mode="nearest", coordinate_transformation_mode="asymmetric",
                nearest_mode="floor")
    spec, _, _ = check(b, up, batch=3)
    assert ops(spec) == ["upsample"] and spec["nodes"][0]["scale_factor"] == [3, 2]


def test_resize_opset18_axes():
    b = Builder([1, 2, 3, 4], opset=18)
    spec, _, _ = check(b, _resize(b, "x", floats(3, 2), axes=[2, 3]), batch=1)
    assert spec["nodes"][0]["scale_factor"] == [3, 2]


def test_resize_opset10():
    b = Builder([1, 2, 3, 4], opset=10)
    spec, _, _ = check(b, b.node("Resize", ["x", b.const(floats(1, 1, 2, 2))], mode="nearest"), batch=1)
    assert ops(spec) == ["upsample"]


@pytest.mark.parametrize("opset", [7, 9])
def test_upsample(opset):
    b = Builder([1, 3, 4, 4], opset=opset)
    if opset < 9:
        up = b.node("Upsample", ["x"], mode="nearest", scales=[1.0, 1.0, 2.0, 3.0])
    else:
        up = b.node("Upsample", ["x", b.const(floats(1, 1, 2, 3))], mode="nearest")
    spec, _, _ = check(b, b.node("Relu", [up]), batch=1)
    assert ops(spec) == ["upsample", "relu"] and spec["nodes"][0]["scale_factor"] == [2, 3]


def test_resize_after_a_pending_pad_and_a_pad_after_resize():
    """A Pad read by a Resize becomes a pad node; an edge Pad after it pads the upsampled map."""
    b = Builder(["N", 2, 3, 3], opset=13)
    p = b.node("Pad", ["x", b.const(pads(0, 0, 1, 1, 0, 0, 1, 1))])
    up = _resize(b, p, floats(1, 1, 2, 2))
    spec, _, _ = check(b, b.node("Pad", [up, b.const(pads(0, 0, 1, 0, 0, 0, 0, 1))], mode="edge"))
    assert ops(spec) == ["pad", "upsample", "pad"]


# --- Resize mode "linear" (F.interpolate linear / bilinear / trilinear) ------------------------------
def _linear(b: Builder, x: str, scales: np.ndarray | None = None, sizes: np.ndarray | None = None,
            coordinates: str = "half_pixel", **attrs) -> str:
    return _resize(b, x, scales, sizes, mode="linear", coordinate_transformation_mode=coordinates, **attrs)


LINEAR_CASES = [  # shape, scales, engine mode
    ([2, 3, 5], (1, 1, 3), "linear"),
    (["N", 3, 4, 5], (1, 1, 2, 3), "bilinear"),
    ([2, 2, 1, 4], (1, 1, 4, 1), "bilinear"),
    ([2, 2, 2, 3, 2], (1, 1, 2, 1, 3), "trilinear"),
]


@pytest.mark.parametrize("coordinates, align_corners", [("half_pixel", False), ("pytorch_half_pixel", False),
                                                        ("align_corners", True)])
@pytest.mark.parametrize("shape, scales, mode", LINEAR_CASES)
def test_resize_linear(shape, scales, mode, coordinates, align_corners):
    b = Builder(shape, opset=13)
    up = _linear(b, b.node("Sigmoid", ["x"]), floats(*scales), coordinates=coordinates)
    spec, _, _ = check(b, b.node("Relu", [up]))
    assert ops(spec) == ["sigmoid", "upsample", "relu"]
    node = spec["nodes"][1]
    assert (node["mode"], node["align_corners"], node["scale_factor"]) == (mode, align_corners, list(scales[2:]))


@pytest.mark.parametrize("opset", [11, 18])
def test_resize_linear_opsets_sizes_and_axes(opset):
    """Opset 11 (roi required) with sizes, and opset 18 with axes and the default coordinates (half_pixel)."""
    b = Builder([2, 2, 3, 4], opset=opset)
    if opset == 11:
        up = _linear(b, "x", sizes=pads(2, 2, 6, 16), coordinates="align_corners")
    else:
        up = b.node("Resize", ["x", "", b.const(floats(3, 2))], name="up", mode="linear", axes=[2, 3])
    spec, _, _ = check(b, up)
    node = spec["nodes"][0]
    assert node["mode"] == "bilinear" and node["scale_factor"] == ([2, 4] if opset == 11 else [3, 2])
    assert node["align_corners"] == (opset == 11)


@pytest.mark.parametrize("coordinates", ["half_pixel", "align_corners"])
@pytest.mark.parametrize("shape, scales, mode", LINEAR_CASES)
def test_resize_linear_antialias_changes_nothing_when_upsampling(shape, scales, mode, coordinates):
    """Opset 18's antialias widens the filter only when downscaling: with whole factors >= 1 onnxruntime gives
    plain linear interpolation, so the node imports as if antialias were 0."""
    b = Builder(shape, opset=18)
    spec, _, _ = check(b, _linear(b, "x", floats(*scales), coordinates=coordinates, antialias=1))
    assert (spec["nodes"][0]["mode"], spec["nodes"][0]["align_corners"]) == (mode, coordinates == "align_corners")


def test_resize_linear_comparison_can_fail():
    """Negative control: align_corners the wrong way round, or nearest instead of linear, fails the tolerance."""
    b = Builder([1, 2, 4, 5], opset=13)
    model = b.build(_linear(b, "x", floats(1, 1, 2, 2)))
    x = b.sample(1)
    reference = run_onnxruntime(model, x)
    spec, params, _ = import_onnx(model)
    tolerance = RELATIVE * np.abs(reference).max()
    assert np.abs(Graph(spec).forward(x, params).output - reference).max() <= tolerance
    for wrong in ({"align_corners": True}, {"mode": "nearest", "align_corners": False}):
        spec["nodes"][0].update(wrong)
        assert np.abs(Graph(spec).forward(x, params).output - reference).max() > tolerance, wrong


@pytest.mark.parametrize("build, message", [
    (lambda b: _resize(b, "x", floats(1, 1, 2, 2), mode="linear"), "mode 'linear'"),
    (lambda b: _linear(b, "x", floats(1, 1, 2, 2), coordinates="asymmetric"),
     "mode 'linear' in Resize with coordinate_transformation_mode 'asymmetric' samples at x_resized / scale"),
    (lambda b: _linear(b, "x", floats(1, 1, 2, 2), coordinates="tf_crop_and_resize"),
     "coordinate_transformation_mode 'tf_crop_and_resize' has no engine equivalent: the engine's upsample takes "
     "mode 'nearest'"),
    (lambda b: _linear(b, "x", floats(1, 1, 2, 2), coordinates="half_pixel_symmetric"),
     "'half_pixel_symmetric' has no engine equivalent"),
    (lambda b: _resize(b, "x", floats(1, 1, 2, 2), mode="cubic"),
     "mode 'cubic' has no engine equivalent: the engine's upsample takes mode 'nearest'"),
    (lambda b: _linear(b, "x", floats(1, 1, 1.5, 2)), "whole factors only"),
    (lambda b: _linear(b, "x", floats(1, 1, 0.5, 0.5), coordinates="align_corners"), "no downsampling"),
    (lambda b: _linear(b, "x", floats(1, 2, 2, 2)), "batch or channel axis"),
    (lambda b: _resize(b, "x", floats(1, 1, 2, 2), coordinate_transformation_mode="half_pixel"),
     "coordinate_transformation_mode 'half_pixel' with nearest_mode 'floor'"),
    (lambda b: _resize(b, "x", floats(1, 1, 2, 2), nearest_mode="round_prefer_floor"),
     "which is coordinate_transformation_mode 'asymmetric' with nearest_mode 'floor'"),
    (lambda b: _resize(b, "x", floats(1, 1, 1.5, 2)), "whole factors only"),
    (lambda b: _resize(b, "x", floats(1, 1, 0.5, 1)), "no downsampling"),
    (lambda b: _resize(b, "x", floats(1, 2, 2, 2)), "batch or channel axis"),
    (lambda b: _resize(b, "x", sizes=pads(1, 3, 12, 12)), "whole factors only"),
    (lambda b: _resize(b, "x", sizes=pads(1, 6, 16, 16)), "batch or channel axis"),
    (lambda b: _resize(b, "x", sizes=pads(2, 3, 16, 16)), "batch or channel axis"),
    (lambda b: b.node("Pad", ["x", b.const(pads(1, 0, 0, 0, 0, 0, 0, 0))]), "batch or channel axis"),
    (lambda b: b.node("Pad", ["x", b.const(pads(0, 0, 0, -1, 0, 0, 0, 0))], mode="edge"), "cropping"),
])
def test_refusals_say_what_is_supported(build, message):
    b = Builder([1, 3, 8, 8], opset=13)
    model = b.build(build(b))
    with pytest.raises(OnnxImportError, match="cannot be imported") as caught:
        import_onnx(model)
    assert message in str(caught.value)


@pytest.mark.parametrize("opset, build, message, runs", [
    (10, lambda b: b.node("Resize", ["x", b.const(floats(1, 1, 2, 2))], mode="linear"),
     "mode 'linear' in Resize-10 (opset 10) samples at x_resized / scale (coordinates 'asymmetric')", True),
    (9, lambda b: b.node("Upsample", ["x", b.const(floats(1, 1, 2, 2))], mode="linear"),
     "mode 'linear' in Upsample (opset 7-9) samples at x_resized / scale", True),
    (7, lambda b: b.node("Upsample", ["x"], mode="linear", scales=[1.0, 1.0, 2.0, 2.0]),
     "coordinate_transformation_mode 'half_pixel' or 'align_corners' (Resize from opset 11", True),
    (9, lambda b: b.node("Upsample", ["x", b.const(floats(1, 1, 2, 2))], mode="bilinear"),
     "mode 'bilinear' has no engine equivalent", False),  # Upsample-1's name: onnxruntime refuses it too
])
def test_asymmetric_linear_is_refused(opset, build, message, runs):
    """Resize-10 and Upsample interpolate at x_resized / scale, which F.interpolate never does: refused, saying
    what would work. (onnxruntime runs them, so the refusal is not for want of a meaning.)"""
    b = Builder([1, 3, 4, 4], opset=opset)
    model = b.build(build(b))
    if runs:
        run_onnxruntime(model, b.sample(1))
    with pytest.raises(OnnxImportError, match="cannot be imported") as caught:
        import_onnx(model)
    assert message in str(caught.value)


# --- a model exported by PyTorch --------------------------------------------------------------
def test_pytorch_export_with_reflection_pad_and_nearest_upsampling(torch_or_skip):
    torch = torch_or_skip
    nn = torch.nn

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pad = nn.ReflectionPad2d((1, 2, 2, 1))
            self.conv = nn.Conv2d(3, 4, 3)
            self.edge = nn.ReplicationPad2d(1)
            self.zero = nn.ZeroPad2d((0, 1, 1, 0))
            self.head = nn.Conv2d(4, 2, 3)

        def forward(self, x):
            y = torch.relu(self.conv(self.pad(x)))
            y = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
            return self.head(self.zero(self.edge(y)))

    torch.manual_seed(0)
    model = Decoder().eval()
    x = torch.randn(2, 3, 6, 7)
    data = export_with_torch(torch, model, x)
    import onnx

    exported = onnx.load_from_string(data)
    assert {"Pad", "Resize", "Conv"} <= {n.op_type for n in exported.graph.node}
    spec, params, _ = import_onnx(data)
    layers = [(n["op"], n.get("mode")) for n in spec["nodes"]]
    assert layers == [("pad", "reflect"), ("conv2d", None), ("relu", None), ("upsample", None),
                      ("pad", "replicate"), ("conv2d", None)]  # the zero pad folds into the head's padding
    mine = Graph(spec).forward(x.numpy(), params, keep_caches=False).output
    with torch.no_grad():
        theirs = model(x).numpy()
    scale = float(np.abs(theirs).max())
    assert np.abs(mine - theirs).max() <= RELATIVE * scale
    assert np.abs(mine - run_onnxruntime(data, x.numpy())).max() <= RELATIVE * scale


@pytest.mark.parametrize("align_corners", [False, True])
def test_pytorch_export_with_bilinear_upsampling(torch_or_skip, align_corners):
    """An FPN-style decoder: F.interpolate(scale_factor=2, mode="bilinear") and a 1D linear branch."""
    torch = torch_or_skip
    nn = torch.nn

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.lateral = nn.Conv2d(3, 4, 1)
            self.head = nn.Conv2d(4, 2, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            y = nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=align_corners)
            y = nn.functional.interpolate(y + self.lateral(x), scale_factor=(3, 2), mode="bilinear",
                                          align_corners=align_corners)
            return self.head(y)

    torch.manual_seed(0)
    model = Decoder().eval()
    x = torch.randn(2, 3, 6, 8)
    data = export_with_torch(torch, model, x)
    import onnx

    exported = onnx.load_from_string(data)
    resizes = [n for n in exported.graph.node if n.op_type == "Resize"]
    written = [{a.name: a.s.decode() for a in n.attribute if a.type == onnx.AttributeProto.STRING} for n in resizes]
    expected = {"align_corners"} if align_corners else {"half_pixel", "pytorch_half_pixel"}  # by exporter version
    assert len(resizes) == 2 and all(w["mode"] == "linear" for w in written)
    assert all(w["coordinate_transformation_mode"] in expected for w in written), written
    spec, params, _ = import_onnx(data)
    ups = [n for n in spec["nodes"] if n["op"] == "upsample"]
    assert [(n["mode"], n["align_corners"], n["scale_factor"]) for n in ups] == [
        ("bilinear", align_corners, [2, 2]), ("bilinear", align_corners, [3, 2])]
    graph = Graph(spec)
    mine = graph.forward(x.numpy(), params, keep_caches=False).output
    with torch.no_grad():
        theirs = model(x).numpy()
    scale = float(np.abs(theirs).max())
    assert mine.shape == theirs.shape == (2, 2, 18, 16)
    assert np.abs(mine - theirs).max() <= RELATIVE * scale
    assert np.abs(mine - run_onnxruntime(data, x.numpy())).max() <= RELATIVE * scale
    np.testing.assert_array_equal(graph.forward(x.numpy(), params).output, mine)


def test_comparison_can_fail():
    """Negative control: the wrong padding mode, or one factor too many, is caught at this tolerance."""
    b = Builder([1, 2, 5, 5], opset=13)
    p = b.node("Pad", ["x", b.const(pads(0, 0, 2, 1, 0, 0, 1, 2))], mode="reflect")
    model = b.build(_resize(b, p, floats(1, 1, 2, 2)))
    x = b.sample(1)
    reference = run_onnxruntime(model, x)
    spec, params, _ = import_onnx(model)
    spec["nodes"][0]["mode"] = "replicate"
    wrong = Graph(spec).forward(x, params).output
    assert np.abs(wrong - reference).max() > RELATIVE * np.abs(reference).max()
    spec["nodes"][0]["mode"] = "reflect"
    np.testing.assert_array_equal(Graph(spec).forward(x, params).output, reference)
