"""explain_unit: hand-worked units, and agreement with the engine's own activations on every unit kind."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import engine.explain.pad
import engine.explain.transposed
import engine.explain.upsample
from engine.errors import ShapeError
from engine.explain import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_TERMS,
    explain_softmax_of_scores,
    explain_unit,
    explainable,
    explainable_ops,
    unit_shape,
)
from engine.explain.upsample import linear_source
from engine.graph import Graph
from engine.layers.upsample import linear_weights
from engine.models.digits import load_classic, load_resnet

EXPLAINED = explainable_ops()


def run(spec, x=None, seed=0, params=None):
    graph = Graph(spec)
    params = graph.init_params(seed) if params is None else params
    if x is None:
        x = np.random.default_rng(seed + 1).standard_normal((1, *spec["input_shape"])).astype(np.float32)
    return graph, params, graph.forward(x, params)


def assert_matches_engine(explanation):
    assert explanation["result"] == pytest.approx(explanation["engine_value"], rel=1e-4, abs=1e-5), explanation["node"]
    for step in explanation["chain"]:
        if "result" in step:
            assert step["result"] == pytest.approx(step["engine_value"], rel=1e-4, abs=1e-5), step["node"]


# --- hand-worked ---------------------------------------------------------------------------------------
def test_convolution_by_hand_with_padding_stride_and_bias():
    # input 1x3x3 = 1..9; kernel 2x2 [[1, 2], [3, 4]], bias 0.5; padding (top 1, bottom 0), (left 0, right 1)
    spec = {"input_shape": [1, 3, 3], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 1, "kernel_size": 2, "stride": 2,
         "padding": [[1, 0], [0, 1]]}]}
    x = np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)
    params = {"conv.weight": np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), "conv.bias": np.array([0.5])}
    graph, params, trace = run(spec, x, params=params)
    # unit (0, 0, 1): rows -1, 0 (row -1 in the padding), cols 2, 3 (col 3 in the padding)
    e = explain_unit(graph, params, trace, "conv", (0, 0, 1))
    assert e["rows"] == [-1, 0] and e["cols"] == [2, 3]
    assert e["row_in_padding"] == [True, False] and e["col_in_padding"] == [False, True]
    (channel,) = e["channels"]
    assert channel["values"] == [[0, 0], [3, 0]]
    assert channel["kernel"] == [[1, 2], [3, 4]]
    assert channel["products"] == [[0, 0], [9, 0]]
    assert channel["sum"] == 9 and channel["running"] == 9
    assert e["total"] == 9 and e["bias"] == 0.5 and e["result"] == 9.5
    assert e["engine_value"] == 9.5
    # unit (0, 1, 0): rows 1, 2, cols 0, 1: 4·1 + 5·2 + 7·3 + 8·4 = 67
    assert explain_unit(graph, params, trace, "conv", (0, 1, 0))["result"] == 67.5


def test_dilated_depthwise_convolution_reads_only_its_own_channel():
    spec = {"input_shape": [3, 5, 5], "nodes": [
        {"id": "dw", "op": "conv2d", "out_channels": 3, "kernel_size": 2, "groups": 3, "dilation": 2, "bias": False}]}
    x = np.arange(75, dtype=np.float64).reshape(1, 3, 5, 5)
    params = {"dw.weight": np.ones((3, 1, 2, 2))}
    graph, params, trace = run(spec, x, params=params)
    e = explain_unit(graph, params, trace, "dw", (2, 1, 0))
    assert [c["channel"] for c in e["channels"]] == [2] and e["group"] == 2
    assert e["rows"] == [1, 3] and e["cols"] == [0, 2]
    assert e["channels"][0]["values"] == [[55, 57], [65, 67]] and e["bias"] == 0 and e["result"] == 244


def test_pooling_by_hand():
    spec = {"input_shape": [1, 3, 3], "nodes": [
        {"id": "max", "op": "max_pool2d", "kernel_size": 2, "stride": 2, "padding": 1}]}
    x = np.array([[[[1.0, -2, 3], [-4, 5, -6], [7, -8, 9]]]]) * -1  # all the maxima lie in the padding's reach
    graph, params, trace = run(spec, x)
    e = explain_unit(graph, params, trace, "max", (0, 1, 1))
    assert e["values"] == [[-5, 6], [8, -9]] and e["argmax"] == [1, 0] and e["result"] == 8
    assert e["running"] == [[-5, 6], [8, 8]]
    corner = explain_unit(graph, params, trace, "max", (0, 0, 0))
    assert corner["values"] == [[None, None], [None, -1]] and corner["result"] == -1  # padding never wins
    assert corner["running"] == [[None, None], [None, -1]]

    for include, divisor in ((True, 4), (False, 1)):
        spec = {"input_shape": [1, 3, 3], "nodes": [
            {"id": "avg", "op": "avg_pool2d", "kernel_size": 2, "stride": 2, "padding": 1,
             "count_include_pad": include}]}
        graph, params, trace = run(spec, x)
        e = explain_unit(graph, params, trace, "avg", (0, 0, 0))
        assert e["values"] == [[0, 0], [0, -1]] and e["divisor"] == divisor and e["result"] == -1 / divisor
        assert e["running"] == [[None, None], [None, -1]] and e["sum"] == -1
        assert_matches_engine(e)


def test_linear_and_softmax_by_hand():
    spec = {"input_shape": [3], "nodes": [{"id": "fc", "op": "linear", "out_features": 2},
                                         {"id": "probs", "op": "softmax"}]}
    params = {"fc.weight": np.array([[1.0, -1, 2], [0, 0, 0]]), "fc.bias": np.array([0.25, math.log(2)])}
    graph, params, trace = run(spec, np.array([[2.0, 3, 0.5]]), params=params)
    e = explain_unit(graph, params, trace, "fc", (0,))
    assert [(t["index"], t["product"]) for t in e["terms"]] == [(1, -3), (0, 2), (2, 1)]  # by |product|
    assert e["total"] == 0 and e["bias"] == 0.25 and e["result"] == 0.25 and e["omitted"]["count"] == 0
    own_softmax = explain_softmax_of_scores(graph, trace, "probs", (1,))  # a softmax node explains itself
    assert own_softmax["input"] == "fc"
    assert own_softmax["result"] == pytest.approx(float(trace.activations["probs"][0, 1]))
    s = explain_unit(graph, params, trace, "probs", (1,))
    # logits 0.25 and ln 2: exps e^(z - ln 2) = e^0.25 / 2 and 1
    assert [x["index"] for x in s["entries"]] == [1, 0] and s["max"] == pytest.approx(math.log(2))
    assert s["exp_sum"] == pytest.approx(1 + math.exp(0.25) / 2)
    assert s["result"] == pytest.approx(1 / (1 + math.exp(0.25) / 2)) == s["engine_value"]


def test_chain_batch_norm_then_relu6_recomputed():
    spec = {"input_shape": [2, 4, 4], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": "same"},
        {"id": "bn", "op": "batch_norm"}, {"id": "act", "op": "relu6"}]}
    graph = Graph(spec)
    params = graph.init_params(0)
    rng = np.random.default_rng(3)
    for name in ("weight", "bias", "running_mean"):
        params[f"bn.{name}"] = rng.standard_normal(3).astype(np.float32) * 3
    params["bn.running_var"] = rng.uniform(0.01, 0.2, 3).astype(np.float32)
    _, _, trace = run(spec, params=params)
    e = explain_unit(graph, params, trace, "conv", (1, 2, 3))
    assert [s["op"] for s in e["chain"]] == ["batch_norm", "relu6"]
    # named as the architecture names them (the page shows these, it keeps no titles of its own)
    assert e["title"] == "Convolution" and [s["title"] for s in e["chain"]] == ["Batch normalisation", "ReLU6"]
    bn = e["chain"][0]
    assert bn["running_var"] == pytest.approx(float(params["bn.running_var"][1])) and bn["eps"] == 1e-5
    assert bn["input_value"] == e["engine_value"]
    assert_matches_engine(e)


def test_errors_say_what_is_wrong():
    graph, params, trace = run({"input_shape": [1, 4, 4], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 3}, {"id": "flat", "op": "flatten"}]})
    with pytest.raises(ShapeError, match=r"outside node 'conv' of shape \[2, 2, 2\]"):
        explain_unit(graph, params, trace, "conv", (0, 2, 0))
    with pytest.raises(ShapeError, match="outside"):
        explain_unit(graph, params, trace, "conv", (0, 1))
    with pytest.raises(ShapeError, match="no node 'nope'"):
        explain_unit(graph, params, trace, "nope", (0,))
    with pytest.raises(ShapeError, match="is a flatten"):
        explain_unit(graph, params, trace, "flat", (0,))


# --- against the engine ----------------------------------------------------------------------------------
def test_every_unit_of_a_random_graph_with_every_explained_op():
    spec = {"input_shape": [4, 9, 8], "nodes": [
        {"id": "c1", "op": "conv2d", "out_channels": 4, "kernel_size": [3, 2], "stride": [2, 1],
         "padding": [[2, 0], [1, 1]], "dilation": [1, 2]},
        {"id": "bn", "op": "batch_norm"}, {"id": "r", "op": "relu"},
        {"id": "g", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "groups": 2, "padding": 1},
        {"id": "mp", "op": "max_pool2d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
        {"id": "ap", "op": "avg_pool2d", "kernel_size": 2, "stride": 1, "padding": 1, "count_include_pad": False},
        {"id": "sm", "op": "spatial_softmax"},
        {"id": "f", "op": "flatten"}, {"id": "fc", "op": "linear", "out_features": 5},
        {"id": "p", "op": "softmax"}]}
    graph, params, trace = run(spec, seed=4)
    params["bn.running_var"][:] = [0.5, 2, 1, 3]
    trace = graph.forward(trace.activations["input"], params)
    explained = explain_every_unit(graph, params, trace)
    # the other views' ops: merges, global and attention pooling, every elementwise op, pad and upsample
    spec = {"input_shape": [3, 4, 4], "nodes": [
        {"id": "a", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"id": "bn", "op": "batch_norm"},
        *({"id": op, "op": op, "inputs": ["bn"]} for op in
          ("relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "identity", "dropout")),
        {"id": "clip", "op": "clip", "min": -0.5, "max": 0.25, "inputs": ["bn"]},
        {"id": "gelu", "op": "gelu", "inputs": ["bn"]},
        {"id": "gelu_tanh", "op": "gelu", "approximate": "tanh", "inputs": ["bn"]},
        {"id": "sqrt", "op": "sqrt", "inputs": ["relu6"]},
        {"id": "cube", "op": "pow", "exponent": 3, "inputs": ["bn"]},
        {"id": "root", "op": "pow", "exponent": 0.5, "inputs": ["relu6"]},
        {"id": "sum", "op": "add", "inputs": ["relu6", "tanh", "clip"]},
        {"id": "prod", "op": "mul", "inputs": ["sigmoid", "silu"]},
        {"id": "score", "op": "conv2d", "out_channels": 1, "kernel_size": 1, "inputs": ["prod"]},
        {"id": "att", "op": "spatial_softmax"},
        {"id": "pooled", "op": "attention_pool", "inputs": ["sum", "att"]},
        {"id": "gap", "op": "global_avg_pool", "inputs": ["hardswish"]},
        {"id": "padded", "op": "pad", "padding": [[1, 2], [2, 0]], "mode": "reflect", "inputs": ["bn"]},
        {"id": "up", "op": "upsample", "scale_factor": 2},
        {"id": "deconv", "op": "conv_transpose2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1,
         "output_padding": 1, "inputs": ["bn"]}]}
    graph, params, trace = run(spec, seed=5)
    params["bn.running_mean"][:] = [0.5, -1, 0.25]
    trace = graph.forward(trace.activations["input"], params)
    explained |= explain_every_unit(graph, params, trace)
    pooled = explain_unit(graph, params, trace, "pooled", (2,))
    assert pooled["inputs"] == ["sum", "att"]
    np.testing.assert_allclose(pooled["weights"], trace.activations["att"][0, 0], rtol=1e-6)
    # the recurrent cells, a unit being (step, unit) whatever the node outputs
    spec = {"input_shape": [4, 3], "nodes": [
        {"id": "rnn", "op": "rnn", "hidden_size": 2, "nonlinearity": "relu"},
        {"id": "lstm", "op": "lstm", "hidden_size": 2, "bidirectional": True, "output": "hidden"},
        {"id": "gru", "op": "gru", "hidden_size": 2, "num_layers": 2, "inputs": ["rnn"]}]}
    graph, params, trace = run(spec, seed=6)
    explained |= explain_every_unit(graph, params, trace)
    assert explained == set(EXPLAINED)


def explain_every_unit(graph, params, trace) -> set[str]:
    explained = set()
    for node in graph.nodes:
        if node.op.op not in EXPLAINED:
            continue
        for index in itertools.product(*(range(n) for n in unit_shape(node))):
            e = explain_unit(graph, params, trace, node.id, index)
            assert "result" in e, node.id
            assert_matches_engine(e)
        explained.add(node.op.op)
    return explained


def test_softmax_of_scores_is_the_prediction():
    graph, _, trace = run({"input_shape": [30], "nodes": [{"id": "fc", "op": "linear", "out_features": 12}]})
    e = explain_softmax_of_scores(graph, trace, "fc", (11,))
    scores = trace.activations["fc"][0].astype(np.float64)
    probabilities = np.exp(scores) / np.exp(scores).sum()
    assert e["result"] == pytest.approx(probabilities[11]) and e["engine_value"] == pytest.approx(probabilities[11])
    shown = [x["index"] for x in e["entries"]]
    top = list(np.argsort(-scores, kind="stable")[:MAX_CLASSES])
    assert shown == (top if 11 in top else [*top, 11])  # the largest scores, and the unit's own
    assert e["count"] == 12 and e["omitted"]["count"] == 12 - len(shown)
    with pytest.raises(ShapeError, match="outside"):
        explain_softmax_of_scores(graph, trace, "fc", (12,))


@pytest.mark.parametrize("load", [load_classic, load_resnet])
def test_digit_models_units_match_the_engine(load):
    bundle = load()
    graph, params = bundle.graph, bundle.params
    x = np.random.default_rng(0).standard_normal((1, *graph.input_shape)).astype(np.float32)
    trace = graph.forward(x, params)
    rng = np.random.default_rng(1)
    checked = 0
    for node in graph.nodes:
        if node.op.op not in EXPLAINED:
            continue
        for _ in range(5):
            index = tuple(int(rng.integers(n)) for n in node.output_shape)
            e = explain_unit(graph, params, trace, node.id, index)
            assert_matches_engine(e)
            checked += 1
    assert checked >= 15


def test_wide_units_are_bounded_and_the_rest_aggregated():
    spec = {"input_shape": [40, 2, 2], "nodes": [
        {"id": "pw", "op": "conv2d", "out_channels": 3, "kernel_size": 1},
        {"id": "f", "op": "flatten", "inputs": ["input"]}, {"id": "fc", "op": "linear", "out_features": 2}]}
    graph, params, trace = run(spec)
    e = explain_unit(graph, params, trace, "pw", (1, 1, 0))
    assert len(e["channels"]) == MAX_CHANNELS and e["omitted"]["count"] == 40 - MAX_CHANNELS and e["omitted"]["note"]
    listed = [abs(c["sum"]) for c in e["channels"]]
    assert min(listed) >= max(abs(s) for s in _all_channel_sums(e, trace, params)[1])
    assert sum(c["sum"] for c in e["channels"]) + e["omitted"]["sum"] == pytest.approx(e["total"])
    assert_matches_engine(e)
    assert e["channels"][-1]["running"] == pytest.approx(sum(c["sum"] for c in e["channels"]))
    fc = explain_unit(graph, params, trace, "fc", (1,))
    assert len(fc["terms"]) == MAX_TERMS and fc["omitted"]["count"] == 160 - MAX_TERMS
    assert sum(t["product"] for t in fc["terms"]) + fc["omitted"]["sum"] == pytest.approx(fc["total"])
    assert_matches_engine(fc)


def _all_channel_sums(e, trace, params):
    """The channel sums of a 1x1 convolution unit, recomputed directly: (listed, the others)."""
    k, y, x = e["index"]
    sums = trace.activations["input"][0][:, y, x].astype(np.float64) * params["pw.weight"][k, :, 0, 0]
    listed = {c["channel"] for c in e["channels"]}
    return [sums[c] for c in listed], [sums[c] for c in range(len(sums)) if c not in listed]


# --- pad and upsample ---------------------------------------------------------------------------------
# input 1x3x4 = 0..11:   0  1  2  3
#                         4  5  6  7
#                         8  9 10 11
def pad_run(mode, padding=((2, 1), (1, 2)), value=0.0):
    spec = {"input_shape": [1, 3, 4], "nodes": [{"id": "p", "op": "pad", "padding": [list(p) for p in padding],
                                                 "mode": mode, "value": value}]}
    return run(spec, np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4))


def test_reflect_pad_by_hand_border_and_inside():
    graph, params, trace = pad_run("reflect")
    # output (0, 5): input position (−2, 4): row −2 mirrors at 0 to 2, column 4 mirrors at 3 to 2: x[2, 2] = 10
    e = explain_unit(graph, params, trace, "p", (0, 0, 5))
    assert e["kind"] == "pad" and e["mode"] == "reflect" and e["padding"] == [[2, 1], [1, 2]]
    assert e["in_border"] is True and e["spatial_shape"] == [3, 4]
    assert [a["rule"] for a in e["axes"]] == ["row −2 → 2 (mirror at 0)", "column 4 → 2 (mirror at 3)"]
    assert [(a["position"], a["source"], a["in_border"]) for a in e["axes"]] == [(-2, 2, True), (4, 2, True)]
    assert e["source"] == [2, 2] and e["input_value"] == 10 and e["result"] == 10 == e["engine_value"]
    assert e["neighbourhood"]["values"][e["neighbourhood"]["source"][0]][e["neighbourhood"]["source"][1]] == 10
    # past the last row: output row 5 is input row 3, mirrored at 2 to 1; column 6 is input column 5 -> 6 - 5 = 1
    e = explain_unit(graph, params, trace, "p", (0, 5, 6))
    assert [a["rule"] for a in e["axes"]] == ["row 3 → 1 (mirror at 2)", "column 5 → 1 (mirror at 3)"]
    assert e["source"] == [1, 1] and e["result"] == 5 == e["engine_value"]
    # inside: output (3, 2) is input (1, 1) itself
    e = explain_unit(graph, params, trace, "p", (0, 3, 2))
    assert e["in_border"] is False and e["source"] == [1, 1] and e["result"] == 5
    assert [a["rule"] for a in e["axes"]] == ["row 1 → 1 (inside)", "column 1 → 1 (inside)"]
    # the neighbourhood: rows and columns within 2 of (1, 1), clipped to the 3x4 map
    assert e["neighbourhood"] == {"rows": [0, 1, 2], "cols": [0, 1, 2, 3], "source": [1, 1],
                                  "values": [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]}


def test_replicate_pad_by_hand_clamps():
    graph, params, trace = pad_run("replicate")
    e = explain_unit(graph, params, trace, "p", (0, 0, 6))  # input (−2, 5): clamped to (0, 3): 3
    assert [a["rule"] for a in e["axes"]] == ["row −2 → 0 (clamped to 0)", "column 5 → 3 (clamped to 3)"]
    assert e["source"] == [0, 3] and e["input_value"] == 3 and e["result"] == 3 == e["engine_value"]
    e = explain_unit(graph, params, trace, "p", (0, 5, 0))  # input (3, −1): clamped to (2, 0): 8
    assert e["source"] == [2, 0] and e["result"] == 8 == e["engine_value"] and e["in_border"] is True
    e = explain_unit(graph, params, trace, "p", (0, 2, 4))  # input (0, 3), inside: 3
    assert e["in_border"] is False and e["source"] == [0, 3] and e["result"] == 3


def test_constant_pad_by_hand_reads_no_input_in_the_border():
    graph, params, trace = pad_run("constant", value=-1.5)
    e = explain_unit(graph, params, trace, "p", (0, 1, 3))  # input (−1, 2): only the row is in the border
    assert e["in_border"] is True and e["value"] == -1.5 and e["result"] == -1.5 == e["engine_value"]
    assert [a["in_border"] for a in e["axes"]] == [True, False]
    assert e["axes"][0]["rule"] == "row −1 → none (in the border: the constant -1.5)"
    assert e["axes"][0]["source"] is None and e["axes"][1]["source"] == 2
    assert "source" not in e and "input_value" not in e
    assert e["neighbourhood"]["source"] is None and e["neighbourhood"]["rows"] == [0, 1, 2]
    e = explain_unit(graph, params, trace, "p", (0, 4, 4))  # input (2, 3), inside: 11
    assert e["in_border"] is False and e["source"] == [2, 3] and e["input_value"] == 11 == e["result"]
    assert e["engine_value"] == 11


def test_every_pad_and_upsample_unit_matches_the_engine():
    spec = {"input_shape": [3, 5, 6], "nodes": [
        {"id": "reflect", "op": "pad", "padding": [[3, 1], [2, 4]], "mode": "reflect"},
        {"id": "replicate", "op": "pad", "padding": [[0, 3], [2, 1]], "mode": "replicate", "inputs": ["input"]},
        {"id": "constant", "op": "pad", "padding": 2, "value": 0.75, "inputs": ["input"]},
        {"id": "up", "op": "upsample", "scale_factor": [2, 3], "inputs": ["reflect"]},
        {"id": "act", "op": "relu"},
        {"id": "smooth", "op": "upsample", "scale_factor": [3, 2], "mode": "bilinear", "inputs": ["input"]},
        {"id": "corners", "op": "upsample", "scale_factor": 2, "mode": "bilinear", "align_corners": True,
         "inputs": ["replicate"]}]}
    graph, params, trace = run(spec, seed=7)
    assert explain_every_unit(graph, params, trace) == {"pad", "upsample", "relu"}
    e = explain_unit(graph, params, trace, "up", (2, 5, 7))
    assert [s["op"] for s in e["chain"]] == ["relu"] and e["chain"][0]["result"] == max(0, e["engine_value"])


def test_pad_and_upsample_explanations_can_fail(monkeypatch):
    """Negative control: an explanation built on the wrong rule disagrees with the engine, and the check says so."""
    graph, params, trace = pad_run("reflect")
    clamp = lambda j, size, mode: min(max(j, 0), size - 1)  # noqa: E731 (the replicate rule, not the mirror)
    monkeypatch.setattr(engine.explain.pad, "source_index", clamp)
    e = explain_unit(graph, params, trace, "p", (0, 0, 5))
    assert e["source"] == [0, 3] and e["result"] == 3 and e["engine_value"] == 10
    with pytest.raises(AssertionError):
        assert_matches_engine(e)
    graph, params, trace = run({"input_shape": [1, 3, 4], "nodes": [{"id": "u", "op": "upsample", "scale_factor": 2}]},
                               np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4))
    e = explain_unit(graph, params, trace, "u", (0, 3, 5))
    assert e["source"] == [1, 2] and e["result"] == 6
    with pytest.raises(AssertionError):  # round(i / s) instead of ⌊i / s⌋ would read row 2, column 3: 11
        assert_matches_engine({**e, "result": float(trace.activations["input"][0, 0, 2, 3])})


def test_upsample_nearest_by_hand():
    spec = {"input_shape": [2, 3, 4], "nodes": [{"id": "u", "op": "upsample", "scale_factor": [2, 3]}]}
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    graph, params, trace = run(spec, x)
    # output (1, 5, 7): ⌊5 / 2⌋ = 2, ⌊7 / 3⌋ = 2: x[1, 2, 2] = 12 + 10 = 22, copied by rows 4…5, columns 6…8
    e = explain_unit(graph, params, trace, "u", (1, 5, 7))
    assert e["kind"] == "upsample" and e["mode"] == "nearest" and e["scale_factor"] == [2, 3]
    assert [a["rule"] for a in e["axes"]] == ["row 5 → ⌊5 / 2⌋ = 2", "column 7 → ⌊7 / 3⌋ = 2"]
    assert [a["block"] for a in e["axes"]] == [[4, 5], [6, 8]]
    assert e["source"] == [2, 2] and e["input_value"] == 22 and e["result"] == 22 == e["engine_value"]
    assert e["channel"] == 1 and e["spatial_shape"] == [3, 4]
    e = explain_unit(graph, params, trace, "u", (0, 0, 2))  # the first block: x[0, 0, 0]
    assert e["source"] == [0, 0] and e["result"] == 0 == e["engine_value"]
    assert e["neighbourhood"] == {"rows": [0, 1, 2], "cols": [0, 1, 2], "source": [0, 0],
                                  "values": [[0, 1, 2], [4, 5, 6], [8, 9, 10]]}


def test_explainable_says_which_nodes_explain_unit_answers_for():
    # what the page asks before it fetches a unit: yes exactly where explain_unit answers, no where it refuses
    for spec in ({"input_shape": [3, 6], "nodes": [
                    {"id": "along", "op": "softmax", "dim": 2}, {"id": "p1", "op": "pad", "padding": 1},
                    {"id": "u1", "op": "upsample", "scale_factor": 2}, {"id": "f", "op": "flatten"},
                    {"id": "fc", "op": "linear", "out_features": 2}, {"id": "classes", "op": "softmax"}]},
                 {"input_shape": [2, 4, 4], "nodes": [
                    {"id": "c", "op": "conv2d", "out_channels": 2, "kernel_size": 3}, {"id": "r", "op": "relu"},
                    {"id": "p2", "op": "pad", "padding": 1}, {"id": "u2", "op": "upsample", "scale_factor": 2},
                    {"id": "g", "op": "global_avg_pool"}]}):
        graph, params, trace = run(spec)
        for node in graph.nodes:
            try:
                explain_unit(graph, params, trace, node.id, (0,) * len(node.output_shape))
                answered = True
            except ShapeError:
                answered = False
            assert explainable(node) is answered, node.id
    assert not explainable(Graph({"input_shape": [3, 6], "nodes": [{"id": "s", "op": "softmax", "dim": 2}]}).nodes[0])


def test_pad_and_upsample_off_2d_maps_are_refused_clearly():
    graph, params, trace = run({"input_shape": [2, 5], "nodes": [
        {"id": "p1", "op": "pad", "padding": 1, "mode": "reflect"},
        {"id": "u1", "op": "upsample", "scale_factor": 2}]})
    with pytest.raises(ShapeError, match=r"'p1' is a 1D pad \(shape \[2, 7\]\).*2D maps \(C, H, W\) only"):
        explain_unit(graph, params, trace, "p1", (0, 3))
    with pytest.raises(ShapeError, match="'u1' is a 1D upsample"):
        explain_unit(graph, params, trace, "u1", (0, 3))
    graph, params, trace = run({"input_shape": [1, 2, 2, 2], "nodes": [
        {"id": "u3", "op": "upsample", "scale_factor": 2}]})
    with pytest.raises(ShapeError, match="'u3' is a 3D upsample"):
        explain_unit(graph, params, trace, "u3", (0, 1, 1, 1))


def test_bilinear_upsample_by_hand():
    # x[r, c] = 4r + c is linear, so bilinear interpolation gives 4·row coordinate + column coordinate exactly
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    spec = {"input_shape": [1, 3, 4], "nodes": [{"id": "u", "op": "upsample", "scale_factor": 2, "mode": "bilinear"}]}
    graph, params, trace = run(spec, x)
    e = explain_unit(graph, params, trace, "u", (0, 3, 4))  # row (3.5) / 2 − 0.5 = 1.25, column 4.5 / 2 − 0.5 = 1.75
    assert e["mode"] == "bilinear" and e["align_corners"] is False and e["scale_factor"] == [2, 2]
    assert [a["rule"] for a in e["axes"]] == [
        "row 3 → (3 + 0.5) / 2 − 0.5 = 1.25: rows 1 and 2, weights 0.75 and 0.25",
        "column 4 → (4 + 0.5) / 2 − 0.5 = 1.75: columns 1 and 2, weights 0.25 and 0.75"]
    assert [(s["row"], s["col"], s["value"], s["weight"]) for s in e["samples"]] == [
        (1, 1, 5, 0.75 * 0.25), (1, 2, 6, 0.75 * 0.75), (2, 1, 9, 0.25 * 0.25), (2, 2, 10, 0.25 * 0.75)]
    assert e["result"] == 4 * 1.25 + 1.75 == e["engine_value"] == 6.75
    corner = explain_unit(graph, params, trace, "u", (0, 0, 7))  # −0.25 clamped to 0; 7.5 / 2 − 0.5 = 3.25, the edge
    assert [a["rule"] for a in corner["axes"]] == [
        "row 0 → (0 + 0.5) / 2 − 0.5 = −0.25, clamped to 0: rows 0 and 1, weights 1 and 0",
        "column 7 → (7 + 0.5) / 2 − 0.5 = 3.25: column 3 twice (the last column: the next one would lie outside), "
        "weights 0.75 and 0.25"]
    assert corner["result"] == 3 == corner["engine_value"]
    assert corner["neighbourhood"]["rows"] == [0, 1, 2] and corner["neighbourhood"]["source"] is None
    assert "source" not in corner
    spec["nodes"][0]["align_corners"] = True
    graph, params, trace = run(spec, x)
    e = explain_unit(graph, params, trace, "u", (0, 3, 4))  # row 3 · 2 / 5 = 1.2, column 4 · 3 / 7 = 12 / 7
    assert [a["rule"] for a in e["axes"]] == [
        "row 3 → 3 · (3 − 1) / (6 − 1) = 1.2: rows 1 and 2, weights 0.8 and 0.2",
        "column 4 → 4 · (4 − 1) / (8 − 1) = 1.714: columns 1 and 2, weights 0.2857 and 0.7143"]
    assert e["align_corners"] is True
    assert e["result"] == pytest.approx(4 * 1.2 + 12 / 7, rel=1e-12)
    assert e["engine_value"] == pytest.approx(4 * 1.2 + 12 / 7, rel=1e-6)


@pytest.mark.parametrize("align_corners", [False, True])
def test_linear_source_gives_the_engines_interpolation_weights(align_corners):
    """The explanation's coordinates and weights are the rows of the engine's own weight matrices."""
    for size, scale in itertools.product((1, 2, 3, 5), (1, 2, 3, 4)):
        matrix = linear_weights(size, scale, align_corners)
        for i in range(size * scale):
            _, src, lo, hi = linear_source(i, size, scale, align_corners)
            row = np.zeros(size)
            row[lo] += 1 - (src - lo)
            row[hi] += src - lo
            np.testing.assert_allclose(row, matrix[i], rtol=0, atol=1e-15, err_msg=f"{size=} {scale=} {i=}")


def test_bilinear_explanation_can_fail(monkeypatch):
    """Negative control: the half-pixel coordinate without its clamp at 0 mixes the wrong neighbours."""
    spec = {"input_shape": [1, 3, 4], "nodes": [{"id": "u", "op": "upsample", "scale_factor": 2, "mode": "bilinear"}]}
    graph, params, trace = run(spec, np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4) ** 2)
    assert_matches_engine(explain_unit(graph, params, trace, "u", (0, 0, 3)))

    def unclamped(i, size, scale, align_corners):
        raw = (i + 0.5) / scale - 0.5
        lo = math.floor(raw)
        return raw, raw, lo, min(lo + 1, size - 1)

    monkeypatch.setattr(engine.explain.upsample, "linear_source", unclamped)
    wrong = explain_unit(graph, params, trace, "u", (0, 0, 3))  # row −0.25: row −1 (NumPy's last) and row 0
    assert wrong["axes"][0]["neighbours"] == [-1, 0]
    with pytest.raises(AssertionError):
        assert_matches_engine(wrong)


# --- transposed convolution ---------------------------------------------------------------------------------
# input 1x4x4: x[i, j] = 4i + j + 1; kernel 3x3: w[a, b] = 3a + b + 1; bias 0.5; stride 2; padding: rows 1, columns 0;
# output_padding 1. Output 8 x 10: rows (4 − 1)·2 − 2 + 2 + 1 + 1, columns (4 − 1)·2 + 2 + 1 + 1.
def transposed_run():
    spec = {"input_shape": [1, 4, 4], "nodes": [
        {"id": "up", "op": "conv_transpose2d", "out_channels": 1, "kernel_size": 3, "stride": 2, "padding": [1, 0],
         "output_padding": 1}]}
    x = (np.arange(16, dtype=np.float32) + 1).reshape(1, 1, 4, 4)
    params = {"up.weight": (np.arange(9, dtype=np.float32) + 1).reshape(1, 1, 3, 3),
              "up.bias": np.array([0.5], dtype=np.float32)}
    return run(spec, x, params=params)


def test_transposed_convolution_by_hand_stride_padding_and_several_kernel_offsets():
    graph, params, trace = transposed_run()
    assert graph.by_id["up"].output_shape == (1, 8, 10)
    # output row 5 = 2i − 1 + a: (i, a) = (2, 2) and (3, 0); output column 4 = 2j + b: (j, b) = (1, 2) and (2, 0)
    e = explain_unit(graph, params, trace, "up", (0, 5, 4))
    assert e["kind"] == "conv_transpose2d" and e["reached"] is True
    assert e["stride"] == [2, 2] and e["padding"] == [[1, 1], [0, 0]] and e["output_padding"] == [1, 1]
    assert e["kernel_size"] == [3, 3] and e["dilation"] == [1, 1] and e["spatial_shape"] == [4, 4]
    assert [a["rule"] for a in e["axes"]] == [
        "output row 5 = input row i · 2 − 1 + kernel row a: (i, a) ∈ {(2, 2), (3, 0)}",
        "output column 4 = input column j · 2 + kernel column b: (j, b) ∈ {(1, 2), (2, 0)}"]
    assert [a["taps"] for a in e["axes"]] == [[[2, 2], [3, 0]], [[1, 2], [2, 0]]]
    (channel,) = e["channel_terms"]
    assert [(t["row"], t["col"], t["kernel_row"], t["kernel_col"], t["input"], t["weight"], t["product"])
            for t in channel["terms"]] == [(2, 1, 2, 2, 10, 9, 90), (2, 2, 2, 0, 11, 7, 77),
                                           (3, 1, 0, 2, 14, 3, 42), (3, 2, 0, 0, 15, 1, 15)]
    assert channel["sum"] == 224 == channel["running"] and e["total"] == 224 and e["bias"] == 0.5
    assert e["result"] == 224.5 == e["engine_value"]
    # output row 4 = 2i − 1 + a: only (2, 1); column 0 = 2j + b: only (0, 0): x[2, 0] · w[1, 0] = 9 · 4
    e = explain_unit(graph, params, trace, "up", (0, 4, 0))
    assert [t["product"] for t in e["channel_terms"][0]["terms"]] == [36] and e["result"] == 36.5 == e["engine_value"]


def test_transposed_convolution_rows_output_padding_adds_are_the_bias_alone():
    graph, params, trace = transposed_run()
    # the last input column reaches column 3·2 + 2 = 8 at most; column 9 exists only because of output_padding
    e = explain_unit(graph, params, trace, "up", (0, 4, 9))
    assert e["axes"][1]["taps"] == [] and e["reached"] is False
    assert e["axes"][1]["rule"] == ("output column 9 = input column j · 2 + kernel column b: none; the last input "
                                    "column reaches at most column 3 · 2 + 2 = 8, so column 9 is added by "
                                    "output_padding and no input reaches it")
    assert e["channel_terms"][0]["terms"] == [] and e["total"] == 0
    assert e["result"] == 0.5 == e["engine_value"]
    # rows: padding 1 after removes the row output_padding adds, so the last row (7 = 3·2 − 1 + 2) is reached
    assert explain_unit(graph, params, trace, "up", (0, 7, 0))["axes"][0]["taps"] == [[3, 2]]


def test_transposed_convolution_by_hand_dilation_groups_and_a_unit_no_input_reaches():
    # 4 input channels in 2 groups, 2 outputs (one per group); kernel 2, stride 2, dilation 2: output y = 2i + 2a
    spec = {"input_shape": [4, 3, 3], "nodes": [
        {"id": "up", "op": "conv_transpose2d", "out_channels": 2, "kernel_size": 2, "stride": 2, "dilation": 2,
         "groups": 2}]}
    x = np.arange(36, dtype=np.float64).reshape(1, 4, 3, 3)  # x[c, i, j] = 9c + 3i + j
    params = {"up.weight": np.arange(16, dtype=np.float64).reshape(4, 1, 2, 2),  # w[c, 0, a, b] = 4c + 2a + b
              "up.bias": np.array([0.25, -0.75])}
    graph, params, trace = run(spec, x, params=params)
    assert graph.by_id["up"].output_shape == (2, 7, 7)
    # output (1, 4, 2): group 1 reads channels 2 and 3; rows 4 = 2i + 2a: (1, 1), (2, 0); columns 2: (0, 1), (1, 0)
    e = explain_unit(graph, params, trace, "up", (1, 4, 2))
    assert e["group"] == 1 and e["weight_index"] == 0 and e["channels_in_group"] == 2 and e["groups"] == 2
    assert [a["rule"] for a in e["axes"]] == [
        "output row 4 = input row i · 2 + kernel row a · 2: (i, a) ∈ {(1, 1), (2, 0)}",
        "output column 2 = input column j · 2 + kernel column b · 2: (j, b) ∈ {(0, 1), (1, 0)}"]
    two, three = e["channel_terms"]
    assert two["channel"] == 2 and three["channel"] == 3
    assert [(t["input"], t["weight"]) for t in two["terms"]] == [(21, 11), (22, 10), (24, 9), (25, 8)]
    assert [(t["input"], t["weight"]) for t in three["terms"]] == [(30, 15), (31, 14), (33, 13), (34, 12)]
    assert two["sum"] == 231 + 220 + 216 + 200 == 867 and three["sum"] == 450 + 434 + 429 + 408 == 1721
    assert three["running"] == 2588 == e["total"] and e["bias"] == -0.75
    assert e["result"] == 2587.25 == e["engine_value"]
    # output row 3 is odd: stride 2 and dilation 2 only reach even rows: the bias alone
    e = explain_unit(graph, params, trace, "up", (1, 3, 2))
    assert e["reached"] is False and e["axes"][0]["taps"] == [] and e["axes"][1]["taps"] == [[0, 1], [1, 0]]
    assert e["axes"][0]["rule"] == ("output row 3 = input row i · 2 + kernel row a · 2: no pair with 0 ≤ i ≤ 2 and "
                                    "0 ≤ a ≤ 1 gives 3 (it falls in a gap the stride or dilation leaves), so no input "
                                    "reaches it")
    assert [c["terms"] for c in e["channel_terms"]] == [[], []]
    assert e["result"] == -0.75 == e["engine_value"]
    # output 0 reads group 0 (channels 0 and 1) with its own bias
    e = explain_unit(graph, params, trace, "up", (0, 0, 0))
    assert [c["channel"] for c in e["channel_terms"]] == [0, 1] and e["group"] == 0
    assert e["result"] == 0 * 0 + 9 * 4 + 0.25 == e["engine_value"]


def test_transposed_gaps_without_a_stride_come_from_the_dilation():
    # stride 1, dilation 5, kernel 2 on 2 columns: a = 0 reaches columns 0…1, a = 1 columns 5…6; 2…4 only the bias
    spec = {"input_shape": [1, 1, 2], "nodes": [{"id": "up", "op": "conv_transpose2d", "out_channels": 1,
                                                 "kernel_size": [1, 2], "dilation": [1, 5]}]}
    graph, params, trace = run(spec, np.array([[[[2.0, 3.0]]]]),
                               params={"up.weight": np.array([[[[10.0, 100.0]]]]), "up.bias": np.array([0.5])})
    assert [explain_unit(graph, params, trace, "up", (0, 0, x))["result"] for x in range(7)] == [
        20.5, 30.5, 0.5, 0.5, 0.5, 200.5, 300.5] == trace.activations["up"][0, 0, 0].tolist()
    e = explain_unit(graph, params, trace, "up", (0, 0, 3))
    assert e["axes"][1]["rule"] == ("output column 3 = input column j + kernel column b · 5: no pair with 0 ≤ j ≤ 1 "
                                    "and 0 ≤ b ≤ 1 gives 3 (it falls in a gap the stride or dilation leaves), so no "
                                    "input reaches it")
    assert e["reached"] is False
    assert e["axes"][0]["rule"] == "output row 0 = input row i + kernel row a: (i, a) ∈ {(0, 0)}"


def test_every_transposed_convolution_unit_matches_the_engine():
    spec = {"input_shape": [4, 4, 5], "nodes": [
        {"id": "up", "op": "conv_transpose2d", "out_channels": 6, "kernel_size": [3, 2], "stride": [2, 3],
         "padding": [[1, 0], [2, 1]], "output_padding": [1, 2], "dilation": [1, 2], "groups": 2},
        {"id": "bn", "op": "batch_norm"}, {"id": "act", "op": "relu"}]}
    graph, params, trace = run(spec, seed=11)
    params["bn.running_var"][:] = np.linspace(0.5, 2, 6)
    trace = graph.forward(trace.activations["input"], params)
    assert explain_every_unit(graph, params, trace) == {"conv_transpose2d", "batch_norm", "relu"}
    shape = graph.by_id["up"].output_shape
    reached = [explain_unit(graph, params, trace, "up", (0, y, x))["reached"]
               for y in range(shape[1]) for x in range(shape[2])]
    assert any(reached) and not all(reached)  # the sweep covers units no input reaches too
    e = explain_unit(graph, params, trace, "up", (5, 3, 4))
    assert [s["op"] for s in e["chain"]] == ["batch_norm", "relu"]


def test_transposed_convolution_units_match_pytorch(torch_or_skip):
    torch = torch_or_skip
    graph, params, trace = transposed_run()
    w = torch.from_numpy(params["up.weight"].astype(np.float64))
    reference = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(trace.activations["input"].astype(np.float64)), w, torch.tensor([0.5], dtype=torch.float64),
        stride=2, padding=(1, 0), output_padding=1)[0].numpy()
    for index in ((0, 5, 4), (0, 4, 9), (0, 0, 0), (0, 7, 8)):
        assert explain_unit(graph, params, trace, "up", index)["result"] == reference[index], index


def test_wide_transposed_units_are_bounded_and_the_rest_aggregated():
    spec = {"input_shape": [40, 2, 2], "nodes": [{"id": "up", "op": "conv_transpose2d", "out_channels": 2,
                                                  "kernel_size": 2, "stride": 2}]}
    graph, params, trace = run(spec)
    e = explain_unit(graph, params, trace, "up", (1, 3, 0))
    assert len(e["channel_terms"]) == MAX_CHANNELS and e["omitted"]["count"] == 40 - MAX_CHANNELS
    assert e["omitted"]["note"].startswith(f"the {MAX_CHANNELS} channels with the largest |sum| of the 40")
    assert all(len(c["terms"]) == 1 for c in e["channel_terms"])  # stride 2, kernel 2: one tap per axis
    x, w = trace.activations["input"][0].astype(np.float64), params["up.weight"].astype(np.float64)
    sums = x[:, 1, 0] * w[:, 1, 1, 0]  # output row 3 = 2·1 + 1, column 0 = 2·0 + 0
    listed = {c["channel"] for c in e["channel_terms"]}
    assert min(abs(sums[c]) for c in listed) >= max(abs(sums[c]) for c in range(40) if c not in listed)
    assert e["omitted"]["sum"] == pytest.approx(sum(sums[c] for c in range(40) if c not in listed))
    assert sum(c["sum"] for c in e["channel_terms"]) + e["omitted"]["sum"] == pytest.approx(e["total"])
    assert_matches_engine(e)


def test_transposed_explanation_can_fail(monkeypatch):
    """Negative control: the index rule without the padding (y = i·s + a·d) reads the wrong inputs, and the check
    says so."""
    graph, params, trace = transposed_run()
    assert_matches_engine(explain_unit(graph, params, trace, "up", (0, 5, 4)))
    right = engine.explain.transposed.transposed_taps
    monkeypatch.setattr(engine.explain.transposed, "transposed_taps",
                        lambda out_pos, size, kernel, stride, before, dilation:
                        right(out_pos, size, kernel, stride, 0, dilation))
    wrong = explain_unit(graph, params, trace, "up", (0, 5, 4))  # row 5 = 2i + a: (i, a) = (2, 1)
    assert wrong["axes"][0]["taps"] == [[2, 1]] and wrong["engine_value"] == 224.5
    with pytest.raises(AssertionError):
        assert_matches_engine(wrong)
