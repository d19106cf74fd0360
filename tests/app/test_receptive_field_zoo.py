"""Receptive fields of real architectures (torchvision's, random weights) exported by both of PyTorch's exporters
and imported.

Squeeze-excite (MobileNetV3-Small, EfficientNet-B0): the gates no longer make them lose their outlines. Before,
126 of 130 and 248 of 254 nodes were "global" (issue 16); now only the nodes with a single position are: the
gates' branches and the classifier head (58 of 130 and 114 of 254 as imported today).

Channels-last blocks (ConvNeXt-Tiny): layer norm, the per-position linears and GELU between a transpose to
(H, W, C) and one back keep each position's field. Before, 219 of 311 nodes were "global" (90 are constants, one
local, one undefined); now 7 are, the head after the global average pool (opset 13, LayerNorm written out: 403 of
564 before, 15 now).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.importers.onnx_import import import_onnx
from engine.graph import Graph
from engine.ops.base import GLOBAL
from engine.receptive_field import AxisRF, receptive_fields, unit_box

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
    found = torch_zoo.exported(name, exporter)  # shared with test_onnx_zoo.py: exported once
    if found is None:
        pytest.skip("torchvision is not installed")
    spec, _, _ = import_onnx(found[0])
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


#: per export: nodes, constants, "global" before (as the rule below gives, and as the analysis gave: its one other
#: non-constant node was the stem's conv, local, and the transpose after it, undefined) and now
CONVNEXT = {"torchscript": (311, 90, 219, 7), "dynamo": (311, 90, 219, 7), "torchscript-opset13": (564, 159, 403, 15)}


def _channels_last(graph: Graph) -> set[str]:
    """The nodes between a transpose to (H, W, C) and one back, found from the graph's transposes alone."""
    found: set[str] = set()
    for node in graph.nodes:
        perm = node.op.describe().get("perm") if node.op.op == "transpose" else None
        if perm == (1, 2, 0) or (perm is None and any(i in found for i in node.inputs)):
            found.add(node.id)
    return found


@pytest.mark.parametrize("exporter", list(CONVNEXT))
def test_convnext_keeps_its_outlines_through_channels_last_blocks(torch_or_skip, exporter):
    found = torch_zoo.exported("convnext_tiny", exporter)  # shared with test_onnx_zoo.py: exported once
    if found is None:
        pytest.skip("torchvision is not installed")
    spec, params, _ = import_onnx(found[0])
    graph = Graph(spec)
    rfs = receptive_fields(graph)
    statuses = [rfs[n.id].status for n in graph.nodes]
    nodes, constants, before, now = CONVNEXT[exporter]
    assert (len(graph.nodes), statuses.count("constant")) == (nodes, constants)
    assert len(_old_global(graph)) == before
    # global: the head, from the global average pool on
    head: set[str] = set()
    for node in graph.nodes:
        if node.op.op == "global_avg_pool" or any(i in head for i in node.inputs):
            head.add(node.id)
    assert {n.id for n in graph.nodes if rfs[n.id].status == "global"} == head and len(head) == now, (
        f"convnext_tiny ({exporter}): global now {statuses.count('global')}, the head's {len(head)}")
    local = {n.id for n in graph.nodes if rfs[n.id].status == "local"}
    assert len(local) == nodes - constants - now and "undefined" not in statuses
    # channels-last exactly between the transposes (less the head's (1, 1, 768), which is global)
    moved = {n.id for n in graph.nodes if rfs[n.id].position_axes}
    assert moved == _channels_last(graph) - head and all(rfs[m].position_axes == (0, 1) for m in moved)
    # fields by hand: stem 4x4 stride 4; each 7x7 depthwise adds 6·S to r and 3·S to P; each 2x2 stride-2
    # downsample adds S to r and doubles S. Stages of 3, 3, 9 and 3 blocks: r = 4 + 3·24 = 76 (S 4, P 36),
    # 76 + 4 + 3·48 = 224 (S 8, P 108), 224 + 8 + 9·96 = 1096 (S 16, P 540), 1096 + 16 + 3·192 = 1688 (S 32, P 828)
    convs = [n.id for n in graph.nodes if n.op.op == "conv2d"]
    assert len(convs) == 1 + 18 + 3
    assert rfs[convs[0]].axes == (AxisRF(4, 4, 0),) * 2 and rfs[convs[1]].axes == (AxisRF(28, 4, 12),) * 2
    last = [n.id for n in graph.nodes if n.id in local][-1]
    assert rfs[last].axes == (AxisRF(1688, 32, 828),) * 2 and rfs[last].spatial_shape == (2, 2)
    order = [n.id for n in graph.nodes]
    first_block = [n for n in order[order.index(convs[1]):order.index(convs[2])] if rfs[n].status != "constant"]
    assert len([n for n in first_block if n in moved]) >= 7  # LayerNorm (or its parts), 2 MatMuls, 2 biases, GELU
    assert all(rfs[n].axes == (AxisRF(28, 4, 12),) * 2 for n in first_block), first_block
    # the engine's gradient of one unit of the first GELU ((16, 16, 384), channels-last) fills exactly its box
    gelu = next(n.id for n in graph.nodes if n.op.op == "gelu")
    assert gelu in moved
    x = np.random.default_rng(0).normal(size=found[1].shape).astype(np.float32)
    trace = graph.forward(x, params, stop_at=gelu)
    grad = graph.backward(trace, graph.unit_seed(trace, gelu, (8, 5, 7)), params=False).input[0]
    rows, cols = np.nonzero(np.abs(grad).sum(axis=0))
    h, w = unit_box(rfs[gelu], (8, 5, 7)).axes
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (h.start, h.end, w.start, w.end) == (20, 47, 8, 35)
    assert len(rows) == 28 * 28
