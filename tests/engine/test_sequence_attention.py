"""sequence_attention: hand-worked examples, weights that sum to 1, gradients by central differences (with negative
controls), a PyTorch reference, and the op's params, errors, cost and recording."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.grad_mode import input_grads_only, without_input_grad
from engine.layers.sequence_attention import sequence_attention_backward, sequence_attention_forward
from engine.ops.base import GLOBAL, OP_REGISTRY

SCORE_PARAMS = {"additive": ("weight", "bias", "context"), "dot": ("query",)}


def random_params(score: str, features: int, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if score == "dot":
        return {"query": rng.standard_normal(features)}
    return {"weight": rng.standard_normal((size, features)), "bias": rng.standard_normal(size),
            "context": rng.standard_normal(size)}


# --- by hand -----------------------------------------------------------------------------------------------


def test_dot_score_by_hand():
    # F = 4, so s_t = q · x_t / 2: s_1 = 2 ln 3 / 2 = ln 3, s_2 = 0; softmax(ln 3, 0) = (3/4, 1/4)
    x = np.array([[[2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]]])
    out, cache = sequence_attention_forward(x, "dot", {"query": np.array([math.log(3), 0.0, 0.0, 0.0])})
    np.testing.assert_allclose(cache["scores"], [[math.log(3), 0.0]], rtol=1e-15)
    np.testing.assert_allclose(cache["weights"], [[0.75, 0.25]], rtol=1e-15)
    np.testing.assert_allclose(out, [[1.5, 0.75, 1.0, 0.0]], rtol=1e-15)  # 3/4 (2, 1, 0, 0) + 1/4 (0, 0, 4, 0)


def test_additive_score_by_hand():
    # A = 1, W = (1, 0), b = 0, v = 2 ln 3: s_1 = v tanh(0) = 0; s_2 = v tanh(ln(3) / 2) = 2 ln 3 · 1/2 = ln 3
    # (tanh(ln(3) / 2) = (3 − 1) / (3 + 1) = 1/2), so the weights are (1/4, 3/4)
    x = np.array([[[0.0, 5.0], [math.log(3) / 2, 1.0]]])
    params = {"weight": np.array([[1.0, 0.0]]), "bias": np.array([0.0]), "context": np.array([2 * math.log(3)])}
    out, cache = sequence_attention_forward(x, "additive", params)
    np.testing.assert_allclose(cache["scores"], [[0.0, math.log(3)]], rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(cache["weights"], [[0.25, 0.75]], rtol=1e-15)
    np.testing.assert_allclose(out, [[3 * math.log(3) / 8, 2.0]], rtol=1e-15)  # 1/4 (0, 5) + 3/4 (ln3 / 2, 1)


def test_weights_sum_to_one_and_equal_scores_average(rng):
    for score in ("additive", "dot"):
        x = rng.standard_normal((4, 9, 5)) * 3
        _, cache = sequence_attention_forward(x, score, random_params(score, 5, 6, rng))
        weights = cache["weights"]
        assert weights.shape == (4, 9) and np.all(weights > 0)
        np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=1e-14)
        assert not np.allclose(weights, 1 / 9)  # the scores do pick steps out
    out, cache = sequence_attention_forward(x, "dot", {"query": np.zeros(5)})  # every score 0: the mean
    np.testing.assert_allclose(cache["weights"], 1 / 9, rtol=1e-15)
    np.testing.assert_allclose(out, x.mean(axis=1), rtol=1e-13)


def test_large_scores_do_not_overflow():
    x = np.array([[[1000.0, 0.0], [-1000.0, 0.0]]])
    out, cache = sequence_attention_forward(x, "dot", {"query": np.array([1.0, 0.0])})
    np.testing.assert_allclose(cache["weights"], [[1.0, 0.0]])
    np.testing.assert_allclose(out, [[1000.0, 0.0]])


# --- gradients -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("score, size", [("additive", 4), ("additive", 1), ("dot", None)])
def test_gradient_check(rng, score, size):
    features = 3
    x = rng.standard_normal((2, 5, features))
    params = random_params(score, features, size, rng)
    names = SCORE_PARAMS[score]

    def forward(x_, *values):
        return sequence_attention_forward(x_, score, dict(zip(names, values)))[0]

    def analytic(dout):
        dx, grads = sequence_attention_backward(dout, sequence_attention_forward(x, score, params)[1])
        return (dx, *(grads[name] for name in names))

    errors = check_function(forward, analytic, [x, *params.values()])
    assert max(errors) < 1e-7, dict(zip(["x", *names], errors))


@pytest.mark.parametrize("score", ["additive", "dot"])
def test_gradient_check_rejects_weights_taken_as_constants(rng, score):
    """Negative control: a backward pass that treats the attention weights as constants (dx = a_t dout, forgetting
    that x_t also moves its own score) is rejected, and so is one whose score gradient skips the softmax."""
    x = rng.standard_normal((2, 5, 3))
    params = random_params(score, 3, 4, rng)
    _, cache = sequence_attention_forward(x, score, params)
    (err,) = check_function(lambda a: sequence_attention_forward(a, score, params)[0],
                            lambda dout: (cache["weights"][:, :, None] * dout[:, None, :],), [x])
    assert err > 1e-2
    name = SCORE_PARAMS[score][-1]  # context or query: reached through the scores only

    def softmax_skipped(dout):
        spoiled = dict(cache, softmax=(np.ones_like(cache["weights"]), 1))  # the softmax's Jacobian without its a
        return (sequence_attention_backward(dout, spoiled)[1][name],)

    (err,) = check_function(lambda p: sequence_attention_forward(x, score, {**params, name: p})[0], softmax_skipped,
                            [params[name]])
    assert err > 1e-2


def test_grad_modes(rng):
    x = rng.standard_normal((2, 5, 3))
    params = random_params("additive", 3, 4, rng)
    _, cache = sequence_attention_forward(x, "additive", params)
    dout = rng.standard_normal((2, 3))
    dx, grads = sequence_attention_backward(dout, cache)
    with input_grads_only():
        only_dx, no_grads = sequence_attention_backward(dout, cache)
    assert no_grads == {}
    np.testing.assert_array_equal(only_dx, dx)
    with without_input_grad():
        no_dx, only_grads = sequence_attention_backward(dout, cache)
    assert no_dx is None and only_grads.keys() == grads.keys()


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pytorch(torch_or_skip, dtype):
    """Seeded sweep against the same formulas written with torch tensors (autograd for the gradients)."""
    torch = torch_or_skip
    rng = np.random.default_rng(41)
    tol = {np.float64: 1e-10, np.float32: 1e-5}[dtype]
    for trial in range(10):
        batch, steps, features, size = (int(n) for n in rng.integers(1, 7, size=4))
        score = ("additive", "dot")[trial % 2]
        x = rng.standard_normal((batch, steps, features)).astype(dtype)
        params = {k: v.astype(dtype) for k, v in random_params(score, features, size, rng).items()}
        dout = rng.standard_normal((batch, features)).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        if score == "additive":
            scores = torch.tanh(tx @ tp["weight"].T + tp["bias"]) @ tp["context"]
        else:
            scores = tx @ tp["query"] / math.sqrt(features)
        ref = (torch.softmax(scores, dim=1)[:, :, None] * tx).sum(dim=1)
        ref.backward(torch.tensor(dout))
        out, cache = sequence_attention_forward(x, score, params)
        dx, grads = sequence_attention_backward(dout, cache)
        where = f"trial {trial}: {score}, N {batch}, T {steps}, F {features}, A {size}"
        assert out.dtype == dx.dtype == dtype
        np.testing.assert_allclose(out, ref.detach().numpy(), rtol=tol, atol=tol, err_msg=f"{where}: mine vs torch")
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol, err_msg=f"{where} dx: mine vs torch")
        for name, value in tp.items():
            np.testing.assert_allclose(grads[name], value.grad.numpy(), rtol=tol, atol=tol,
                                       err_msg=f"{where} d{name}: mine vs torch")


# --- the op ---------------------------------------------------------------------------------------------


def _graph(**attrs) -> Graph:
    return Graph({"input_shape": [7, 5], "nodes": [{"id": "n", "op": "sequence_attention", **attrs}]})


def test_op_params_cost_and_geometry():
    graph = _graph()
    op = graph.nodes[0].op
    assert op.output_shape == (5,) and op.geometry() == GLOBAL
    assert graph.param_shapes() == {"n.weight": (5, 5), "n.bias": (5,), "n.context": (5,)}
    assert op.macs() == 7 * (5 * 5 + 5 + 5)
    graph = _graph(attention_size=3)
    assert graph.param_shapes() == {"n.weight": (3, 5), "n.bias": (3,), "n.context": (3,)}
    params = graph.init_params(0)
    assert all(p.dtype == np.float32 for p in params.values())
    assert np.abs(params["n.weight"]).max() <= 1 / math.sqrt(5)
    assert np.abs(params["n.context"]).max() <= 1 / math.sqrt(3)
    dot = _graph(score="dot")
    assert dot.param_shapes() == {"n.query": (5,)} and dot.nodes[0].op.macs() == 2 * 7 * 5


def test_op_records_scores_and_weights(rng):
    graph = _graph(attention_size=3)
    params = graph.init_params(1)
    x = rng.standard_normal((4, 7, 5)).astype(np.float32)
    trace = graph.forward(x, params)
    recorded = graph.nodes[0].op.recorded(trace.caches["n"])
    assert set(recorded) == {"scores", "weights"}
    assert recorded["weights"].shape == (4, 7) and recorded["weights"].dtype == np.float32
    np.testing.assert_allclose(recorded["weights"].sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(trace.output, np.einsum("nt,ntf->nf", recorded["weights"], x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(graph.forward(x, params, keep_caches=False, keep=()).output, trace.output)


@pytest.mark.parametrize("shape, attrs, message", [
    ((7, 5), {"score": "general"}, "score must be 'additive'"),
    ((7, 5), {"score": "dot", "attention_size": 4}, "a 'dot' score has none"),
    ((7, 5), {"attention_size": 0}, "attention_size must be a positive int"),
    ((7, 5), {"attention_size": 2.5}, "attention_size must be a positive int"),
    ((3, 7, 5), {}, r"'sequence_attention' reads a sequence \(T, F\)"),
    ((5,), {}, r"its input has shape \[5\]"),
])
def test_op_errors_name_the_node(shape, attrs, message):
    with pytest.raises(SpecError, match=rf"node 'n'.*{message}"):
        OP_REGISTRY["sequence_attention"]("n", "sequence_attention", attrs, [shape])
