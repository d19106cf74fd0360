"""matmul: gradients by central differences (with negative controls), the one-BLAS-call path against the
per-matrix loop, torch.matmul on per-sample shapes over a seeded sweep (1D promotion, broadcasting, batch-1
constants on either side), the op's shapes, MACs and errors, and whole graphs (a channels-last linear layer,
attention scores) checked by central differences, recording and lean, in float32."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function, numeric_gradient, relative_error
from engine.graph import Graph
from engine.layers.arith import matmul_backward, matmul_forward
from engine.ops.arith import MatmulOp
from engine.ops.base import GLOBAL, OP_REGISTRY, ForwardContext
from tests.engine.graphcheck import graph_gradient_errors

# the aligned (batch, *leading, rows, columns) arrays the op hands to the layer
LAYER_PAIRS = [
    [(2, 3, 4), (2, 4, 5)],  # per sample, both
    [(2, 3, 3, 4), (1, 1, 4, 5)],  # a shared weight matrix: the one-call path
    [(2, 1, 3, 4), (1, 2, 4, 5)],  # leading axes broadcast both ways
    [(1, 3, 4), (2, 4, 1)],  # a constant on the left, a column on the right
]


def loop_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The obvious form: one ``(P, K) @ (K, M)`` per index of the broadcast leading axes."""
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a_full = np.broadcast_to(a, (*lead, *a.shape[-2:]))
    b_full = np.broadcast_to(b, (*lead, *b.shape[-2:]))
    out = np.zeros((*lead, a.shape[-2], b.shape[-1]), dtype=np.result_type(a, b))
    for index in np.ndindex(*lead):
        out[index] = a_full[index] @ b_full[index]
    return out


@pytest.mark.parametrize("shapes", LAYER_PAIRS)
def test_gradient_check(rng, shapes):
    arrays = [rng.standard_normal(s) for s in shapes]
    errors = check_function(lambda a, b: matmul_forward(a, b)[0],
                            lambda d: matmul_backward(d, matmul_forward(*arrays)[1]), arrays)
    assert max(errors) < 1e-8, f"{shapes}: {errors}"


def test_gradient_check_negative_controls(rng):
    """A shared weight's gradient from the first sample only, and da with b not transposed, must fail."""
    a, b = rng.standard_normal((3, 2, 4)), rng.standard_normal((1, 4, 4))

    def first_sample_only(d):
        return [d @ b.swapaxes(-1, -2), a[:1].swapaxes(-1, -2) @ d[:1]]

    errors = check_function(lambda x, y: matmul_forward(x, y)[0], first_sample_only, [a, b])
    assert errors[0] < 1e-8 and errors[1] > 1e-2

    def not_transposed(d):
        return [d @ b, (a.swapaxes(-1, -2) @ d).sum(axis=0, keepdims=True)]

    errors = check_function(lambda x, y: matmul_forward(x, y)[0], not_transposed, [a, b])
    assert errors[0] > 1e-2 and errors[1] < 1e-8


def sum_into(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The gradient of an input of ``shape`` from ``grad`` of the broadcast result, one leading index at a time:
    each adds into the index it read (0 along a stretched axis; axes the input lacks are summed)."""
    out = np.zeros(shape)
    extra = grad.ndim - len(shape)
    for index in np.ndindex(*grad.shape[:-2]):
        out[tuple(i if n > 1 else 0 for i, n in zip(index[extra:], shape[:-2]))] += grad[index]
    return out


@pytest.mark.parametrize("shapes", [*LAYER_PAIRS, [(4, 2, 3, 4), (1, 1, 1, 4, 6)], [(3, 5), (1, 5, 2)]])
def test_matches_the_loop_form_forward_and_backward(rng, shapes):
    """Whichever path runs (one BLAS call for a shared matrix, or np.matmul's stacks), the numbers are the loop's."""
    a, b = (rng.standard_normal(s) for s in shapes)
    out, cache = matmul_forward(a, b)
    np.testing.assert_allclose(out, loop_matmul(a, b), rtol=1e-12, atol=1e-12, err_msg="forward: mine vs loop")
    dout = rng.standard_normal(out.shape)
    da, db = matmul_backward(dout, cache)
    np.testing.assert_allclose(da, sum_into(loop_matmul(dout, np.swapaxes(b, -1, -2)), a.shape),
                               rtol=1e-12, atol=1e-12, err_msg="da: mine vs loop")
    np.testing.assert_allclose(db, sum_into(loop_matmul(np.swapaxes(a, -1, -2), dout), b.shape),
                               rtol=1e-12, atol=1e-12, err_msg="db: mine vs loop")


def test_shared_matrix_is_one_blas_call_not_a_loop(rng, monkeypatch):
    """The constant-weight case multiplies every row at once: np.matmul is never called on the stack."""
    calls = []
    original = np.matmul

    def counting(*args, **kwargs):
        calls.append(np.shape(args[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", counting)
    a, b = rng.standard_normal((2, 7, 7, 8)), rng.standard_normal((1, 1, 8, 5))
    out, cache = matmul_forward(a, b)
    matmul_backward(np.ones_like(out), cache)
    assert calls == []


# --- the op -------------------------------------------------------------------------------------------------------

SHAPES = [  # per-sample shapes, as torch.matmul would take them
    ((4,), (4,)),
    ((4,), (4, 3)),
    ((2, 4), (4,)),
    ((2, 4), (4, 3)),
    ((5, 2, 4), (4, 3)),  # a channels-last per-position linear layer
    ((4,), (5, 4, 3)),
    ((5, 2, 4), (4,)),
    ((1, 2, 4), (5, 4, 3)),
    ((2, 1, 2, 4), (3, 4, 3)),
    ((6, 5, 4), (6, 4, 5)),  # attention scores per head
]


def matmul_op(a, b) -> MatmulOp:
    return OP_REGISTRY["matmul"]("mm", "matmul", {}, [a, b])


@pytest.mark.parametrize(("a", "b"), SHAPES)
def test_op_shape_is_torch_matmul_shape_and_macs(a, b):
    op = matmul_op(a, b)
    expected = np.matmul(np.ones(a), np.ones(b)).shape  # NumPy promotes vectors as torch.matmul does
    assert op.output_shape == expected
    assert op.macs() == math.prod(expected) * a[-1]
    assert op.geometry() == GLOBAL


def test_channels_last_linear_macs():
    op = matmul_op((7, 7, 96), (96, 384))
    assert op.output_shape == (7, 7, 384) and op.macs() == 7 * 7 * 384 * 96


@pytest.mark.torch
@pytest.mark.parametrize("seed", range(16))
def test_op_matches_torch_matmul_per_sample(torch_or_skip, seed):
    """Every per-sample shape pair, either input possibly a batch-1 constant, against torch.matmul sample by
    sample (the batch axis is not one of torch.matmul's): values and both gradients."""
    torch = torch_or_skip
    rng = np.random.default_rng(seed)
    a, b = SHAPES[seed % len(SHAPES)]
    constant = ["neither", "second", "first"][seed % 3]
    n = 3
    n1, n2 = (1 if constant == "first" else n), (1 if constant == "second" else n)
    x1, x2 = rng.standard_normal((n1, *a)), rng.standard_normal((n2, *b))
    op = matmul_op(a, b)
    out, cache = op.forward([x1, x2], {}, ForwardContext())
    dout = rng.standard_normal(out.shape)
    dx1, dx2 = op.backward(dout, cache)[0]
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    ref = torch.stack([torch.matmul(t1[min(i, n1 - 1)], t2[min(i, n2 - 1)]) for i in range(n)])
    ref.backward(torch.tensor(dout))
    where = f"matmul {list(a)} @ {list(b)} (constant: {constant})"
    assert out.shape == ref.shape and dx1.shape == x1.shape and dx2.shape == x2.shape, where
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=f"{where}: mine vs torch")
    np.testing.assert_allclose(dx1, t1.grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=f"{where} dx1: mine vs torch")
    np.testing.assert_allclose(dx2, t2.grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=f"{where} dx2: mine vs torch")


def test_a_vector_per_sample_times_a_constant_matrix(rng):
    """x (N, K) per sample (K,) with a constant (K, M) stored (1, K, M) gives (N, M): x @ W for every sample (raw
    np.matmul on the stored arrays would give (1, N, M)... or fail)."""
    graph = Graph({"input_shape": [4], "nodes": [
        {"id": "w", "op": "constant", "inputs": [], "shape": [4, 3]},
        {"id": "mm", "op": "matmul", "inputs": ["input", "w"]}]})
    params = {"w.value": rng.standard_normal((4, 3))}
    x = rng.standard_normal((5, 4))
    trace = graph.forward(x, params)
    assert trace.output.shape == (5, 3)
    np.testing.assert_allclose(trace.output, x @ params["w.value"], rtol=1e-13)
    grads = graph.backward(trace, {"mm": np.ones((5, 3))})
    np.testing.assert_allclose(grads.input, np.ones((5, 3)) @ params["w.value"].T, rtol=1e-13)
    np.testing.assert_allclose(grads.activations["w"][0], x.T @ np.ones((5, 3)), rtol=1e-13)


@pytest.mark.parametrize(("a", "b", "message"), [
    ((7, 7, 96), (384, 96), r"node 'mm': cannot multiply \[7, 7, 96\] by \[384, 96\]: the last axis of the first "
                            r"\(96\) must equal the second-to-last axis of the second \(384\)\. If the second is a "
                            r"weight stored \(out, in\) as nn.Linear stores it, transpose it to \[96, 384\]"),
    ((3, 4), (5,), r"cannot multiply \[3, 4\] by \[5\]: the last axis of the first \(4\) must equal the length of "
                   r"the second \(5\)$"),
    ((2, 3, 4), (5, 4, 2), r"the axes before the last two, \[2\] and \[5\], must broadcast"),
    ((), (4,), "matmul multiplies tensors with at least one axis"),
])
def test_shape_errors_say_what_to_do(a, b, message):
    with pytest.raises(SpecError, match=message):
        matmul_op(a, b)


def test_takes_exactly_two_inputs():
    with pytest.raises(SpecError, match=r"op 'matmul' takes 2 input\(s\), got 3"):
        Graph({"input_shape": [3, 3], "nodes": [{"id": "mm", "op": "matmul", "inputs": ["input"] * 3}]})


# --- whole graphs -------------------------------------------------------------------------------------------------

# ConvNeXt's per-position MLP: to channels-last, linear on every position, back to channels-first
CHANNELS_LAST_SPEC = {"input_shape": [4, 3, 3], "nodes": [
    {"id": "last", "op": "transpose", "perm": [1, 2, 0]},
    {"id": "w1", "op": "constant", "inputs": [], "shape": [4, 6]},
    {"id": "fc1", "op": "matmul", "inputs": ["last", "w1"]},
    {"id": "act", "op": "tanh"},
    {"id": "w2", "op": "constant", "inputs": [], "shape": [6, 4]},
    {"id": "fc2", "op": "matmul", "inputs": ["act", "w2"]},
    {"id": "first", "op": "transpose", "perm": [2, 0, 1]},
]}

# self-attention scores on tokens (T, D): q = x Wq, k = x Wk, softmax(q k^T) x
ATTENTION_SPEC = {"input_shape": [4, 5], "nodes": [
    {"id": "wq", "op": "constant", "inputs": [], "shape": [5, 3]},
    {"id": "wk", "op": "constant", "inputs": [], "shape": [5, 3]},
    {"id": "q", "op": "matmul", "inputs": ["input", "wq"]},
    {"id": "k", "op": "matmul", "inputs": ["input", "wk"]},
    {"id": "kt", "op": "transpose", "perm": [1, 0]},
    {"id": "scores", "op": "matmul", "inputs": ["q", "kt"]},
    {"id": "weights", "op": "softmax", "dim": -1},
    {"id": "mixed", "op": "matmul", "inputs": ["weights", "input"]},
    {"id": "v", "op": "constant", "inputs": [], "shape": [5]},
    {"id": "score", "op": "matmul", "inputs": ["mixed", "v"]},  # a matrix times a vector: (T, D) @ (D,) -> (T,)
]}


def graph_and_params(spec, rng, dtype=np.float64):
    graph = Graph(spec)
    shapes = graph.param_shapes()
    return graph, {name: rng.standard_normal(shape).astype(dtype) for name, shape in shapes.items()}


def constant_gradient_errors(graph: Graph, x: np.ndarray, params: dict[str, np.ndarray]) -> dict[str, float]:
    """The gradient each constant's activation receives, against central differences on its ``value``."""
    trace = graph.forward(x, params)
    dout = np.random.default_rng(7).standard_normal(trace.output.shape)
    grads = graph.backward(trace, {graph.output_id: dout})

    def f() -> float:
        return float(np.sum(graph.forward(x, params).output * dout))

    return {name: relative_error(grads.activations[name.removesuffix(".value")][0], numeric_gradient(f, value))
            for name, value in params.items()}


@pytest.mark.parametrize("spec", [CHANNELS_LAST_SPEC, ATTENTION_SPEC], ids=["channels_last", "attention"])
def test_graph_gradient_check_input_and_constants(rng, spec):
    graph, params = graph_and_params(spec, rng)
    x = rng.standard_normal((2, *graph.input_shape))
    errors = graph_gradient_errors(graph, x, params)
    assert errors["input"] < 1e-7, errors
    errors = constant_gradient_errors(graph, x, params)
    assert max(errors.values()) < 1e-7, errors


def test_graph_gradient_check_catches_an_unsummed_constant_gradient(rng, monkeypatch):
    """Negative control: a matmul that hands a shared weight the gradient of the first sample only is caught."""
    graph, params = graph_and_params(CHANNELS_LAST_SPEC, rng)
    x = rng.standard_normal((3, *graph.input_shape))
    original = MatmulOp.backward

    def first_sample(self, dout, cache):
        (a, b), _, _ = cache
        dinputs, dparams = original(self, dout, cache)
        if b.shape[0] == 1:
            rows = a[:1].reshape(-1, a.shape[-1])
            dinputs[1] = (rows.T @ dout[:1].reshape(-1, dout.shape[-1])).reshape(dinputs[1].shape)
        return dinputs, dparams

    monkeypatch.setattr(MatmulOp, "backward", first_sample)
    errors = constant_gradient_errors(graph, x, params)
    assert errors["w1.value"] > 1e-2 and errors["w2.value"] > 1e-2


@pytest.mark.parametrize("spec", [CHANNELS_LAST_SPEC, ATTENTION_SPEC], ids=["channels_last", "attention"])
def test_graph_float32_and_lean_pass(rng, spec):
    graph, params = graph_and_params(spec, rng, np.float32)
    x = rng.standard_normal((3, *graph.input_shape)).astype(np.float32)
    full = graph.forward(x, params)
    assert all(a.dtype == np.float32 for a in full.activations.values())
    assert graph.backward(full, {graph.output_id: np.ones_like(full.output)}).input.dtype == np.float32
    lean = graph.forward(x, params, keep_caches=False, keep=())
    np.testing.assert_array_equal(lean.output, full.output)
    graph64, params64 = Graph(spec), {k: v.astype(np.float64) for k, v in params.items()}
    np.testing.assert_allclose(full.output, graph64.forward(x.astype(np.float64), params64).output,
                               rtol=1e-4, atol=1e-5)


def test_channels_last_linear_is_the_per_position_linear_layer(rng):
    """fc1 on channels-last positions is nn.Linear applied at every (h, w): the 1x1 convolution with W^T."""
    graph, params = graph_and_params(CHANNELS_LAST_SPEC, rng)
    x = rng.standard_normal((2, 4, 3, 3))
    fc1 = graph.forward(x, params).activations["fc1"]
    w1 = params["w1.value"]
    by_position = np.einsum("nchw,cm->nhwm", x, w1)
    np.testing.assert_allclose(fc1, by_position, rtol=1e-12)
    assert graph.by_id["fc1"].op.macs() == 3 * 3 * 6 * 4
