"""Receptive fields of real squeeze-excite architectures (torchvision's MobileNetV3-Small and EfficientNet-B0,
random weights) exported by both of PyTorch's exporters and imported: the gates no longer make them lose their
outlines. Before, 126 of 130 and 248 of 254 nodes were "global" (issue 16); now only the nodes with a single
position are: the gates' branches and the classifier head (58 of 130 and 114 of 254 as imported today)."""

from __future__ import annotations

import math

import pytest

from app.importers.onnx_import import import_onnx
from engine.graph import Graph
from engine.ops.base import GLOBAL
from engine.receptive_field import receptive_fields

torch_zoo = pytest.importorskip("tests.app.torch_zoo", reason="tests/app/torch_zoo.py (the exported models) is absent")

pytestmark = pytest.mark.torch

SE_BLOCKS = {"mobilenet_v3_small": 9, "efficientnet_b0": 16}


def _old_global(graph: Graph) -> set[str]:
    """What the analysis gave before global gates were told apart: global after a GLOBAL op or a global input."""
    found: set[str] = set()
    for node in graph.nodes:
        if node.op.geometry() == GLOBAL or any(i in found for i in node.inputs):
            found.add(node.id)
    return found


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", list(SE_BLOCKS))
def test_a_real_squeeze_excite_network_keeps_its_outlines(torch_or_skip, name, exporter):
    torch = torch_or_skip
    model = torch_zoo.build(name)
    if model is None:
        pytest.skip("torchvision is not installed")
    size = torch_zoo.ARCHITECTURES[name].size
    spec, _, _ = import_onnx(torch_zoo.export(model, torch.randn(1, 3, size, size), exporter))
    graph = Graph(spec)
    rfs = receptive_fields(graph)
    gate_joins = [n.id for n in graph.nodes if rfs[n.id].gates]
    assert len(gate_joins) == SE_BLOCKS[name], gate_joins
    now = {n.id for n in graph.nodes if rfs[n.id].status == "global"}
    single = {n.id for n in graph.nodes if len(n.output_shape) < 3 or math.prod(n.output_shape[-2:]) == 1}
    assert now == single, f"global but with several positions: {sorted(now - single)}; " \
                          f"one position but not global: {sorted(single - now)}"
    assert all(rfs[n.id].status in ("local", "global") for n in graph.nodes)
    # the nodes the old rule kept local are exactly the unmarked local ones (before the first gate); every marked
    # one was global
    old = _old_global(graph)
    unmarked = {n.id for n in graph.nodes if rfs[n.id].status == "local" and not rfs[n.id].global_modulation}
    assert {n.id for n in graph.nodes} - old == unmarked
    assert len(old) > 0.95 * len(graph.nodes) and len(now) < 0.5 * len(graph.nodes), (
        f"{name} ({exporter}): global before {len(old)} of {len(graph.nodes)}, now {len(now)}")
