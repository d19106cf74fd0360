"""Receptive fields (Araujo, Norris & Sim, Distill 2019): chains and branches worked out by hand,
and a brute-force check against the gradient of one unit through the real engine.

The hand-worked tests build small graphs from stand-in ops that only declare their geometry (what
``receptive_fields`` reads), so they do not depend on how the conv and pool ops are written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest

from engine.arithmetic import output_size
from engine.errors import EngineError, SpecError
from engine.graph import INPUT, Graph
from engine.ops.base import GLOBAL, IDENTITY, OP_REGISTRY, AxisGeometry
from engine.receptive_field import AxisRF, receptive_fields, unit_box

# --- stand-in graphs -----------------------------------------------------------------------------


@dataclass
class _Op:
    op: str
    geom: Any

    def geometry(self):
        return self.geom


@dataclass
class _Node:
    id: str
    op: _Op
    inputs: list[str]
    output_shape: tuple[int, ...]


class _Graph:
    """Just what receptive_fields reads: input_shape and nodes (id, op.geometry(), inputs, output_shape)."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.input_shape = input_shape
        self.nodes: list[_Node] = []
        self.shapes = {INPUT: input_shape}

    def slide(self, node_id, k, s=1, p=0, d=1, src=None, channels=None, op="conv2d", transposed=False):
        """A conv/pool-like node with the same k, s, p (before and after), d on every spatial axis."""
        src = src or (self.nodes[-1].id if self.nodes else INPUT)
        shape = self.shapes[src]
        kind = "transposed" if transposed else "conv"
        spatial = tuple(output_size(w, k, s, p, d, kind=kind).size for w in shape[1:])
        geom = [AxisGeometry(k, s, p, d, transposed) for _ in spatial]
        return self._add(node_id, op, geom, [src], (channels or shape[0], *spatial))

    def other(self, node_id, op, geom, inputs, output_shape=None):
        return self._add(node_id, op, geom, inputs, output_shape or self.shapes[inputs[0]] if inputs else output_shape)

    def _add(self, node_id, op, geom, inputs, shape):
        self.nodes.append(_Node(node_id, _Op(op, geom), inputs, tuple(shape)))
        self.shapes[node_id] = tuple(shape)
        return self


def rf_of(graph, node_id, axis=0):
    return receptive_fields(graph)[node_id].axes[axis]


# --- chains -----------------------------------------------------------------------------------------


def test_chain_conv_conv_pool_conv_by_hand():
    g = (_Graph((1, 32, 32))
         .slide("c1", k=3, s=1, p=1)      # r = 1 + (3-1)*1 = 3,   S = 1*1 = 1, P = 0 + 1*1 = 1
         .slide("c2", k=3, s=2, p=1)      # r = 3 + (3-1)*1 = 5,   S = 1*2 = 2, P = 1 + 1*1 = 2
         .slide("p3", k=2, s=2, op="max_pool2d")  # r = 5 + (2-1)*2 = 7, S = 2*2 = 4, P = 2 + 0*2 = 2
         .slide("c4", k=3, s=1, p=1))     # r = 7 + (3-1)*4 = 15,  S = 4*1 = 4, P = 2 + 1*4 = 6
    rfs = receptive_fields(g)
    assert rfs[INPUT].axes == (AxisRF(1, 1, 0), AxisRF(1, 1, 0))
    assert rfs["c1"].axes[0] == AxisRF(3, 1, 1)
    assert rfs["c2"].axes[0] == AxisRF(5, 2, 2)
    assert rfs["p3"].axes[0] == AxisRF(7, 4, 2)
    assert rfs["c4"].axes == (AxisRF(15, 4, 6), AxisRF(15, 4, 6))
    assert rfs["c4"].spatial_shape == (8, 8)  # 32 -> 32 -> 16 -> 8 -> 8


def test_per_axis_values_differ_when_the_geometry_does():
    g = _Graph((1, 16, 20))
    g._add("c", "conv2d", [AxisGeometry(3, 1, 1), AxisGeometry(5, 2, 0)], [INPUT], (4, 16, 8))
    # H: r = 1 + 2 = 3, S = 1, P = 1.  W: r = 1 + 4 = 5, S = 2, P = 0
    assert receptive_fields(g)["c"].axes == (AxisRF(3, 1, 1), AxisRF(5, 2, 0))


def test_dilated_convolutions_by_hand():
    g = (_Graph((1, 30))
         .slide("d2", k=3, d=2, p=2, op="conv1d")   # k' = 2*(3-1)+1 = 5: r = 1 + 4 = 5, S = 1, P = 2
         .slide("d4", k=3, d=4, p=4, op="conv1d")   # k' = 4*(3-1)+1 = 9: r = 5 + 8 = 13, S = 1, P = 2 + 4 = 6
         .slide("s2", k=2, s=2, op="conv1d")        # r = 13 + 1 = 14, S = 2, P = 6
         .slide("d2b", k=3, d=2, p=2, op="conv1d"))  # r = 14 + 4*2 = 22, S = 2, P = 6 + 2*2 = 10
    rfs = receptive_fields(g)
    assert rfs["d2"].axes == (AxisRF(5, 1, 2),)
    assert rfs["d4"].axes == (AxisRF(13, 1, 6),)
    assert rfs["s2"].axes == (AxisRF(14, 2, 6),)
    assert rfs["d2b"].axes == (AxisRF(22, 2, 10),)


def test_identity_ops_keep_the_receptive_field():
    g = _Graph((3, 8, 8)).slide("c", k=3, p=1).other("relu", "relu", IDENTITY, ["c"])
    assert receptive_fields(g)["relu"].axes == receptive_fields(g)["c"].axes


def test_a_channel_shuffle_keeps_the_receptive_field():
    """ShuffleNet's shuffle, reshape (C, H, W) -> (G, C/G, H, W), transpose, reshape back, moves channels only:
    the next convolution's field is the one it has without the shuffle. Reshapes that merge a position into the
    channels are undefined (not local), and flattening stays global (negative controls)."""
    def graph(shuffle: bool) -> Graph:
        nodes = [{"id": "c1", "op": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1}]
        if shuffle:
            nodes += [{"id": "split", "op": "reshape", "shape": [2, 4, 8, 8]},
                      {"id": "swap", "op": "transpose", "perm": [1, 0, 2, 3]},
                      {"id": "merge", "op": "reshape", "shape": [8, 8, 8]}]
        nodes += [{"id": "c2", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}]
        return Graph({"input_shape": [3, 16, 16], "nodes": nodes})

    shuffled, plain = receptive_fields(graph(True)), receptive_fields(graph(False))
    assert shuffled["c2"].status == "local" and shuffled["c2"].axes == plain["c2"].axes
    assert shuffled["swap"].axes == plain["c1"].axes
    rows = Graph({"input_shape": [3, 8, 8], "nodes": [{"id": "r", "op": "reshape", "shape": [24, 8]}]})
    assert receptive_fields(rows, strict=False)["r"].status == "undefined"  # the rows merged into the channels
    flat = Graph({"input_shape": [3, 8, 8], "nodes": [{"id": "f", "op": "reshape", "shape": [192]}]})
    assert receptive_fields(flat)["f"].status == "global"


# --- branches -------------------------------------------------------------------------------------


def test_aligned_two_branch_3x3_and_1x1():
    g = (_Graph((1, 8, 8))
         .slide("a", k=3, p=1, src=INPUT)   # r = 3, S = 1, P = 1: centre offset (3-1)/2 - 1 = 0
         .slide("b", k=1, src=INPUT)        # r = 1, S = 1, P = 0: centre offset 0
         .other("sum", "add", IDENTITY, ["a", "b", INPUT]))  # identity: r = 1, offset 0
    assert receptive_fields(g)["sum"].axes[0] == AxisRF(3, 1, 1)  # aligned: the largest r and its P


def test_aligned_resnet_downsampling_block():
    g = (_Graph((3, 32, 32))
         .slide("stem", k=3, s=2, p=1)                 # r 3, S 2, P 1, offset 1 - 1 = 0
         .slide("m1", k=3, s=2, p=1)                   # r 3 + 2*2 = 7, S 4, P 1 + 1*2 = 3, offset 0
         .slide("m2", k=3, s=1, p=1)                   # r 7 + 2*4 = 15, S 4, P 3 + 1*4 = 7, offset 0
         .slide("short", k=1, s=2, src="stem")         # r 3, S 4, P 1, offset 0
         .other("sum", "add", IDENTITY, ["m2", "short"]))
    rfs = receptive_fields(g)
    assert rfs["short"].axes[0] == AxisRF(3, 4, 1)
    assert rfs["sum"].axes[1] == AxisRF(15, 4, 7)
    # unit 3 along W: start 3*4 - 7 = 5, end 5 + 14 = 19, centre 5 + 7 = 12
    box = unit_box(rfs["sum"], (0, 3)).axes[1]
    assert (box.start, box.end, box.centre) == (5, 19, 12.0)


def test_misaligned_centres_name_the_node():
    g = (_Graph((1, 8, 8))
         .slide("even", k=2, s=2, src=INPUT)   # r 2, S 2, P 0: centres at 2i + 0.5
         .slide("odd", k=1, s=2, src=INPUT)    # r 1, S 2, P 0: centres at 2i
         .other("join", "add", IDENTITY, ["even", "odd"]))
    with pytest.raises(SpecError) as info:
        receptive_fields(g)
    assert info.value.node_id == "join"
    message = str(info.value)
    assert "node 'join'" in message and "not aligned on axis H" in message and "centres differ" in message
    assert "'even' r = 2, S = 2, P = 0: centres at 2·i + 0.5" in message
    assert "'odd' r = 1, S = 2, P = 0: centres at 2·i + 0" in message


def test_misaligned_strides_name_the_node():
    g = (_Graph((1, 8))
         .slide("s2", k=1, s=2, src=INPUT, op="conv1d")   # 8 -> 4, S 2
         .slide("k5", k=5, src=INPUT, op="conv1d")        # 8 -> 4, S 1
         .other("cat", "concat", IDENTITY, ["s2", "k5"], (2, 4)))
    with pytest.raises(SpecError, match=r"node 'cat'.*effective strides differ"):
        receptive_fields(g)


def test_global_nodes_see_the_whole_input():
    g = (_Graph((1, 10, 12)).slide("c", k=3)
         .other("gap", "global_avg_pool", GLOBAL, ["c"], (1,))
         .other("fc", "linear", GLOBAL, ["gap"], (5,))
         .other("out", "softmax", IDENTITY, ["fc"]))
    rfs = receptive_fields(g)
    assert rfs["gap"].status == rfs["fc"].status == rfs["out"].status == "global"
    assert "'gap' (global_avg_pool)" in rfs["out"].reason
    box = unit_box(rfs["fc"], (2,))
    assert [(b.start, b.end, b.centre) for b in box.axes] == [(0, 9, 4.5), (0, 11, 5.5)]


def test_gating_by_a_global_branch_keeps_the_local_field_and_is_marked():
    # squeeze-and-excitation: x * sigmoid(fc(gap(x))): the main path's field, and a mark for the global gate
    # (tests/engine/test_receptive_field_gates.py has the whole story)
    g = (_Graph((4, 8, 8)).slide("c", k=3, p=1)
         .other("gap", "global_avg_pool", GLOBAL, ["c"], (4, 1, 1))
         .other("gate", "mul", IDENTITY, ["c", "gap"], (4, 8, 8)))
    gate = receptive_fields(g)["gate"]
    assert gate.status == "local" and gate.axes == receptive_fields(g)["c"].axes
    assert gate.modulated_at == ("gate",) and gate.gates == ("gap",)


def test_gating_by_a_global_map_that_varies_over_positions_is_global():
    g = (_Graph((4, 8, 8)).slide("c", k=3, p=1)
         .other("map", "reshape", GLOBAL, ["c"], (1, 8, 8))   # e.g. a linear layer's output made a map
         .other("gate", "mul", IDENTITY, ["c", "map"], (4, 8, 8)))
    gate = receptive_fields(g)["gate"]
    assert gate.status == "global" and "'gate' combines its inputs with 'map'" in gate.reason
    assert gate.modulated_at == ()


def test_constant_operands_do_not_count():
    g = (_Graph((2, 6, 6)).slide("c", k=3, p=1)
         .other("k", "constant", IDENTITY, [], (2, 6, 6))
         .other("scaled", "mul", IDENTITY, ["c", "k"]))
    rfs = receptive_fields(g)
    assert rfs["k"].status == "constant"
    assert rfs["scaled"].axes == rfs["c"].axes


def test_broadcast_local_input_is_undefined():
    g = (_Graph((2, 6, 6)).slide("small", k=6)      # 6 -> 1
         .other("big", "relu", IDENTITY, [INPUT])
         .other("m", "mul", IDENTITY, ["big", "small"], (2, 6, 6)))
    rf = receptive_fields(g)["m"]
    assert rf.status == "undefined" and "broadcasts 'small'" in rf.reason


def test_transposed_convolution_is_marked_not_guessed():
    g = (_Graph((1, 4, 4)).slide("c", k=3, p=1)
         .slide("up", k=2, s=2, transposed=True, op="conv_transpose2d")
         .slide("after", k=3, p=1)
         .other("gap", "global_avg_pool", GLOBAL, ["after"], (1,)))
    rfs = receptive_fields(g)
    assert rfs["up"].status == rfs["after"].status == "undefined"
    assert rfs["up"].axes is None
    assert "not covered by Araujo et al." in rfs["after"].reason
    assert rfs["gap"].status == "global"  # mixing every position of 'after' reaches the whole input again
    with pytest.raises(EngineError, match="no receptive-field box"):
        unit_box(rfs["after"], (0, 0))


# --- unit boxes -----------------------------------------------------------------------------------


def test_unit_box_in_padding_and_clipped():
    g = _Graph((1, 9, 9)).slide("stem", k=3, s=2, p=1)   # r 3, S 2, P 1; 9 -> 5
    rf = receptive_fields(g)["stem"]
    first = unit_box(rf, (0, 0))
    # unit 0: start 0*2 - 1 = -1, end -1 + 2 = 1, centre -1 + 1 = 0
    h = first.axes[0]
    assert (h.start, h.end, h.clipped_start, h.clipped_end, h.centre) == (-1, 1, 0, 1, 0.0)
    assert (h.padding_before, h.padding_after) == (1, 0)
    assert "extends into the padding" in first.note
    # unit 4: start 4*2 - 1 = 7, end 9 -> clipped to 8, one position past the end
    last = unit_box(rf, (4, 2)).axes
    assert (last[0].start, last[0].end, last[0].clipped_end, last[0].padding_after) == (7, 9, 8, 1)
    assert (last[1].start, last[1].end, last[1].padding_after) == (3, 5, 0)
    # a full index (channel first) works too
    assert unit_box(rf, (0, 4, 2)).axes == last


def test_unit_box_rejects_bad_indices():
    rf = receptive_fields(_Graph((1, 9, 9)).slide("stem", k=3, s=2, p=1))["stem"]
    with pytest.raises(EngineError, match="outside node 'stem'"):
        unit_box(rf, (5, 0))
    with pytest.raises(EngineError, match="2 spatial indices"):
        unit_box(rf, (1,))


# --- brute force through the real engine ------------------------------------------------------------


def _needs_ops(*names: str) -> None:
    missing = [n for n in names if n not in OP_REGISTRY]
    if missing:
        pytest.skip(f"ops not registered yet: {', '.join(missing)}")


def _random_chain(rng: np.random.Generator) -> tuple[dict, int]:
    """A 1D chain of convs and average pools (all-positive weights read every window position)."""
    size = int(rng.integers(12, 40))
    nodes, w = [], size
    for i in range(int(rng.integers(1, 5))):
        k, s, d = int(rng.integers(1, 5)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
        p = int(rng.integers(0, k // 2 + 1))
        pool = bool(rng.integers(0, 3) == 0)
        if pool:
            d = 1  # PyTorch's avg_pool has no dilation
        if d * (k - 1) + 1 > w + 2 * p:
            continue
        w = output_size(w, k, s, p, d, kind="pool" if pool else "conv").size
        if pool:
            nodes.append({"id": f"n{i}", "op": "avg_pool1d", "kernel_size": k, "stride": s, "padding": p})
        else:
            nodes.append({"id": f"n{i}", "op": "conv1d", "out_channels": 2, "kernel_size": k, "stride": s,
                          "padding": p, "dilation": d})
    if not nodes:
        nodes.append({"id": "n0", "op": "conv1d", "out_channels": 2, "kernel_size": 3})
    return {"input_shape": [1, size], "nodes": nodes}, size


def _gapless(spec: dict) -> bool:
    """Whether a unit reads every position of its box: at each layer the taps, d·S_prev apart, must not
    be further apart than the previous receptive field r_prev (else there are holes between them)."""
    r, S = 1, 1
    for n in spec["nodes"]:
        k, s, d = n["kernel_size"], n["stride"], n.get("dilation", 1)
        if k > 1 and d * S > r:
            return False
        r, S = r + d * (k - 1) * S, S * s
    return True


def test_box_equals_support_of_the_gradient_of_one_unit():
    _needs_ops("conv1d", "avg_pool1d")
    from engine.graph import Graph

    rng = np.random.default_rng(7)
    gapless = 0
    for _ in range(30):
        spec, size = _random_chain(rng)
        graph = Graph(spec)
        params = {k: np.abs(v) + 0.1 for k, v in graph.init_params(1).items()}
        trace = graph.forward(np.ones((1, 1, size)), params)
        rf = receptive_fields(graph)[graph.output_id]
        for i in {0, rf.spatial_shape[0] // 2, rf.spatial_shape[0] - 1}:
            grads = graph.backward(trace, graph.unit_seed(trace, graph.output_id, (0, i)))
            read = np.flatnonzero(grads.input[0, 0])  # positive weights and inputs: no cancellation
            box = unit_box(rf, (i,)).axes[0]
            assert read.min() >= box.clipped_start and read.max() <= box.clipped_end, (spec, i, box, read)
            # the box's two ends are always read (first tap of first taps, last of last) when inside the input
            if box.start >= 0:
                assert read.min() == box.start, (spec, i, box, read)
            if box.end < size:
                assert read.max() == box.end, (spec, i, box, read)
            if _gapless(spec):
                assert list(read) == list(range(box.clipped_start, box.clipped_end + 1)), (spec, i, box, read)
        gapless += _gapless(spec)
    assert 5 <= gapless <= 25  # both kinds of chain were exercised


def test_brute_force_2d_conv_pool_chain():
    _needs_ops("conv2d", "avg_pool2d")
    from engine.graph import Graph

    spec = {"input_shape": [1, 13, 11], "nodes": [
        {"id": "c1", "op": "conv2d", "out_channels": 2, "kernel_size": [3, 2], "padding": [[1, 1], [0, 1]]},
        {"id": "p1", "op": "avg_pool2d", "kernel_size": 2, "stride": 2},
        {"id": "c2", "op": "conv2d", "out_channels": 1, "kernel_size": 3, "stride": [1, 2], "padding": 1}]}
    graph = Graph(spec)
    params = {k: np.abs(v) + 0.1 for k, v in graph.init_params(0).items()}
    trace = graph.forward(np.ones((1, 1, 13, 11)), params)
    rf = receptive_fields(graph)["c2"]
    # H: c1 k3 p1 -> r 3, S 1, P 1; pool k2 s2 -> r 4, S 2, P 1; c2 k3 p1 -> r 4 + 2*2 = 8, S 2, P 1 + 2 = 3
    # W: c1 k2 p(0,1) -> r 2, S 1, P 0; pool -> r 3, S 2, P 0; c2 k3 s2 p1 -> r 3 + 4 = 7, S 4, P 0 + 2 = 2
    assert rf.axes == (AxisRF(8, 2, 3), AxisRF(7, 4, 2))
    for index in [(0, 0), (3, 1), (5, 2)]:
        grads = graph.backward(trace, graph.unit_seed(trace, "c2", (0, *index)))
        rows, cols = np.nonzero(grads.input[0, 0])
        h, w = unit_box(rf, index).axes
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (
            h.clipped_start, h.clipped_end, w.clipped_start, w.clipped_end), index
        assert len(rows) == (h.clipped_end - h.clipped_start + 1) * (w.clipped_end - w.clipped_start + 1)
    # negative control: a receptive field one too small on H gives a box the gradient disagrees with
    wrong = replace(rf, axes=(AxisRF(7, 2, 3), rf.axes[1]))
    grads = graph.backward(trace, graph.unit_seed(trace, "c2", (0, 3, 1)))
    rows, _ = np.nonzero(grads.input[0, 0])
    h = unit_box(wrong, (3, 1)).axes[0]
    assert (rows.min(), rows.max()) != (h.clipped_start, h.clipped_end)


def test_real_graph_transposed_and_global_ops():
    _needs_ops("conv2d", "conv_transpose2d", "linear", "flatten")
    from engine.graph import Graph

    graph = Graph({"input_shape": [1, 6, 6], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"id": "up", "op": "conv_transpose2d", "out_channels": 1, "kernel_size": 2, "stride": 2},
        {"id": "flat", "op": "flatten", "inputs": ["c"]},
        {"id": "fc", "op": "linear", "out_features": 3}]})
    rfs = receptive_fields(graph)
    assert rfs["c"].axes == (AxisRF(3, 1, 1), AxisRF(3, 1, 1))
    assert rfs["up"].status == "undefined"
    assert rfs["flat"].status == rfs["fc"].status == "global"


def test_brute_force_aligned_residual_block():
    _needs_ops("conv2d", "add")
    from engine.graph import Graph

    graph = Graph({"input_shape": [1, 12, 12], "nodes": [
        {"id": "c1", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},      # r 3, S 1, P 1
        {"id": "a", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1},  # r 5, S 2, P 2
        {"id": "b", "op": "conv2d", "inputs": ["c1"], "out_channels": 2, "kernel_size": 1, "stride": 2},  # r 3 S 2 P 1
        {"id": "sum", "op": "add", "inputs": ["a", "b"]}]})  # offsets (5-1)/2 - 2 = 0 and (3-1)/2 - 1 = 0: r 5
    rf = receptive_fields(graph)["sum"]
    assert rf.axes == (AxisRF(5, 2, 2), AxisRF(5, 2, 2))
    params = {k: np.abs(v) + 0.1 for k, v in graph.init_params(0).items()}
    trace = graph.forward(np.ones((1, 1, 12, 12)), params)
    for index in [(0, 0), (2, 3), (5, 5)]:
        grads = graph.backward(trace, graph.unit_seed(trace, "sum", (1, *index)))
        rows, cols = np.nonzero(grads.input[0, 0])
        h, w = unit_box(rf, index).axes
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (
            h.clipped_start, h.clipped_end, w.clipped_start, w.clipped_end), index


def test_footprints_of_a_unit_on_every_earlier_layer_by_hand():
    from engine.receptive_field import footprints

    # input 10x10 -> conv 3x3 (8x8) -> max pool 2/2 (4x4) -> conv 3x3 (2x2)
    # RF of c2: c1 r=3 S=1 P=0; p1 r = 3 + 1*1 = 4, S=2; c2 r = 4 + 2*2 = 8, S=2, P=0
    # unit (0, 1) of c2 reads input rows 0..7, columns 2..9
    graph = Graph({"input_shape": [1, 10, 10], "nodes": [
        {"id": "c1", "op": "conv2d", "out_channels": 2, "kernel_size": 3},
        {"id": "p1", "op": "max_pool2d", "kernel_size": 2},
        {"id": "c2", "op": "conv2d", "out_channels": 2, "kernel_size": 3}]})
    rfs = receptive_fields(graph)
    found = footprints(graph, rfs, "c2", (0, 1))
    # on p1 its own 3x3 window: rows 0..2, cols 1..3; on c1 the pool doubles it: rows 0..5, cols 2..7
    assert found == {"input": [(0, 7), (2, 9)], "c1": [(0, 5), (2, 7)], "p1": [(0, 2), (1, 3)], "c2": [(0, 0), (1, 1)]}
