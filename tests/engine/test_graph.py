"""The graph: spec validation, activations of every node, and backward through branches."""

from __future__ import annotations

import numpy as np
import pytest

from engine import INPUT, Graph, ShapeError, SpecError, WeightsError
from engine.gradcheck import numeric_gradient, relative_error

RESIDUAL_SPEC = {
    "input_shape": [2, 6, 6],
    "nodes": [
        {"id": "conv1", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"id": "bn1", "op": "batch_norm"},
        {"id": "act1", "op": "tanh"},
        {"id": "conv2", "op": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": "same"},
        {"id": "skip", "op": "add", "inputs": ["act1", "conv2"]},
        {"id": "gate", "op": "sigmoid", "inputs": ["conv1"]},
        {"id": "gated", "op": "mul", "inputs": ["skip", "gate"]},
        {"id": "both", "op": "concat", "inputs": ["gated", "act1"]},
        {"id": "pool", "op": "max_pool2d", "kernel_size": 2},
        {"id": "flat", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 4},
    ],
}


def _float64(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for k, v in params.items()}


def test_forward_records_every_node_and_shapes_match_the_spec(rng):
    graph = Graph(RESIDUAL_SPEC)
    params = graph.init_params(seed=1)
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    trace = graph.forward(x, params)
    assert set(trace.activations) == {INPUT} | {n["id"] for n in RESIDUAL_SPEC["nodes"]}
    for node in graph.nodes:
        assert trace.activations[node.id].shape == (2, *node.output_shape), node.id
    assert graph.by_id["both"].output_shape == (6, 6, 6)
    assert trace.output.shape == (2, 4)


def test_inputs_default_to_the_previous_node():
    graph = Graph(RESIDUAL_SPEC)
    assert graph.by_id["conv1"].inputs == [INPUT]
    assert graph.by_id["bn1"].inputs == ["conv1"]
    assert graph.by_id["gate"].inputs == ["conv1"]
    assert graph.consumers["act1"] == ["conv2", "skip", "both"]


def test_backward_through_skip_concat_and_gating_matches_central_differences(rng):
    """Whole-graph gradient check, float64: input and every trainable parameter (BN in training mode)."""
    graph = Graph(RESIDUAL_SPEC)
    params = _float64(graph.init_params(seed=2))
    x = rng.standard_normal((2, 2, 6, 6))
    dout = rng.standard_normal((2, 4))

    def loss() -> float:
        fresh = {k: v.copy() for k, v in params.items()}  # training mode updates running stats in place
        return float(np.sum(graph.forward(x, fresh, training=True).output * dout))

    trace = graph.forward(x, {k: v.copy() for k, v in params.items()}, training=True)
    grads = graph.backward(trace, {graph.output_id: dout})
    assert relative_error(grads.input, numeric_gradient(loss, x)) < 1e-6
    for name in graph.trainable_names():
        err = relative_error(grads.params[name], numeric_gradient(loss, params[name]))
        assert err < 1e-6, f"{name}: relative error {err:.2e}"


def test_gradient_check_catches_a_wrong_gradient(rng):
    """Negative control: the same check fails when the analytic gradient is slightly off."""
    graph = Graph(RESIDUAL_SPEC)
    params = _float64(graph.init_params(seed=2))
    x = rng.standard_normal((1, 2, 6, 6))
    dout = rng.standard_normal((1, 4))
    trace = graph.forward(x, params)
    grads = graph.backward(trace, {graph.output_id: dout})
    numeric = numeric_gradient(lambda: float(np.sum(graph.forward(x, params).output * dout)), x)
    assert relative_error(grads.input, numeric) < 1e-6
    assert relative_error(grads.input * 1.01, numeric) > 1e-3
    assert relative_error(np.flip(grads.input, axis=-1), numeric) > 1e-2


def test_backward_from_one_intermediate_unit_reaches_only_its_receptive_field(rng):
    graph = Graph(RESIDUAL_SPEC)
    params = graph.init_params(seed=3)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    trace = graph.forward(x, params)
    grads = graph.backward(trace, graph.unit_seed(trace, "conv1", (0, 0, 0)))
    # a 3x3 kernel with padding 1 at the corner reads input rows 0..1 and columns 0..1 only
    touched = np.argwhere(np.any(grads.input[0] != 0, axis=0))
    assert touched.min(axis=0).tolist() == [0, 0] and touched.max(axis=0).tolist() == [1, 1]
    # nodes after the seed take no part; parameters the unit does not depend on get zero gradients
    assert "fc" not in grads.activations
    assert not np.any(grads.params["fc.weight"])
    assert np.any(grads.params["conv1.weight"][0]) and not np.any(grads.params["conv1.weight"][1:])


def test_a_unit_seed_outside_the_node_is_refused(rng):
    graph = Graph(RESIDUAL_SPEC)
    trace = graph.forward(rng.standard_normal((1, 2, 6, 6)).astype(np.float32), graph.init_params())
    with pytest.raises(ShapeError, match="outside node 'conv1'"):
        graph.unit_seed(trace, "conv1", (3, 0, 0))


def test_batch_norm_running_statistics_change_only_in_training():
    graph = Graph(RESIDUAL_SPEC)
    params = graph.init_params()
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6)).astype(np.float32)
    before = params["bn1.running_mean"].copy()
    graph.forward(x, params, training=False)
    assert np.array_equal(params["bn1.running_mean"], before)
    graph.forward(x, params, training=True)
    assert not np.array_equal(params["bn1.running_mean"], before)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"nodes": []}, "input_shape must be a list of positive ints"),
        ({"input_shape": [1, 4, 4], "nodes": []}, "nodes must be a non-empty list"),
        ({"input_shape": [1, 4, 4], "nodes": [{"id": "a", "op": "dense"}]}, "node 'a': unknown op 'dense'"),
        ({"input_shape": [1, 4, 4], "nodes": [{"id": "a", "op": "relu"}, {"id": "a", "op": "relu"}]},
         "node 'a': this id is already taken"),
        ({"input_shape": [1, 4, 4], "nodes": [{"id": "a", "op": "relu", "inputs": ["b"]}]},
         "node 'a': input 'b' is not 'input' or the id of an earlier node"),
        ({"input_shape": [1, 4, 4], "nodes": [{"id": "a", "op": "relu", "slope": 2}]},
         "node 'a': op 'relu' does not take slope"),
        ({"input_shape": [1, 4, 4], "nodes": [{"id": "c", "op": "conv2d", "kernel_size": 3}]},
         "node 'c': op 'conv2d' needs out_channels"),
        ({"input_shape": [1, 4, 4], "nodes": [{"id": "9x", "op": "relu"}]}, "node #0 needs an 'id'"),
        ({"input_shape": [1, 4, 4], "nodes": [{"id": "s", "op": "add", "inputs": ["input", "f"]},
                                              {"id": "f", "op": "flatten"}]}, "node 's': input 'f'"),
    ],
)
def test_bad_specs_are_refused_with_the_node_and_the_reason(spec, message):
    with pytest.raises(SpecError) as info:
        Graph(spec)
    assert message in str(info.value)


def test_mismatched_shapes_name_the_node():
    spec = {"input_shape": [1, 8, 8], "nodes": [
        {"id": "a", "op": "conv2d", "out_channels": 2, "kernel_size": 3},
        {"id": "sum", "op": "add", "inputs": ["input", "a"]}]}
    with pytest.raises(SpecError) as info:
        Graph(spec)
    assert info.value.node_id == "sum"


def test_wrong_input_shape_says_what_the_model_takes():
    graph = Graph(RESIDUAL_SPEC)
    with pytest.raises(ShapeError, match=r"takes \[N, 2, 6, 6\]"):
        graph.forward(np.zeros((1, 3, 6, 6), dtype=np.float32), graph.init_params())


def test_check_params_lists_missing_extra_and_misshaped():
    graph = Graph(RESIDUAL_SPEC)
    params = graph.init_params()
    del params["conv1.bias"]
    params["conv9.weight"] = np.zeros(3)
    params["fc.weight"] = np.zeros((4, 3))
    with pytest.raises(WeightsError) as info:
        graph.check_params(params)
    text = str(info.value)
    assert "missing: conv1.bias" in text and "extra: conv9.weight" in text
    assert "fc.weight: expected [4, 54], got [4, 3]" in text


def test_parameter_count_is_worked_out_by_hand():
    graph = Graph(RESIDUAL_SPEC)
    conv = 3 * 2 * 3 * 3 + 3  # conv1: 57
    bn = 3 + 3  # weight and bias; running statistics are buffers
    conv2 = 3 * 3 * 3 * 3 + 3  # 84
    fc = 4 * (6 * 3 * 3) + 4  # concat gives 6 channels, pooled to 3x3: 220
    assert graph.param_count() == conv + bn + conv2 + fc


def test_backward_without_the_input_gradient_gives_the_same_parameter_gradients(rng, monkeypatch):
    """Training's backward pass (``input_grad=False``): the same parameter gradients, no input gradient, and
    the first convolution's input gradient (a whole transposed convolution) never computed. A linear layer
    reading the input directly skips it too."""
    import engine.layers.conv as conv_layer

    graph = Graph(RESIDUAL_SPEC)
    params = _float64(graph.init_params(seed=3))
    x = rng.standard_normal((2, 2, 6, 6))
    trace = graph.forward(x, params, training=True)
    seed = {"fc": rng.standard_normal((2, 4))}
    calls: list[int] = []
    original = conv_layer.correlate_input_grad

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(conv_layer, "correlate_input_grad", counted)
    full = graph.backward(trace, seed)
    assert len(calls) == 2 and INPUT in full.activations  # conv2's and conv1's
    calls.clear()
    lean = graph.backward(trace, seed, input_grad=False)
    assert len(calls) == 1 and INPUT not in lean.activations  # conv2's only
    assert set(lean.params) == set(full.params)
    for name, value in full.params.items():
        np.testing.assert_array_equal(lean.params[name], value, err_msg=name)
    dense = Graph({"input_shape": [5], "nodes": [{"id": "fc", "op": "linear", "out_features": 3}]})
    dense_params = _float64(dense.init_params(seed=1))
    dense_trace = dense.forward(rng.standard_normal((4, 5)), dense_params)
    dense_seed = {"fc": np.ones((4, 3))}
    np.testing.assert_array_equal(dense.backward(dense_trace, dense_seed, input_grad=False).params["fc.weight"],
                                  dense.backward(dense_trace, dense_seed).params["fc.weight"])
