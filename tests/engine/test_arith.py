"""sub, div, pow, sqrt and expand: gradients by central differences (each with a negative control), PyTorch over
seeded sweeps and at the corner cases (x = 0, negative x, division by zero), the ops' shapes, errors and geometry,
and whole graphs with constant operands: gradients, lean passes, float32. matmul is in test_matmul.py."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function, numeric_gradient, relative_error
from engine.graph import Graph
from engine.layers import arith
from engine.ops.arith import DivOp
from engine.ops.base import GLOBAL, IDENTITY, OP_REGISTRY, ForwardContext
from engine.receptive_field import receptive_fields
from tests.engine.graphcheck import graph_gradient_errors

# pairs of (N, *per-sample) shapes as the ops hand them to the layers: aligned, batch 1 for a constant
PAIRS = [
    [(2, 3, 4, 4), (2, 3, 4, 4)],
    [(2, 3, 4, 4), (2, 3, 1, 1)],  # one value per channel
    [(2, 1, 1, 4), (1, 3, 4, 1)],  # both stretched, the second a constant
    [(1, 5), (2, 5)],  # the constant first
]


def away_from_zero(rng: np.random.Generator, shape, low: float = 0.5, high: float = 2.0) -> np.ndarray:
    """Values with |x| in [low, high] and a random sign: safe divisors, and x ** e stays smooth."""
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


# --- sub and div: the layers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes", PAIRS)
@pytest.mark.parametrize("which", ["sub", "div"])
def test_sub_div_gradient_check_with_broadcasting(rng, shapes, which):
    forward, backward = {"sub": (arith.sub_forward, arith.sub_backward),
                         "div": (arith.div_forward, arith.div_backward)}[which]
    arrays = [rng.standard_normal(shapes[0]), away_from_zero(rng, shapes[1])]
    errors = check_function(lambda *a: forward(*a)[0], lambda d: backward(d, forward(*arrays)[1]), arrays)
    assert max(errors) < 1e-8, f"{which} {shapes}: {errors}"
    grads = backward(np.ones(np.broadcast_shapes(*shapes)), forward(*arrays)[1])
    assert [g.shape for g in grads] == [tuple(s) for s in shapes]


def test_sub_div_gradient_check_negative_controls(rng):
    """A sub that adds x2's gradient, a div that forgets one factor 1/x2, a gate not summed: each must fail."""
    x1, x2 = rng.standard_normal((2, 3, 4)), away_from_zero(rng, (2, 3, 1))
    _, sub_cache = arith.sub_forward(x1, x2)
    errors = check_function(lambda a, b: arith.sub_forward(a, b)[0],
                            lambda d: [d, d.sum(axis=2, keepdims=True)], [x1, x2])  # + instead of -
    assert errors[0] < 1e-8 and errors[1] > 0.5
    assert max(check_function(lambda a, b: arith.sub_forward(a, b)[0],
                              lambda d: arith.sub_backward(d, sub_cache), [x1, x2])) < 1e-8

    def one_factor(d):  # -dout * x1 / x2 instead of -dout * x1 / x2**2
        return [d / x2, (-d * x1 / x2).sum(axis=2, keepdims=True)]

    errors = check_function(lambda a, b: arith.div_forward(a, b)[0], one_factor, [x1, x2])
    assert errors[0] < 1e-8 and errors[1] > 1e-2

    def not_summed(d):  # the gradient of one position stands for the whole stretched axis
        return [d / x2, (-d * x1 / x2**2)[:, :, :1]]

    errors = check_function(lambda a, b: arith.div_forward(a, b)[0], not_summed, [x1, x2])
    assert errors[1] > 1e-2


def test_div_by_hand_and_by_zero():
    out, cache = arith.div_forward(np.array([6.0, 1.0, -1.0, 0.0]), np.array([3.0, 0.0, 0.0, 0.0]))
    np.testing.assert_array_equal(out, [2.0, np.inf, -np.inf, np.nan])  # no RuntimeWarning (an error here)
    dx1, dx2 = arith.div_backward(np.ones(4), cache)
    np.testing.assert_array_equal(dx1, [1 / 3, np.inf, np.inf, np.inf])
    np.testing.assert_array_equal(dx2[:1], [-6.0 / 9.0])
    assert np.isnan(dx2[3]) and np.isinf(dx2[1])


def random_broadcast_pair(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two per-sample shapes that broadcast: a common shape, each axis kept or made 1, leading axes maybe dropped."""
    full = tuple(int(n) for n in rng.integers(2, 5, size=rng.integers(1, 5)))
    shapes = []
    for _ in range(2):
        shape = tuple(n if rng.random() < 0.6 else 1 for n in full)
        shapes.append(shape[rng.integers(0, len(shape)):] if rng.random() < 0.3 else shape)
    return shapes[0], shapes[1]


@pytest.mark.torch
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("which", ["sub", "div"])
def test_sub_div_ops_match_pytorch_over_a_sweep(torch_or_skip, seed, which):
    """Random broadcasting per-sample shapes through the op, the first or second input possibly a batch-1 constant."""
    torch = torch_or_skip
    rng = np.random.default_rng(seed)
    a, b = random_broadcast_pair(rng)
    constant = ["neither", "first", "second"][seed % 3]
    n1, n2 = 1 if constant == "first" else 3, 1 if constant == "second" else 3
    x1, x2 = rng.standard_normal((n1, *a)), away_from_zero(rng, (n2, *b))
    op = OP_REGISTRY[which]("z", which, {}, [a, b])
    out, cache = op.forward([x1, x2], {}, ForwardContext())
    dout = rng.standard_normal(out.shape)
    dx1, dx2 = op.backward(dout, cache)[0]
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    # torch on the per-sample shapes: sample axes aligned at the last one, the batch axis apart
    rank = len(op.output_shape)
    r1 = t1.reshape(n1, *(1,) * (rank - len(a)), *a)
    r2 = t2.reshape(n2, *(1,) * (rank - len(b)), *b)
    ref = r1 - r2 if which == "sub" else r1 / r2
    ref.backward(torch.tensor(dout))
    where = f"{which} {list(a)} with {list(b)} (constant: {constant})"
    assert out.shape == (3, *op.output_shape) and dx1.shape == x1.shape and dx2.shape == x2.shape, where
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-13, atol=1e-14, err_msg=f"{where}: mine vs torch")
    np.testing.assert_allclose(dx1, t1.grad.numpy(), rtol=1e-12, atol=1e-13, err_msg=f"{where} dx1: mine vs torch")
    np.testing.assert_allclose(dx2, t2.grad.numpy(), rtol=1e-12, atol=1e-13, err_msg=f"{where} dx2: mine vs torch")


# --- pow and sqrt: the layers -------------------------------------------------------------------------------------

EXPONENTS = [0, 1, 2, 3, 0.5, -0.5, -1, -2, 1.5, 2.5, -1.5, 0.3]


@pytest.mark.parametrize("exponent", EXPONENTS)
def test_pow_gradient_check(rng, exponent):
    integer = float(exponent).is_integer()
    x = away_from_zero(rng, (2, 3, 4)) if integer else rng.uniform(0.5, 2.0, (2, 3, 4))
    (err,) = check_function(lambda a: arith.pow_forward(a, exponent)[0],
                            lambda d: [arith.pow_backward(d, arith.pow_forward(x, exponent)[1])], [x])
    assert err < 1e-8, f"exponent {exponent}: {err:.2e}"


def test_pow_and_sqrt_gradient_check_negative_controls(rng):
    """x ** e's gradient with the power not lowered, and sqrt's without its 1/2, must fail."""
    x = rng.uniform(0.5, 2.0, (3, 4))
    (err,) = check_function(lambda a: arith.pow_forward(a, 3)[0], lambda d: [d * 3 * x**3], [x])
    assert err > 1e-2
    (err,) = check_function(lambda a: arith.sqrt_forward(a)[0], lambda d: [d / np.sqrt(x)], [x])
    assert err > 1e-2


def test_sqrt_gradient_check(rng):
    x = rng.uniform(0.3, 3.0, (2, 3, 4))
    (err,) = check_function(lambda a: arith.sqrt_forward(a)[0],
                            lambda d: [arith.sqrt_backward(d, arith.sqrt_forward(x)[1])], [x])
    assert err < 1e-8


CORNERS = np.array([-2.0, -1.0, -0.5, -0.0, 0.0, 0.25, 1.0, 3.0])


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("exponent", EXPONENTS)
def test_pow_matches_pytorch_at_zero_and_negative_x(torch_or_skip, rng, exponent, dtype):
    """Values and gradients, nan and inf included (and where they are, their signs), at x = 0 and x < 0."""
    torch = torch_or_skip
    x = np.concatenate([CORNERS, CORNERS, rng.uniform(-3, 3, 8)]).astype(dtype)
    dout = np.concatenate([np.ones(8), np.zeros(8), rng.standard_normal(8)]).astype(dtype)  # 0 * inf is nan
    out, cache = arith.pow_forward(x, exponent)
    dx = arith.pow_backward(dout, cache)
    t = torch.tensor(x, requires_grad=True)
    ref = torch.pow(t, exponent)
    ref.backward(torch.tensor(dout))
    assert out.dtype == dtype and dx.dtype == dtype
    tol = {np.float64: 1e-13, np.float32: 1e-6}[dtype]
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=tol, atol=tol,
                               err_msg=f"pow(x, {exponent}) forward: mine vs torch")
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=tol, atol=tol,
                               err_msg=f"pow(x, {exponent}) backward: mine vs torch")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sqrt_matches_pytorch_at_zero_and_negative_x(torch_or_skip, rng, dtype):
    torch = torch_or_skip
    x = np.concatenate([CORNERS, CORNERS, rng.uniform(0, 9, 8)]).astype(dtype)
    dout = np.concatenate([np.ones(8), -np.ones(4), np.zeros(4), rng.standard_normal(8)]).astype(dtype)
    out, cache = arith.sqrt_forward(x)
    dx = arith.sqrt_backward(dout, cache)
    t = torch.tensor(x, requires_grad=True)
    ref = torch.sqrt(t)
    ref.backward(torch.tensor(dout))
    assert out.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-7, err_msg="sqrt forward: mine vs torch")
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-7, err_msg="sqrt backward: mine vs torch")
    assert np.isinf(dx[4]) and np.isnan(out[0])  # the cases that must stay: inf gradient at 0, nan below


def test_pow_by_hand_at_zero():
    x = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    ones = np.ones_like(x)
    for exponent, value, grad in [(0, 1, 0), (1, 0, 1), (2, 0, 0), (3, 0, 0), (0.5, 0, np.inf), (-1, np.inf, -np.inf),
                                  (1.5, 0, 0)]:
        out, cache = arith.pow_forward(x, exponent)
        np.testing.assert_array_equal(out, value, err_msg=f"0 ** {exponent}")
        np.testing.assert_array_equal(arith.pow_backward(ones, cache), grad, err_msg=f"d/dx x ** {exponent} at 0")


# --- expand: the layer --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "target"), [
    ((2, 3, 1, 1), (2, 3, 4, 4)),
    ((2, 1, 4), (2, 3, 4)),
    ((1, 1, 3), (2, 5, 3)),  # a constant expanded over a batch as well
])
def test_expand_gradient_check_and_negative_control(rng, shape, target):
    x = rng.standard_normal(shape)
    (err,) = check_function(lambda a: arith.expand_forward(a, target)[0],
                            lambda d: [arith.expand_backward(d, shape)], [x])
    assert err < 1e-8

    def first_copy(d):  # the gradient of one copy instead of the sum over every copy
        return [d[tuple(slice(0, n) for n in shape)]]

    assert check_function(lambda a: arith.expand_forward(a, target)[0], first_copy, [x])[0] > 1e-2


def test_expand_is_a_read_only_view():
    x = np.arange(3.0).reshape(1, 3, 1, 1)
    out, _ = arith.expand_forward(x, (1, 3, 100, 100))
    assert np.shares_memory(out, x) and not out.flags.writeable and out.strides[-1] == 0
    np.testing.assert_array_equal(out[0, :, 57, 3], [0, 1, 2])


# --- the ops ------------------------------------------------------------------------------------------------------


def build(input_shape, nodes):
    return Graph({"input_shape": list(input_shape), "nodes": nodes})


@pytest.mark.parametrize(("in_shape", "target", "out_shape", "geometry"), [
    ([3, 1, 1], [-1, 7, 7], (3, 7, 7), GLOBAL),  # squeeze-excite's gate copied over positions
    ([3, 1, 1], [1, 7, 7], (3, 7, 7), GLOBAL),  # ONNX: a 1 keeps the input's size
    ([1, 5, 5], [4, 5, 5], (4, 5, 5), IDENTITY),  # channels stretched: positions kept
    ([1, 5, 5], [-1, -1, -1], (1, 5, 5), IDENTITY),
    ([3, 5, 5], [2, 3, 5, 5], (2, 3, 5, 5), IDENTITY),  # a new leading axis
    ([3, 5, 5], [5, 5], (3, 5, 5), IDENTITY),  # ONNX: a shape shorter than the input
    ([3, 5, 5], [], (3, 5, 5), IDENTITY),
    ([3, 5, 1], [1], (3, 5, 1), IDENTITY),
    ([4], [2, 3, 4], (2, 3, 4), IDENTITY),
])
def test_expand_op_shapes_and_geometry(in_shape, target, out_shape, geometry):
    op = build(in_shape, [{"id": "e", "op": "expand", "shape": target}]).nodes[0].op
    assert op.output_shape == out_shape
    assert op.geometry() == geometry
    assert op.macs() == 0


def random_expansion(rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """An input shape and a ``Tensor.expand`` target for it: -1, the same size, 1 stretched, new leading axes."""
    in_shape = [int(n) if rng.random() < 0.5 else 1 for n in rng.integers(2, 5, size=rng.integers(1, 4))]
    target = []
    for n in in_shape:
        choice = rng.integers(0, 4)  # a size of 1 is stretched half the time
        target.append(-1 if choice == 0 else (n if n > 1 or choice == 1 else int(rng.integers(2, 5))))
    return in_shape, [int(n) for n in rng.integers(1, 4, size=rng.integers(0, 3))] + target


# ONNX's bidirectional Expand, which Tensor.expand refuses: a 1 that keeps a larger size, a shorter shape
ONNX_EXPANSIONS = [([3, 4, 1], [1, 1, 5]), ([3, 4, 4], [4]), ([2, 1, 3], [5, 1]), ([4, 1, 1], [2, 1, 3, 3]),
                   ([3, 1, 2], [])]


@pytest.mark.torch
@pytest.mark.parametrize("case", [*range(12), *ONNX_EXPANSIONS])
def test_expand_op_matches_pytorch(torch_or_skip, case):
    """Seeded random expansions, and ONNX's forms, against ``x * ones(shape)`` (ONNX's definition of Expand), and
    against ``Tensor.expand`` where PyTorch accepts the shape."""
    torch = torch_or_skip
    rng = np.random.default_rng(case if isinstance(case, int) else 99)
    in_shape, target = random_expansion(rng) if isinstance(case, int) else case
    x = rng.standard_normal((2, *in_shape))
    graph = build(in_shape, [{"id": "e", "op": "expand", "shape": target}])
    trace = graph.forward(x, {})
    dout = rng.standard_normal(trace.output.shape)
    dx = graph.backward(trace, {"e": dout}).input
    rank = max(len(in_shape), len(target))  # per-sample shapes aligned at the last axis, the batch axis apart
    t = torch.tensor(x, requires_grad=True)
    aligned = t.reshape(2, *(1,) * (rank - len(in_shape)), *in_shape)
    ones = torch.ones((1, *(1,) * (rank - len(target)), *(1 if n == -1 else n for n in target)), dtype=torch.float64)
    ref = aligned * ones
    ref.backward(torch.tensor(dout))
    where = f"expand {in_shape} to {target}"
    np.testing.assert_array_equal(trace.output, ref.detach().numpy(), err_msg=f"{where}: mine vs torch")
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-13, atol=1e-13, err_msg=f"{where} dx: mine vs torch")
    if isinstance(case, int):
        t2 = torch.tensor(x, requires_grad=True)
        ref2 = t2.reshape(aligned.shape).expand(2, *target)
        ref2.backward(torch.tensor(dout))
        np.testing.assert_array_equal(trace.output, ref2.detach().numpy(), err_msg=f"{where}: mine vs Tensor.expand")
        np.testing.assert_allclose(dx, t2.grad.numpy(), rtol=1e-13, atol=1e-13,
                                   err_msg=f"{where} dx: mine vs Tensor.expand")


@pytest.mark.parametrize(("op", "extra", "inputs", "message"), [
    ("sub", {}, ["input", "c"], r"node 'z': cannot subtract shapes \[3, 4, 4\] and \[2, 1, 1\]"),
    ("div", {}, ["input", "c"], r"node 'z': cannot divide shapes \[3, 4, 4\] and \[2, 1, 1\]"),
    ("sub", {}, ["input", "input", "input"], r"op 'sub' takes 2 input\(s\), got 3"),
    ("div", {}, ["input"], r"op 'div' takes 2 input\(s\), got 1"),
    ("pow", {}, ["input"], "op 'pow' needs exponent"),
    ("pow", {"exponent": "2"}, ["input"], "exponent must be a number, got '2'"),
    ("pow", {"exponent": float("inf")}, ["input"], "exponent must be a finite number"),
    ("sqrt", {"exponent": 2}, ["input"], "does not take exponent"),
    ("expand", {}, ["input"], "op 'expand' needs shape"),
    ("expand", {"shape": 7}, ["input"], "shape must be a list of positive ints"),
    ("expand", {"shape": [3, 0, 4]}, ["input"], "shape must be a list of positive ints"),
    ("expand", {"shape": [3, 5, 4]}, ["input"],
     r"cannot expand \[3, 4, 4\] to \[3, 5, 4\]: axis 1 has size 4, and only a size of 1 can be stretched"),
    ("expand", {"shape": [-1, 3, 4, 4]}, ["input"], "-1 on axis 0 keeps the input's size, but the input has no"),
])
def test_spec_errors_name_the_node(op, extra, inputs, message):
    with pytest.raises(SpecError, match=message):
        build([3, 4, 4], [{"id": "c", "op": "constant", "inputs": [], "shape": [2, 1, 1]},
                          {"id": "z", "op": op, "inputs": inputs, **extra}])


def test_elementwise_ops_shapes_and_geometry():
    graph = build([3, 4, 4], [{"id": "p", "op": "pow", "exponent": 2}, {"id": "s", "op": "sqrt"},
                              {"id": "d", "op": "div", "inputs": ["s", "p"]},
                              {"id": "m", "op": "sub", "inputs": ["d", "input"]}])
    for node in graph.nodes:
        assert node.output_shape == (3, 4, 4) and node.op.geometry() == IDENTITY and node.op.macs() == 0, node.id
    assert graph.param_shapes() == {}


def test_receptive_fields_through_sub_and_expand():
    """sub joins two aligned paths as add does (a local field); an expanded pooled gate is global."""
    graph = build([2, 9, 9], [
        {"id": "conv", "op": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"id": "diff", "op": "sub", "inputs": ["conv", "input"]},
        {"id": "pool", "op": "global_avg_pool"},
        {"id": "gate", "op": "reshape", "shape": [2, 1, 1]},
        {"id": "wide", "op": "expand", "shape": [-1, 9, 9]},
    ])
    rfs = receptive_fields(graph)
    assert rfs["diff"].status == "local" and [a.size for a in rfs["diff"].axes] == [3, 3]
    assert rfs["wide"].status == "global"


# --- whole graphs: constants, gradients, lean passes, float32 -----------------------------------------------------

ARITH_SPEC = {"input_shape": [3, 4, 4], "nodes": [
    {"id": "scale", "op": "constant", "inputs": [], "shape": [3, 1, 1]},
    {"id": "row", "op": "constant", "inputs": [], "shape": [4]},
    {"id": "scaled", "op": "div", "inputs": ["input", "scale"]},  # x / constant
    {"id": "centred", "op": "sub", "inputs": ["row", "scaled"]},  # constant - x
    {"id": "square", "op": "pow", "exponent": 2},
    {"id": "shifted", "op": "add", "inputs": ["square", "scale"]},
    {"id": "root", "op": "sqrt"},
    {"id": "cube", "op": "pow", "exponent": 3, "inputs": ["scaled"]},
    {"id": "pool", "op": "global_avg_pool", "inputs": ["cube"]},
    {"id": "gate", "op": "reshape", "shape": [3, 1, 1]},
    {"id": "wide", "op": "expand", "shape": [2, -1, 4, 4]},
    {"id": "ratio", "op": "div", "inputs": ["root", "wide"]},  # per-sample / per-sample, broadcast
    {"id": "out", "op": "sub", "inputs": ["ratio", "scaled"]},
]}


def arith_params(rng: np.random.Generator, dtype=np.float64) -> dict[str, np.ndarray]:
    return {"scale.value": rng.uniform(0.5, 2.0, (3, 1, 1)).astype(dtype),
            "row.value": rng.standard_normal(4).astype(dtype)}


def constant_gradient_errors(graph: Graph, x: np.ndarray, params: dict[str, np.ndarray],
                             constants: list[str]) -> dict[str, float]:
    """The gradient each constant's activation receives, against central differences on its ``value``."""
    trace = graph.forward(x, params)
    dout = np.random.default_rng(7).standard_normal(trace.output.shape)
    grads = graph.backward(trace, {graph.output_id: dout})

    def f() -> float:
        return float(np.sum(graph.forward(x, params).output * dout))

    return {name: relative_error(grads.activations[name][0], numeric_gradient(f, params[f"{name}.value"]))
            for name in constants}


def arith_input(rng: np.random.Generator, n: int = 2) -> np.ndarray:
    return away_from_zero(rng, (n, 3, 4, 4))  # the pooled cube (the divisor 'wide') stays clear of 0


def test_graph_with_constants_passes_a_gradient_check(rng):
    graph = Graph(ARITH_SPEC)
    params = arith_params(rng)
    x = arith_input(rng)
    assert graph.by_id["out"].output_shape == (2, 3, 4, 4)
    errors = graph_gradient_errors(graph, x, params)
    assert errors["input"] < 1e-7, errors
    errors = constant_gradient_errors(graph, x, params, ["scale", "row"])
    assert max(errors.values()) < 1e-7, errors


def test_graph_gradient_check_catches_a_wrong_div_gradient(rng, monkeypatch):
    """Negative control: a div whose divisor gradient forgets one 1/x2 is caught, through the input and the
    constant."""
    graph = Graph(ARITH_SPEC)
    params = arith_params(rng)
    x = arith_input(rng)

    def one_factor(self, dout, cache):
        (shape1, x2, out), shapes = cache
        return [arith.unbroadcast(dout / x2, shape1).reshape(shapes[0]),
                arith.unbroadcast(-dout * out, x2.shape).reshape(shapes[1])], {}

    monkeypatch.setattr(DivOp, "backward", one_factor)
    assert graph_gradient_errors(graph, x, params)["input"] > 1e-2
    assert constant_gradient_errors(graph, x, params, ["scale"])["scale"] > 1e-2


def test_graph_float32_stays_float32_and_lean_pass_matches(rng):
    graph = Graph(ARITH_SPEC)
    params = arith_params(rng, np.float32)
    x = arith_input(rng, 3).astype(np.float32)
    x_before, params_before = x.copy(), {k: v.copy() for k, v in params.items()}
    full = graph.forward(x, params)
    assert all(a.dtype == np.float32 for a in full.activations.values())
    grads = graph.backward(full, {"out": np.ones_like(full.output)})
    assert grads.input.dtype == np.float32
    assert "root" in graph._overwriters  # sqrt computes in place in a lean pass
    lean = graph.forward(x, params, keep_caches=False, keep=())
    np.testing.assert_array_equal(lean.output, full.output)
    kept = graph.forward(x, params, keep_caches=False, keep=["shifted", "wide", "scaled"])
    for name in ("shifted", "wide", "scaled"):  # kept nodes are not written over by the pow/sqrt reading them
        np.testing.assert_array_equal(kept.activations[name], full.activations[name], err_msg=name)
    np.testing.assert_array_equal(x, x_before)
    for name, value in params.items():
        np.testing.assert_array_equal(value, params_before[name], err_msg=name)


def test_lean_pass_does_not_write_into_an_expanded_view(rng):
    """relu after expand would overwrite its input in a lean pass; the read-only view must make it copy instead."""
    graph = build([3, 1, 1], [{"id": "scaled", "op": "pow", "exponent": 1, "inputs": ["input"]},
                              {"id": "wide", "op": "expand", "shape": [-1, 4, 4]},
                              {"id": "act", "op": "relu"},
                              {"id": "root", "op": "sqrt"}])
    x = rng.standard_normal((2, 3, 1, 1)).astype(np.float32)
    full = graph.forward(x, {})
    lean = graph.forward(x, {}, keep_caches=False, keep=())
    np.testing.assert_array_equal(lean.output, full.output)
    np.testing.assert_array_equal(full.output, np.sqrt(np.broadcast_to(np.maximum(x, 0), (2, 3, 4, 4))))
