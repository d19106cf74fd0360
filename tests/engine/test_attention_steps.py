"""Attention over time steps (engine.attention.steps): learned attention over a sequence_attention node, saliency
and gradient × input per step, and where the steps lie on the input."""

from __future__ import annotations

import numpy as np
import pytest

from engine.attention import AttributionError, explain
from engine.attention.steps import map_on_input, step_axis, steps_on_input
from engine.gradcheck import numeric_gradient
from engine.graph import Graph

ROWS, COLS, H = 7, 5, 6


def rows_spec(pooled: bool = True) -> dict:
    """A (1, ROWS, COLS) digit-like input read row by row by a GRU; attention over its steps, or its last state."""
    head = ([{"id": "gru", "op": "gru", "hidden_size": H},
             {"id": "attention", "op": "sequence_attention", "attention_size": 4}] if pooled else
            [{"id": "gru", "op": "gru", "hidden_size": H, "output": "hidden"}, {"id": "flat", "op": "flatten"}])
    return {"input_shape": [1, ROWS, COLS], "nodes": [
        {"id": "rows", "op": "reshape", "shape": [ROWS, COLS]}, *head,
        {"id": "fc", "op": "linear", "out_features": 3}]}


def setup(spec: dict, seed: int = 0):
    graph = Graph(spec)
    params = {k: v.astype(np.float64) for k, v in graph.init_params(seed).items()}
    params = {k: v * 2 for k, v in params.items()}  # livelier gradients than the initialisation's
    x = np.random.default_rng(seed + 10).standard_normal((1, *spec["input_shape"]))
    return graph, params, x


def test_learned_weights_are_the_attention_nodes_recorded_weights():
    graph, params, x = setup(rows_spec())
    result = explain(graph, params, x, "learned_attention")
    trace = graph.forward(x, params)  # caches kept: the op's own recording
    recorded = graph.by_id["attention"].op.recorded(trace.caches["attention"])
    np.testing.assert_array_equal(result.layer_map, recorded["weights"][0].astype(np.float32))
    np.testing.assert_array_equal(result.steps.values, recorded["weights"][0])
    np.testing.assert_allclose(result.extras["scores"], recorded["scores"][0])
    assert result.layer == "attention" and result.layer_map.shape == (ROWS,)
    assert result.steps.values.sum() == pytest.approx(1.0, abs=1e-12)
    assert result.extras["weights_sum"] == pytest.approx(1.0, abs=1e-12)
    assert result.extras["prediction"] == int(np.argmax(trace.activations["fc"][0]))
    assert result.steps.step_axis == "H" and not result.signed and result.target is None
    # drawn over the input as rows: row t is step t's weight
    assert result.input_map.shape == (ROWS, COLS)
    np.testing.assert_allclose(result.input_map, np.repeat(recorded["weights"][0][:, None], COLS, axis=1))
    assert result.input_map_normalized.max() == pytest.approx(1.0) and result.input_map_normalized.min() == 0


@pytest.mark.parametrize("method", ["saliency", "gradient_x_input"])
def test_per_step_attribution_is_the_per_pixel_map_summed_over_each_row(method):
    graph, params, x = setup(rows_spec(pooled=False), seed=1)
    result = explain(graph, params, x, method)
    steps = result.steps
    assert steps.node == "rows" and steps.step_axis == "H" and steps.values.shape == (ROWS,)
    # the per-pixel map (the input's gradient) summed over each row: the per-step numbers (taken at 'rows')
    np.testing.assert_allclose(steps.values, result.layer_map.sum(axis=1), rtol=1e-6, atol=1e-9)  # map: float32
    # and both from central differences of the score itself
    target = result.target

    def score() -> float:
        return float(graph.forward(x, params, keep_caches=False).output[0, target])

    numeric = numeric_gradient(score, x)[0, 0]  # (ROWS, COLS)
    per_pixel = np.abs(numeric) if method == "saliency" else x[0, 0] * numeric
    np.testing.assert_allclose(steps.values, per_pixel.sum(axis=1), rtol=1e-6, atol=1e-9,
                               err_msg="per-step attribution vs central differences summed over each row")
    # negative control: the columns' sums are other numbers, so the check above could fail
    assert not np.allclose(steps.values[:COLS], per_pixel.sum(axis=0), rtol=1e-3)
    assert steps.signed is (method == "gradient_x_input")
    assert np.abs(steps.normalized).max() == pytest.approx(1.0)
    np.testing.assert_allclose(steps.input_map, np.repeat(steps.normalized[:, None], COLS, axis=1))  # rows


def test_a_model_that_takes_the_sequence_itself_has_time_on_its_first_axis():
    spec = {"input_shape": [ROWS, COLS], "nodes": [
        {"id": "lstm", "op": "lstm", "hidden_size": H, "output": "hidden"}, {"id": "flat", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 3}]}
    graph, params, x = setup(spec)
    result = explain(graph, params, x, "gradient_x_input")
    assert result.steps.node == "input" and result.steps.step_axis == "C"
    # the input's (C, L) map sums over its first axis, time: together the two sum every attribution once
    assert result.steps.values.sum() == pytest.approx(float(result.layer_map.sum()), rel=1e-6)  # map: float32
    step_of = steps_on_input(graph, "input")
    np.testing.assert_array_equal(step_of, np.repeat(np.arange(ROWS)[:, None], COLS, axis=1))


def test_steps_through_a_transpose_run_along_the_columns():
    spec = {"input_shape": [1, COLS, ROWS], "nodes": [
        {"id": "square", "op": "reshape", "shape": [COLS, ROWS]},
        {"id": "columns", "op": "transpose", "perm": [1, 0]},
        {"id": "gru", "op": "gru", "hidden_size": H},
        {"id": "attention", "op": "sequence_attention", "score": "dot"},
        {"id": "fc", "op": "linear", "out_features": 2}]}
    graph, params, x = setup(spec)
    step_of = steps_on_input(graph, "gru")  # a recurrent output's step t is its input's step t
    assert step_of.shape == (1, COLS, ROWS) and step_axis(graph, step_of) == "W"
    np.testing.assert_array_equal(step_of[0], np.repeat(np.arange(ROWS)[None], COLS, axis=0))
    result = explain(graph, params, x, "learned_attention")
    np.testing.assert_allclose(result.input_map, map_on_input(result.steps.values, step_of))
    np.testing.assert_allclose(result.input_map[0], result.steps.values)  # each column its step's weight


def test_steps_that_do_not_lie_on_the_input_are_said_so():
    spec = {"input_shape": [1, ROWS, COLS], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 1, "kernel_size": 3, "padding": 1},
        {"id": "rows", "op": "reshape", "shape": [ROWS, COLS]},
        {"id": "gru", "op": "gru", "hidden_size": H},
        {"id": "attention", "op": "sequence_attention"},
        {"id": "fc", "op": "linear", "out_features": 3}]}
    graph, params, x = setup(spec)
    assert steps_on_input(graph, "rows") is None
    with pytest.raises(AttributionError, match="do not lie on the input"):
        explain(graph, params, x, "learned_attention")
    result = explain(graph, params, x, "saliency")  # per step all the same, but not drawn over the input
    assert result.steps.node == "rows" and result.steps.step_axis is None and result.steps.values.shape == (ROWS,)
    assert result.steps.input_map is None


def test_models_without_a_sequence_have_no_steps():
    spec = {"input_shape": [1, ROWS, COLS], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 3},
        {"id": "gap", "op": "global_avg_pool"}, {"id": "fc", "op": "linear", "out_features": 3}]}
    graph, params, x = setup(spec)
    assert explain(graph, params, x, "saliency").steps is None
    with pytest.raises(AttributionError, match="no attention layer"):
        explain(graph, params, x, "learned_attention")
