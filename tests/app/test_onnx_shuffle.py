"""ONNX Transpose, Split and Slice on computed tensors (ShuffleNet's channel split and channel shuffle): models built
with onnx.helper against onnxruntime, refusals that say why, and a torch.onnx.export of a ShuffleNetV2-style block
against PyTorch and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from app.importers import OnnxImportError, import_onnx
from engine.graph import Graph
from tests.app.onnx_models import Builder, check_against_onnxruntime, export_with_torch, run_onnxruntime

RELATIVE = 1e-5
INT64_MAX = np.iinfo(np.int64).max


def ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def check(builder: Builder, output: str, batch: int = 2) -> tuple[dict, dict, dict]:
    return check_against_onnxruntime(builder, output, RELATIVE, batch)


def ops(spec: dict) -> list[str]:
    return [n["op"] for n in spec["nodes"]]


# --- Transpose ----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [2, "N"])
def test_channel_shuffle_reshape_transpose_reshape(batch):
    b = Builder([batch, 6, 4, 5])
    y = b.node("Conv", ["x", b.weight((6, 6, 1, 1))])
    grouped = b.node("Reshape", [y, b.const(ints(0, 2, 3, 4, 5))])
    swapped = b.node("Transpose", [grouped], perm=[0, 2, 1, 3, 4], name="shuffle")
    spec, _, info = check(b, b.node("Reshape", [swapped, b.const(ints(-1, 6, 4, 5))]))
    assert ops(spec) == ["conv2d", "reshape", "transpose", "reshape"]
    assert spec["nodes"][2]["perm"] == [1, 0, 2, 3] and info["node_map"]["shuffle"] == ["shuffle"]


@pytest.mark.parametrize("perm", [[0, 1, 3, 2], [0, 3, 1, 2], [0, 2, 3, 1]])
def test_transpose_of_spatial_axes_then_a_conv(perm):
    b = Builder(["N", 3, 4, 5])
    t = b.node("Transpose", [b.node("Relu", ["x"])], perm=perm)
    shape = [[2, 3, 4, 5][p] for p in perm]
    spec, _, _ = check(b, b.node("Conv", [t, b.weight((2, shape[1], 2, 2))]))
    assert ops(spec) == ["relu", "transpose", "conv2d"]


def test_identity_transpose_and_transpose_of_a_constant_add_no_node():
    b = Builder([1, 2, 3])
    constant = b.node("Transpose", [b.const(np.arange(6, dtype=np.float32).reshape(3, 2))], perm=[1, 0])
    same = b.node("Transpose", ["x"], perm=[0, 1, 2])
    spec, _, _ = check(b, b.node("Add", [same, b.node("Unsqueeze", [constant, b.const(ints(0))])]))
    assert ops(spec) == ["constant", "add"]


def test_transpose_after_global_average_pooling_sees_the_onnx_shape():
    b = Builder(["N", 4, 3, 3])
    pooled = b.node("GlobalAveragePool", ["x"])  # (N, 4, 1, 1) in ONNX, (N, 4) in the engine
    spec, _, _ = check(b, b.node("Transpose", [pooled], perm=[0, 2, 3, 1]))
    assert ops(spec)[-1] == "transpose"


# --- Split --------------------------------------------------------------------------------------


def _join(b: Builder, parts: list[str]) -> str:
    """The parts concatenated in another order, so every output and every boundary matters."""
    return b.node("Concat", [parts[-1], *parts[:-1]], axis=1)


@pytest.mark.parametrize("opset, sizes, attrs", [
    (11, [2, 5], {"split": [2, 5]}),   # sizes as an attribute
    (11, [3, 3], {}),                  # equal parts, one per output
    (13, [1, 4, 2], None),             # sizes as an input
    (18, [3, 3, 1], {"num_outputs": 3}),  # ceil(7 / 3) = 3 each, the last smaller
])
def test_split_channels(opset, sizes, attrs):
    channels = 6 if attrs == {} else 7
    b = Builder(["N", channels, 3, 4], opset=opset)
    y = b.node("Relu", [b.node("Conv", ["x", b.weight((channels, channels, 1, 1))])])
    inputs = [y] if attrs is not None else [y, b.const(ints(*sizes))]
    parts = b.node("Split", inputs, outputs=[f"part{i}" for i in range(len(sizes))], axis=1, name="split",
                   **(attrs or {}))
    spec, _, info = check(b, _join(b, parts))
    slices = [n for n in spec["nodes"] if n["op"] == "slice"]
    assert [(n["dim"], n["end"] - n["start"]) for n in slices] == [(1, s) for s in sizes]
    assert info["node_map"]["split"] == [n["id"] for n in slices]


def test_split_along_width_with_negative_axis():
    b = Builder([2, 2, 3, 6], opset=13)
    left, right = b.node("Split", ["x", b.const(ints(4, 2))], outputs=["l", "r"], axis=-1)
    spec, _, _ = check(b, b.node("Concat", [right, left], axis=3))
    assert [n.get("dim") for n in spec["nodes"]] == [3, 3, 3]


def test_split_with_an_unused_output():
    b = Builder(["N", 4, 3, 3], opset=13)
    first, _ = b.node("Split", ["x"], outputs=["a", "b"], axis=1)
    spec, _, _ = check(b, b.node("Relu", [first]))
    assert ops(spec) == ["slice", "relu"]


# --- Slice --------------------------------------------------------------------------------------


@pytest.mark.parametrize("starts, ends, axes, steps, engine_nodes", [
    ((0,), (3,), (1,), None, 1),                            # the first 3 channels (x.chunk's first half)
    ((3,), (INT64_MAX,), (1,), None, 1),                    # the rest, "to the end" as exporters write it
    ((-4, 1), (-1, INT64_MAX), (-2, -1), (1, 2), 2),         # negative starts/ends/axes, a step: a chain of 2
    ((0, 1, 2, 0), (INT64_MAX, 5, 100, 4), (0, 1, 2, 3), (1, 2, 1, 3), 3),  # the whole batch: no node for it
    ((0, -100), (6, 100), (1, 2), None, 0),                 # keeps everything: no node at all
])
def test_slice_on_a_computed_tensor(starts, ends, axes, steps, engine_nodes):
    b = Builder(["N", 6, 5, 7], opset=13)
    y = b.node("Relu", ["x"])
    inputs = [y, b.const(ints(*starts)), b.const(ints(*ends)), b.const(ints(*axes))]
    if steps is not None:
        inputs.append(b.const(ints(*steps)))
    sliced = b.node("Slice", inputs, name="cut")
    spec, _, _ = check(b, b.node("Sigmoid", [sliced]))
    assert ops(spec) == ["relu", *["slice"] * engine_nodes, "sigmoid"]


def test_slice_opset9_attributes():
    b = Builder([1, 4, 6, 6], opset=9)
    sliced = b.node("Slice", ["x"], starts=[1, 2], ends=[3, -1], axes=[1, 3])
    spec, _, _ = check(b, b.node("Relu", [sliced]), batch=1)
    assert [(n["dim"], n["start"], n["end"]) for n in spec["nodes"][:2]] == [(1, 1, 3), (3, 2, 5)]


def test_slice_of_a_constant_still_folds():
    b = Builder([1, 2, 4])
    window = b.node("Slice", [b.const(np.arange(12, dtype=np.float32).reshape(2, 6)), b.const(ints(1)),
                              b.const(ints(5)), b.const(ints(1))])  # (2, 4)
    spec, _, _ = check(b, b.node("Add", ["x", b.node("Unsqueeze", [window, b.const(ints(0))])]), batch=1)
    assert ops(spec) == ["constant", "add"]


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("build, message", [
    (lambda b: b.node("Transpose", ["x"], perm=[1, 0, 2, 3]), "moves the batch axis (axis 0) to position 1"),
    (lambda b: b.node("Transpose", ["x"]), "it has no perm, so it reverses all 4 axes"),
    (lambda b: b.node("Split", ["x"], outputs=["a", "b"])[0], "axis 0 splits the batch axis"),
    (lambda b: b.node("Slice", ["x", b.const(ints(0)), b.const(ints(1)), b.const(ints(0))]),
     "only the axes after the batch can be sliced"),
    (lambda b: b.node("Slice", ["x", b.const(ints(-1)), b.const(ints(-INT64_MAX)), b.const(ints(2)),
                                b.const(ints(-1))]), "runs backwards along the axis"),
    (lambda b: b.node("Slice", ["x", b.const(ints(6)), b.const(ints(8)), b.const(ints(1))]),
     "keep nothing of dim 1"),
])
def test_refusals_say_why(build, message):
    b = Builder(["N", 4, 6, 6], opset=13)
    with pytest.raises(OnnxImportError, match="cannot be imported") as caught:
        import_onnx(b.build(build(b)))
    assert message in str(caught.value)


# --- a ShuffleNetV2 block exported by PyTorch ------------------------------------------------------


@pytest.mark.parametrize("split, opset", [("chunk", 17), ("split", 11), ("split", 13)])
def test_pytorch_export_of_a_shufflenet_v2_block(torch_or_skip, split, opset):
    """torchvision's InvertedResidual (stride 1): channel split, 1x1 conv / depthwise 3x3 conv / 1x1 conv with batch
    norm, concat, channel shuffle of 2 groups; ``torch.split`` with uneven sizes exports as Split."""
    torch = torch_or_skip
    nn = torch.nn

    def conv_bn(c_in, c_out, k, groups=1, relu=True):
        layers = [nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
        return layers + ([nn.ReLU()] if relu else [])

    class Block(nn.Module):
        def __init__(self, channels: int = 8, kept: int = 4) -> None:
            super().__init__()
            self.channels, self.kept = channels, kept
            c = channels - kept
            self.branch = nn.Sequential(*conv_bn(c, c, 1), *conv_bn(c, c, 3, groups=c, relu=False), *conv_bn(c, c, 1))

        def forward(self, x):
            if split == "chunk":
                a, b = x.chunk(2, dim=1)
            else:
                a, b = torch.split(x, [self.kept, self.channels - self.kept], dim=1)  # fixed sizes: a Split
            out = torch.cat((a, self.branch(b)), dim=1)
            n, c, h, w = out.size()
            out = out.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous()  # torchvision's channel_shuffle
            return out.view(n, -1, h, w)

    torch.manual_seed(0)
    model = Block(8, 4 if split == "chunk" else 3)
    for module in model.modules():  # non-trivial statistics, so batch norm's folding is checked too
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(2, 8, 6, 7)
    data = export_with_torch(torch, model, x, opset)
    import onnx

    exported = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert {"Transpose", "Reshape", "Concat", "Split" if split == "split" else "Slice"} <= exported
    spec, params, _ = import_onnx(data)
    graph = Graph(spec)
    assert ops(spec).count("slice") == 2 and ops(spec).count("transpose") == 1
    mine = graph.forward(x.numpy(), params).output
    with torch.no_grad():
        theirs = model(x).numpy()
    scale = float(np.abs(theirs).max())
    assert np.abs(mine - theirs).max() <= RELATIVE * scale
    assert np.abs(mine - run_onnxruntime(data, x.numpy())).max() <= RELATIVE * scale
    np.testing.assert_array_equal(graph.forward(x.numpy(), params, keep_caches=False, keep=()).output, mine)
    # the first half of the channels passes through untouched, to the even channels after the shuffle
    kept = model.kept
    np.testing.assert_allclose(mine[:, 0:2 * kept:2], x.numpy()[:, :kept], rtol=0, atol=0)
