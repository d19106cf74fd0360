"""Receptive fields through squeeze-and-excitation: a global gate (one value per channel, computed from the
whole input, the same at every position) leaves the main path's field local and marks the node.

Three kinds of evidence: fields worked out by hand on MobileNetV3-like and EfficientNet-B0-like graphs
(tests/engine/se_graphs.py); the engine's own gradient of one unit, which with the gates held fixed is
non-zero exactly inside the box, and without them everywhere; and the same gradients from PyTorch's autograd.
Negative controls: gates that vary over positions are not global modulations, and a field one too small
disagrees with the gradient.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from engine.graph import INPUT, Graph
from engine.ops.base import GLOBAL, IDENTITY, OP_REGISTRY
from engine.receptive_field import AxisRF, NodeRF, footprints, receptive_fields, unit_box
from tests.engine.se_graphs import efficientnet_b0_like, mobilenet_v3_like, se
from tests.engine.test_receptive_field import _Graph

SQUEEZES = ["gap", "mean"]


def _squeeze_or_skip(squeeze: str) -> None:
    if squeeze == "mean" and "mean" not in OP_REGISTRY:
        pytest.skip("op 'mean' (ONNX ReduceMean) is not registered yet")


def _old_global(graph: Graph) -> set[str]:
    """The nodes the analysis called "global" before gates were told apart: a GLOBAL op, or anything that reads
    a global node (for graphs like these, without undefined or constant nodes)."""
    found: set[str] = set()
    for node in graph.nodes:
        if node.op.geometry() == GLOBAL or any(i in found for i in node.inputs):
            found.add(node.id)
    return found


def _statuses(rfs: dict[str, NodeRF], graph: Graph) -> tuple[int, int, int]:
    """(global, local and modulated, local and not modulated) node counts."""
    fields = [rfs[n.id] for n in graph.nodes]
    return (sum(f.status == "global" for f in fields),
            sum(f.status == "local" and f.global_modulation for f in fields),
            sum(f.status == "local" and not f.global_modulation for f in fields))


# --- one block, by hand -----------------------------------------------------------------------------

@pytest.mark.parametrize("squeeze", SQUEEZES)
@pytest.mark.parametrize("act, gate", [("relu", "hardsigmoid"), ("silu", "sigmoid")])
def test_a_squeeze_excite_block_keeps_the_main_paths_field(squeeze, act, gate):
    """MobileNetV3's SE (ReLU, hardsigmoid) and EfficientNet's (SiLU, sigmoid), squeezed either way."""
    _squeeze_or_skip(squeeze)
    graph = Graph({"input_shape": [3, 20, 20], "nodes": [
        {"id": "stem", "op": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1},  # r 3 S 2 P 1
        {"id": "dw", "op": "conv2d", "out_channels": 8, "kernel_size": 5, "padding": 2, "groups": 8},
        {"id": "act", "op": act},  # r 3 + 4·2 = 11, S 2, P 1 + 2·2 = 5
        *se("se", "act", 8, squeeze, act, gate),
        {"id": "project", "op": "conv2d", "out_channels": 4, "kernel_size": 1},
        {"id": "down", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2},  # r 11 + 2·2 = 15, S 4, P 5
    ]})
    rfs = receptive_fields(graph)
    for node in ["se.mul", "project"]:
        assert rfs[node].status == "local", (node, rfs[node].reason)
        assert rfs[node].axes == (AxisRF(11, 2, 5),) * 2, node
        assert rfs[node].modulated_at == ("se.mul",), node
    assert rfs["down"].axes == (AxisRF(15, 4, 5),) * 2 and rfs["down"].modulated_at == ("se.mul",)
    assert rfs["se.mul"].gates == ("se.gate",) and rfs["project"].gates == ()
    # the gate's branch is global, as every reduction over the spatial axes
    branch = [n.id for n in graph.nodes if n.id.startswith("se.") and n.id != "se.mul"]
    assert all(rfs[n].status == "global" and not rfs[n].global_modulation for n in branch), branch
    # before the gate nothing is modulated
    assert rfs["act"].modulated_at == () and rfs["act"].to_dict()["global_modulation"] is False
    data = rfs["project"].to_dict()
    assert data["status"] == "local" and data["global_modulation"] is True and data["modulated_at"] == ["se.mul"]
    assert [(a["axis"], a["size"], a["stride"], a["padding"]) for a in data["axes"]] == [("H", 11, 2, 5),
                                                                                        ("W", 11, 2, 5)]


def test_a_gate_added_rather_than_multiplied_is_a_modulation_too():
    g = (_Graph((4, 8, 8)).slide("c", k=3, p=1)
         .other("pool", "mean", GLOBAL, ["c"], (4, 1, 1))
         .other("shifted", "add", IDENTITY, ["c", "pool"], (4, 8, 8)))
    rf = receptive_fields(g)["shifted"]
    assert rf.status == "local" and rf.axes[0] == AxisRF(3, 1, 1) and rf.modulated_at == ("shifted",)


@pytest.mark.parametrize("gate_shape", [(4, 1, 1), (1, 1, 1), (1,), (1, 1)])
def test_gates_are_recognised_by_shape_as_numpy_broadcasts_them(gate_shape):
    g = (_Graph((4, 8, 6)).slide("c", k=3, p=1)
         .other("g", "stand-in reduction", GLOBAL, ["c"], gate_shape)
         .other("m", "mul", IDENTITY, ["c", "g"], (4, 8, 6)))
    rf = receptive_fields(g)["m"]
    assert rf.status == "local" and rf.modulated_at == ("m",), gate_shape


# --- negative controls: gates that vary over positions, or nothing to gate ----------------------------

@pytest.mark.parametrize("gate_shape", [(6,), (1, 6), (4, 8, 1), (1, 8, 6)])
def test_a_global_gate_that_varies_over_positions_makes_the_node_global(gate_shape):
    """(6,) broadcasts along W (6 columns), not over channels, as NumPy aligns the last axes; (4, 8, 1) varies
    along H; (1, 8, 6) is a global spatial map."""
    g = (_Graph((4, 8, 6)).slide("c", k=3, p=1)
         .other("g", "linear", GLOBAL, ["c"], gate_shape)
         .other("m", "mul", IDENTITY, ["c", "g"], (4, 8, 6)))
    rf = receptive_fields(g)["m"]
    assert rf.status == "global" and rf.modulated_at == () and "'m' combines its inputs with 'g'" in rf.reason


def test_a_spatial_attention_map_from_a_local_path_is_local_not_a_modulation():
    """CBAM's spatial attention: mean over channels (keepdim), a 7x7 conv, a sigmoid, times x: every position has
    its own gate value, read from a window: the merge takes the larger field, with no global mark."""
    g = (_Graph((4, 16, 16)).slide("c", k=3, p=1)                       # r 3, S 1, P 1
         .other("chmean", "mean", IDENTITY, ["c"], (1, 16, 16))
         .slide("att", k=7, p=3, src="chmean")                           # r 3 + 6 = 9, S 1, P 1 + 3 = 4
         .other("sig", "sigmoid", IDENTITY, ["att"])
         .other("m", "mul", IDENTITY, ["c", "sig"], (4, 16, 16)))
    rf = receptive_fields(g)["m"]
    assert rf.status == "local" and rf.axes == (AxisRF(9, 1, 4),) * 2
    assert rf.modulated_at == () and rf.gates == ()


def test_a_constant_per_channel_scale_is_not_a_global_gate():
    g = (_Graph((4, 8, 8)).slide("c", k=3, p=1)
         .other("k", "constant", IDENTITY, [], (4, 1, 1))
         .other("m", "mul", IDENTITY, ["c", "k"], (4, 8, 8)))
    rf = receptive_fields(g)["m"]
    assert rf.status == "local" and rf.modulated_at == ()


def test_a_single_position_is_global_and_gates_are_not_gated():
    """Where the node has one position (a gate's own branch: pooled average and maximum added, as CBAM's channel
    attention), combining with a global input is global as before; only gates times gates stays global too."""
    g = (_Graph((4, 8, 8)).slide("c", k=3, p=1)
         .other("avg", "mean", GLOBAL, ["c"], (4, 1, 1))
         .slide("whole", k=8, src="c")                                    # one position: r 10, a local field
         .other("both", "add", IDENTITY, ["avg", "whole"], (4, 1, 1))
         .other("twice", "mul", IDENTITY, ["avg", "avg"], (4, 1, 1))
         .other("m", "mul", IDENTITY, ["c", "both"], (4, 8, 8)))
    rfs = receptive_fields(g)
    assert rfs["whole"].status == "local" and rfs["whole"].spatial_shape == (1, 1)
    assert rfs["both"].status == "global" and rfs["twice"].status == "global"
    assert rfs["m"].status == "local" and rfs["m"].modulated_at == ("m",)  # and 'both' gates the main path


# --- propagation ----------------------------------------------------------------------------------------

def test_marks_propagate_through_paths_and_end_at_a_global_node():
    g = (_Graph((4, 16, 16)).slide("c", k=3, p=1)
         .other("g1", "mean", GLOBAL, ["c"], (4, 1, 1))
         .other("m1", "mul", IDENTITY, ["c", "g1"], (4, 16, 16))
         .slide("a", k=3, p=1, src="m1")
         .slide("plain", k=3, p=1, src="c")                              # a path without any gate
         .other("g2", "mean", GLOBAL, ["plain"], (4, 1, 1))
         .other("m2", "mul", IDENTITY, ["plain", "g2"], (4, 16, 16))
         .other("cat", "concat", IDENTITY, ["m2", "plain"], (8, 16, 16))
         .other("sum", "add", IDENTITY, ["a", "m2"], (4, 16, 16))
         .other("head", "global_avg_pool", GLOBAL, ["sum"], (4,)))
    rfs = receptive_fields(g)
    assert rfs["plain"].modulated_at == ()
    assert rfs["cat"].modulated_at == ("m2",)          # some of its channels are gated
    assert rfs["sum"].modulated_at == ("m1", "m2")     # in graph order, though m2 came second in the inputs
    assert rfs["sum"].axes[0] == AxisRF(5, 1, 2) and rfs["sum"].gates == ()
    assert rfs["head"].status == "global" and rfs["head"].modulated_at == ()


@pytest.mark.parametrize("squeeze", SQUEEZES)
def test_mobilenet_v3_like_keeps_its_outlines(squeeze):
    """Counted by hand (tests/engine/se_graphs.py), with k = 6 nodes in an SE's gate branch (5 when ReduceMean
    squeezes): stem 3, b1 3 + (k + 1) + 2, b2 8, b3 9, b4 8 + (k + 1), b5 9 + (k + 1), head 7 (the last 4
    global): 52 + 3k = 70 nodes (67). After b1.se.mul come 45 + 2k.

    Before, b1's branch, b1.se.mul and everything after it were global: k + 1 + 45 + 2k = 64 of 70 (61 of 67).
    Now only the 3 gate branches and the head's 4 are: 3k + 4 = 22 (19); 42 nodes keep their outline with the
    global mark (b1.se.mul and the 45 + 2k after it, less b4's and b5's branches and the head's 4), and the 6
    before the first gate keep it without."""
    _squeeze_or_skip(squeeze)
    graph = Graph(mobilenet_v3_like(squeeze))
    rfs = receptive_fields(graph)
    k = 6 if squeeze == "gap" else 5
    assert len(graph.nodes) == 52 + 3 * k
    old = _old_global(graph)
    assert len(old) == 46 + 3 * k and len(graph.nodes) - len(old) == 6
    assert _statuses(rfs, graph) == (3 * k + 4, 42, 6)
    branch = ["pool", "view", "fc1", "act", "fc2", "gate"] if squeeze == "gap" else ["pool", "fc1", "act", "fc2",
                                                                                     "gate"]
    expected_global = {f"{b}.se.{n}" for b in ("b1", "b4", "b5") for n in branch}
    expected_global |= {"head.pool", "head.fc1", "head.act2", "classifier"}
    assert {n.id for n in graph.nodes if rfs[n.id].status == "global"} == expected_global
    expected = {"b1.se.mul": (AxisRF(7, 4, 3), ("b1.se.mul",)),
                "b2.bn2": (AxisRF(15, 8, 7), ("b1.se.mul",)),
                "b3.add": (AxisRF(31, 8, 15), ("b1.se.mul",)),
                "b4.se.mul": (AxisRF(63, 16, 31), ("b1.se.mul", "b4.se.mul")),
                "head.act": (AxisRF(127, 16, 63), ("b1.se.mul", "b4.se.mul", "b5.se.mul"))}
    for node, (axis, marks) in expected.items():
        assert rfs[node].axes == (axis, axis) and rfs[node].modulated_at == marks, (node, rfs[node])


@pytest.mark.parametrize("squeeze", SQUEEZES)
def test_efficientnet_b0_like_keeps_its_outlines(squeeze):
    """stem 3, b1 3 + (k + 1) + 2, b2 6 + (k + 1) + 2, b3 6 + (k + 1) + 3, head 5 (the last 2 global):
    33 + 3k = 51 nodes (48). After b1.se.mul come 26 + 2k. Before: k + 1 + 26 + 2k = 45 of 51 (42 of 48)
    global. Now 3k + 2 = 20 (17); 25 keep their outline with the global mark, 6 without."""
    _squeeze_or_skip(squeeze)
    graph = Graph(efficientnet_b0_like(squeeze))
    rfs = receptive_fields(graph)
    k = 6 if squeeze == "gap" else 5
    assert len(graph.nodes) == 33 + 3 * k
    assert len(_old_global(graph)) == 27 + 3 * k
    assert _statuses(rfs, graph) == (3 * k + 2, 25, 6)
    assert rfs["b1.se.mul"].axes[0] == AxisRF(7, 2, 3)
    assert rfs["b2.se.mul"].axes[0] == AxisRF(11, 4, 5)
    assert rfs["b3.add"].axes[0] == AxisRF(27, 4, 13)
    assert rfs["head.act"].modulated_at == ("b1.se.mul", "b2.se.mul", "b3.se.mul")


# --- empirically: the engine's gradient of one unit -------------------------------------------------------

def _positive_params(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Positive weights (no cancellation: every position in a window is read), batch norm as the identity."""
    params = {k: np.abs(v).astype(np.float64) * 0.5 + 0.01 for k, v in graph.init_params(seed).items()}
    for name, value in params.items():
        if name.endswith(".running_mean"):
            value[:] = 0
        elif name.endswith(".running_var"):
            value[:] = 1
    return params


def _holding_gates(rfs: dict[str, NodeRF]):
    """A backward rule that passes no gradient into the inputs taken as global gates (they are held fixed)."""
    def rule(node: Any, dout: np.ndarray, trace: Any):
        gates = rfs[node.id].gates
        if not gates:
            return None
        dinputs, _ = node.op.backward(dout, trace.caches[node.id])
        return [None if name in gates else d for name, d in zip(node.inputs, dinputs)]
    return rule


def _support(grad: np.ndarray) -> tuple[int, int, int, int, int]:
    """(first row, last row, first column, last column, count) of the non-zero |gradient| summed over channels."""
    rows, cols = np.nonzero(np.abs(grad).sum(axis=0))
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max()), len(rows)


def _box(rf: NodeRF, index: tuple[int, int]) -> tuple[int, int, int, int, int]:
    h, w = unit_box(rf, index).axes
    return (h.clipped_start, h.clipped_end, w.clipped_start, w.clipped_end,
            (h.clipped_end - h.clipped_start + 1) * (w.clipped_end - w.clipped_start + 1))


@pytest.mark.parametrize("build, nodes", [
    (mobilenet_v3_like, ["b1.se.mul", "b1.project", "b2.bn2", "b3.add", "b4.se.mul"]),
    (efficientnet_b0_like, ["b1.se.mul", "b2.se.mul", "b3.add", "head.act"]),
])
def test_with_the_gates_held_the_gradient_fills_exactly_the_box(build, nodes):
    graph = Graph(build())
    rfs = receptive_fields(graph)
    params = _positive_params(graph)
    trace = graph.forward(np.ones((1, *graph.input_shape)), params)
    size = graph.input_shape[1] * graph.input_shape[2]
    for node in nodes:
        rf = rfs[node]
        assert rf.global_modulation, node
        h, w = rf.spatial_shape
        for index in [(0, 0), (h // 2, w - 1), (h - 1, w // 3)]:
            seed = graph.unit_seed(trace, node, (1, *index))
            held = graph.backward(trace, seed, rule=_holding_gates(rfs), params=False).input[0]
            assert _support(held) == _box(rf, index), (node, index)
            # through the gates the unit depends on every input position: that is what the mark says
            free = graph.backward(trace, seed, params=False).input[0]
            assert _support(free)[-1] == size, (node, index)
    # negative control: one less on H, and the box no longer matches the gradient
    rf = rfs[nodes[-1]]
    wrong = replace(rf, axes=(AxisRF(rf.axes[0].size - 1, rf.axes[0].stride, rf.axes[0].padding), rf.axes[1]))
    seed = graph.unit_seed(trace, nodes[-1], (1, 1, 1))
    held = graph.backward(trace, seed, rule=_holding_gates(rfs), params=False).input[0]
    assert _support(held) == _box(rf, (1, 1)) != _box(wrong, (1, 1))


def test_the_held_gradient_of_a_spatial_attention_is_not_boxed_by_the_main_path():
    """Negative control for 'gates': a spatial map from a local path varies over positions, so its own window
    widens the field. Taking it as a gate would draw the main path's 3x3 box; the gradient fills the 7x7 one."""
    graph = Graph({"input_shape": [1, 12, 12], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"id": "att", "op": "conv2d", "out_channels": 1, "kernel_size": 5, "padding": 2},
        {"id": "sig", "op": "sigmoid"},
        {"id": "m", "op": "mul", "inputs": ["c", "sig"]}]})
    rfs = receptive_fields(graph)
    assert rfs["m"].axes == (AxisRF(7, 1, 3),) * 2 and not rfs["m"].global_modulation
    params = _positive_params(graph)
    trace = graph.forward(np.ones((1, 1, 12, 12)), params)
    grad = graph.backward(trace, graph.unit_seed(trace, "m", (0, 5, 5)), params=False).input[0]
    assert _support(grad) == _box(rfs["m"], (5, 5)) == (2, 8, 2, 8, 49)
    assert _support(grad) != _box(rfs["c"], (5, 5))


# --- the same gradients from PyTorch ----------------------------------------------------------------------

def _torch_forward(torch: Any, graph: Graph, params: dict[str, np.ndarray], x: Any, detach: set[str]) -> dict:
    """The graph run by PyTorch's functional ops (the ops of se_graphs.py only); ``detach`` holds nodes fixed."""
    F = torch.nn.functional
    p = {k: torch.from_numpy(v) for k, v in params.items()}
    values = {INPUT: x}
    for node in graph.nodes:
        a = node.op.describe()
        xs = [values[i] for i in node.inputs]
        op = node.op.op
        if op == "conv2d":
            out = F.conv2d(xs[0], p[f"{node.id}.weight"], p.get(f"{node.id}.bias"), stride=a["stride"],
                           padding=[pad[0] for pad in a["padding"]], groups=a["groups"])
        elif op == "batch_norm":
            out = F.batch_norm(xs[0], p[f"{node.id}.running_mean"], p[f"{node.id}.running_var"],
                               p[f"{node.id}.weight"], p[f"{node.id}.bias"], training=False, eps=a["eps"])
        elif op in ("relu", "silu", "sigmoid", "hardswish", "hardsigmoid"):
            out = getattr(F, op)(xs[0]) if op != "sigmoid" else torch.sigmoid(xs[0])
        elif op == "global_avg_pool":
            out = xs[0].mean(dim=(2, 3))
        elif op == "mean":
            out = xs[0].mean(dim=tuple(a["dim"]), keepdim=a["keepdim"])
        elif op == "reshape":
            out = xs[0].reshape(xs[0].shape[0], *node.output_shape)
        elif op == "mul":
            out = xs[0] * xs[1]
        elif op == "add":
            out = xs[0] + xs[1]
        elif op == "linear":
            out = F.linear(xs[0], p[f"{node.id}.weight"], p[f"{node.id}.bias"])
        else:
            raise AssertionError(f"no PyTorch form for op {op!r} in this test")
        values[node.id] = out.detach() if node.id in detach else out
    return values


@pytest.mark.torch
@pytest.mark.parametrize("build", [mobilenet_v3_like, efficientnet_b0_like])
@pytest.mark.parametrize("squeeze", SQUEEZES)
def test_torch_autograd_with_detached_gates_fills_the_same_box(torch_or_skip, build, squeeze):
    """Seeded sweep: random positive weights and random units of random modulated nodes. PyTorch's gradient with
    the gates detached is non-zero exactly in the box, and equals the engine's with the gates held."""
    torch = torch_or_skip
    _squeeze_or_skip(squeeze)
    graph = Graph(build(squeeze, size=40))
    rfs = receptive_fields(graph)
    gates = {g for rf in rfs.values() for g in rf.gates}
    modulated = [n.id for n in graph.nodes if rfs[n.id].global_modulation]
    assert len(gates) == 3 and modulated
    rng = np.random.default_rng(5)
    for seed in range(3):
        params = _positive_params(graph, seed)
        x = rng.uniform(0.5, 1.5, (1, *graph.input_shape))
        trace = graph.forward(x, params)
        tx = torch.tensor(x, requires_grad=True)
        values = _torch_forward(torch, graph, params, tx, detach=gates)
        np.testing.assert_allclose(values[graph.output_id].detach().numpy(), trace.activations[graph.output_id],
                                   rtol=1e-10, atol=1e-12, err_msg="forward: mine vs torch")
        for _ in range(4):
            node = modulated[int(rng.integers(len(modulated)))]
            c, h, w = graph.by_id[node].output_shape
            unit = (int(rng.integers(c)), int(rng.integers(h)), int(rng.integers(w)))
            (theirs,) = torch.autograd.grad(values[node][(0, *unit)], tx, retain_graph=True)
            theirs = theirs[0].numpy()
            mine = graph.backward(trace, graph.unit_seed(trace, node, unit), rule=_holding_gates(rfs),
                                  params=False).input[0]
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-15,
                                       err_msg=f"d {node}{list(unit)} / d input, gates held: mine vs torch")
            assert _support(theirs) == _box(rfs[node], unit[1:]), (
                f"{node}{list(unit)}: torch's gradient {_support(theirs)} vs my box {_box(rfs[node], unit[1:])}")


# --- boxes on earlier layers, and the note --------------------------------------------------------------

def test_footprints_follow_the_main_path_not_the_gates_branch():
    """The gate is squeezed from a conv of its own ('side'): a modulated unit depends on all of 'side' through
    the gate, so no box of 'side' is drawn; a global unit later on depends on all of every layer."""
    graph = Graph({"input_shape": [1, 12, 12], "nodes": [
        {"id": "c", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"id": "side", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"id": "pool", "op": "global_avg_pool"},
        {"id": "view", "op": "reshape", "shape": [2, 1, 1]},
        {"id": "gate", "op": "sigmoid"},
        {"id": "m", "op": "mul", "inputs": ["c", "gate"]},
        {"id": "after", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"id": "head", "op": "global_avg_pool"}]})
    rfs = receptive_fields(graph)
    assert rfs["m"].gates == ("gate",) and rfs["after"].axes == (AxisRF(5, 1, 2),) * 2
    # unit (4, 6) of 'after': input rows 2..6, columns 4..8; on c (r 3, S 1, P 1) rows 3..5, columns 5..7
    found = footprints(graph, rfs, "after", (4, 6))
    assert found == {"input": [(2, 6), (4, 8)], "c": [(3, 5), (5, 7)], "m": [(3, 5), (5, 7)], "after": [(4, 4), (6, 6)]}
    whole = footprints(graph, rfs, "head", (0, 0))
    assert whole["side"] == [(0, 11), (0, 11)] and whole["c"] == [(0, 11), (0, 11)]


def test_the_unit_box_says_a_gate_modulates_it():
    graph = Graph(efficientnet_b0_like(size=32))
    rfs = receptive_fields(graph)
    note = unit_box(rfs["b3.add"], (2, 3)).note
    assert "global gate modulates the unit" in note and "joins at 'b3.se.mul', and 2 earlier" in note
    assert "held fixed" in note
    assert "gate" not in unit_box(rfs["b1.act1"], (2, 3)).note
    first = unit_box(rfs["b1.se.mul"], (0, 0)).note   # a corner unit: padding, then the gate
    assert first.startswith("the box extends into the padding") and "joins at 'b1.se.mul')" in first
