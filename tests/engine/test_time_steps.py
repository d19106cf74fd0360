"""engine.time_steps: which axes are time, the steps a recurrent node records when run again, and the prediction
after each step, checked against the model run on the sequence cut after that step."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis import analyze
from engine.errors import ShapeError
from engine.graph import Graph
from engine.layers.recurrent import STATES, recurrent_forward
from engine.time_steps import head_refusal, record_steps, recorded_names, sequence_summary, step_predictions, time_axes

T, F, H = 6, 5, 4


def row_reader(cell: str = "lstm", steps: int = T, **attrs) -> dict:
    """A (1, steps, F) 'image' read row by row by ``cell``, its final state classified (3 classes)."""
    return {"input_shape": [1, steps, F], "nodes": [
        {"id": "rows", "op": "reshape", "shape": [steps, F]},
        {"id": "rnn", "op": cell, "hidden_size": H, "output": "hidden", **attrs},
        {"id": "flat", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 3}]}


def run(spec: dict, seed: int = 0, dtype=np.float32):
    graph = Graph(spec)
    params = {k: v.astype(dtype) for k, v in graph.init_params(seed).items()}
    x = np.random.default_rng(seed + 1).standard_normal((1, *spec["input_shape"])).astype(dtype)
    return graph, params, x, graph.forward(x, params, keep_caches=False)


def test_time_axes_are_the_sequences_read_and_made():
    spec = {"input_shape": [T, F], "nodes": [
        {"id": "gru", "op": "gru", "hidden_size": H},
        {"id": "act", "op": "tanh"},
        {"id": "pool", "op": "sequence_attention"},
        {"id": "last", "op": "lstm", "hidden_size": H, "inputs": ["act"], "output": "hidden"},
        {"id": "fc", "op": "linear", "out_features": 2, "inputs": ["pool"]}]}
    axes = time_axes(Graph(spec))
    assert axes == {"input": 0, "gru": 0, "act": 0}  # read by gru; made by gru; kept by tanh, read by both
    assert time_axes(Graph(row_reader())) == {"rows": 0}  # h_n (1, H) has no time axis


def test_sequence_summary_names_torchs_parameters_in_order():
    graph = Graph(row_reader("lstm", num_layers=2, bidirectional=True))
    summary = sequence_summary(graph, graph.by_id["rnn"])
    assert summary["steps"] == T and summary["features"] == F and summary["per_step_shape"] == (H,)
    assert [name for name, _ in summary["params"]] == [
        f"{kind}_l{k}{suffix}" for k in range(2) for suffix in ("", "_reverse")
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert dict(summary["params"])["weight_ih_l1"] == (4 * H, 2 * H)  # layer 1 reads both directions
    assert summary["recorded"][:6] == ["h_l0", "c_l0", "i_l0", "f_l0", "g_l0", "o_l0"]
    assert sequence_summary(graph, graph.by_id["fc"]) is None


@pytest.mark.parametrize("cell, attrs", [("rnn", {"nonlinearity": "relu"}), ("lstm", {"num_layers": 2}),
                                         ("gru", {"bidirectional": True})])
def test_recorded_steps_are_the_forward_pass_run_with_its_cache(cell, attrs):
    graph, params, _, trace = run(row_reader(cell, **attrs))
    recorded = record_steps(graph, params, trace, "rnn")
    assert list(recorded) == recorded_names(graph.by_id["rnn"])
    node_params = {name.split(".", 1)[1]: value for name, value in params.items() if name.startswith("rnn.")}
    options = {"nonlinearity": "relu"} if cell == "rnn" else {}
    outs, _ = recurrent_forward(cell, trace.activations["rows"], [None] * len(STATES[cell]), node_params,
                                attrs.get("num_layers", 1), attrs.get("bidirectional", False), **options)
    directions = 2 if attrs.get("bidirectional") else 1
    top = attrs.get("num_layers", 1) - 1
    tops = [recorded[f"h_l{top}"]] + ([recorded[f"h_l{top}_reverse"]] if directions == 2 else [])
    np.testing.assert_array_equal(np.concatenate(tops, axis=1), outs[0][0])  # the output sequence, bit for bit
    np.testing.assert_array_equal(trace.activations["rnn"][0], outs[1][0])  # the run's own h_n
    assert recorded[f"h_l{top}"].shape == (T, H)
    with pytest.raises(ShapeError, match="steps are recorded for"):
        record_steps(graph, params, trace, "fc")


@pytest.mark.parametrize("cell, attrs", [("lstm", {}), ("gru", {}), ("rnn", {"num_layers": 2}),
                                         ("lstm", {"num_layers": 2, "output": "cell"})])
def test_the_prediction_after_each_step_is_the_model_on_the_rows_so_far(cell, attrs):
    graph, params, x, trace = run(row_reader(cell, **attrs), dtype=np.float64)
    predictions = step_predictions(graph, params, record_steps(graph, params, trace, "rnn"), "rnn")
    assert predictions.head == ["flat", "fc"] and predictions.logits.shape == (T, 3)
    assert predictions.state == ("c" if attrs.get("output") == "cell" else "h")
    np.testing.assert_allclose(predictions.logits[-1], trace.activations["fc"][0], rtol=1e-12, atol=1e-15,
                               err_msg="last step vs the run's own prediction")
    for t in range(T):  # the same weights on the first t + 1 rows: a model of its own, run from scratch
        cut = Graph(row_reader(cell, steps=t + 1, **attrs))
        expected = cut.forward(np.ascontiguousarray(x[:, :, :t + 1]), params, keep_caches=False).output[0]
        np.testing.assert_allclose(predictions.logits[t], expected, rtol=1e-12, atol=1e-12,
                                   err_msg=f"step {t}: per-step head vs the model on rows 0..{t}")
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, rtol=1e-12)
    # negative control: the states one step late would not give these predictions
    late = Graph(row_reader(cell, steps=2, **attrs)).forward(np.ascontiguousarray(x[:, :, :2]), params,
                                                             keep_caches=False).output[0]
    assert not np.allclose(predictions.logits[0], late)


def test_heads_that_cannot_be_applied_per_step_say_why():
    assert "bidirectional" in head_refusal(Graph(row_reader("gru", bidirectional=True)), "rnn")
    sequence = {"input_shape": [T, F], "nodes": [
        {"id": "gru", "op": "gru", "hidden_size": H}, {"id": "pool", "op": "sequence_attention"},
        {"id": "fc", "op": "linear", "out_features": 2}]}
    assert "'pool' reads whole" in head_refusal(Graph(sequence), "gru")
    assert "is a sequence_attention" in head_refusal(Graph(sequence), "pool")
    skip = {"input_shape": [T, F], "nodes": [
        {"id": "lstm", "op": "lstm", "hidden_size": H, "output": "hidden"}, {"id": "flat", "op": "flatten"},
        {"id": "side", "op": "flatten", "inputs": ["input"]},
        {"id": "both", "op": "concat", "inputs": ["flat", "side"]},
        {"id": "fc", "op": "linear", "out_features": 2}]}
    assert "also reads 'input'" in head_refusal(Graph(skip), "lstm")
    last = {"input_shape": [T, F], "nodes": [{"id": "lstm", "op": "lstm", "hidden_size": H, "output": "hidden"}]}
    assert "no classifier head" in head_refusal(Graph(last), "lstm")
    graph, params, _, trace = run(row_reader("gru", bidirectional=True))
    with pytest.raises(ShapeError, match="bidirectional"):
        step_predictions(graph, params, record_steps(graph, params, trace, "rnn"), "rnn")


def test_the_analysis_says_which_axis_is_time_and_what_each_step_records():
    nodes = {n["id"]: n for n in analyze(Graph(row_reader("lstm", bidirectional=True))).to_dict()["nodes"]}
    assert nodes["rows"]["time_axis"] == 0 and nodes["rnn"]["time_axis"] is None  # h_n: no time axis
    assert nodes["rows"]["sequence"] is None and nodes["fc"]["time_axis"] is None
    sequence = nodes["rnn"]["sequence"]
    assert sequence["unit_shape"] == [T, 2 * H] and sequence["per_step_shape"] == [H]
    assert sequence["params"][0] == {"name": "weight_ih_l0", "shape": [4 * H, F]}
    assert sequence["recorded"][-1] == "o_l0_reverse" and sequence["output"] == "hidden"
