"""Backpropagation made visible: the loss and every node's gradient (against PyTorch on the digit models), the chain
rule for one unit (a hand-worked example, the engine's own backward pass, central differences, negative controls),
the weight gradient of one filter (gradient check, negative control, PyTorch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.datasets.mnist import load_mnist
from engine.errors import ShapeError, UnknownNodeError
from engine.gradcheck import numeric_gradient, relative_error
from engine.graph import INPUT, Graph
from engine.learned import chain_rule as chain_rule_module
from engine.learned.backprop import backpropagate, backward_order, gradient_summary
from engine.learned.chain_rule import LocalNode, chain_rule, feeders, readers
from engine.learned.weight_gradient import conv_filter_gradient, filter_gradient
from engine.models.registry import load_model
from engine.ops.base import ForwardContext


# --- a network small enough to work out by hand ----------------------------------------------------------------
def tiny() -> tuple[Graph, dict[str, np.ndarray], np.ndarray]:
    """x (1, 3, 3) → conv 2×2 [[1, 0], [0, −1]] → ReLU → flatten → linear (2) → logits.

    conv: y[i, j] = x[i, j] − x[i+1, j+1] = [[3 − 1, 1 − 2], [2 − 0, 1 − 4]] = [[2, −1], [2, −3]]
    ReLU: [[2, 0], [2, 0]];   flatten: r = [2, 0, 2, 0]
    logits: z0 = 0.5 r0 = 1, z1 = 0.5 r2 + r3 = 1, equal, so p = [0.5, 0.5]
    """
    graph = Graph({"input_shape": [1, 3, 3], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 1, "kernel_size": 2},
        {"id": "relu", "op": "relu"},
        {"id": "flat", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 2}]})
    params = {"conv.weight": np.array([[[[1, 0], [0, -1]]]], dtype=np.float32),
              "conv.bias": np.zeros(1, dtype=np.float32),
              "fc.weight": np.array([[0.5, 0, 0, 0], [0, 0, 0.5, 1]], dtype=np.float32),
              "fc.bias": np.zeros(2, dtype=np.float32)}
    x = np.array([[[[3, 1, 0], [2, 1, 2], [1, 0, 4]]]], dtype=np.float32)
    return graph, params, x


def test_hand_worked_loss_and_gradients():
    graph, params, x = tiny()
    result = backpropagate(graph, params, x, label=0)
    assert result.loss == pytest.approx(math.log(2))  # −ln 0.5
    np.testing.assert_allclose(result.probabilities, [0.5, 0.5])
    assert result.order == ["fc", "flat", "relu", "conv", INPUT]
    # dL/dz = p − onehot(0) = [−0.5, 0.5];  dL/dr = Wᵀ dL/dz = [−0.25, 0, 0.25, 0.5]
    np.testing.assert_allclose(result.gradients["fc"][0], [-0.5, 0.5])
    np.testing.assert_allclose(result.gradients["flat"][0], [-0.25, 0, 0.25, 0.5])
    # ReLU passes the gradient where y > 0 only: y[1, 1] = −3 blocks the 0.5 that reached it
    np.testing.assert_allclose(result.gradients["conv"][0, 0], [[-0.25, 0], [0.25, 0]])
    # dL/dx[p, q] = Σ over the windows that read x[p, q]: only y[0, 0] and y[1, 0] carry gradient
    np.testing.assert_allclose(result.gradients[INPUT][0, 0], [[-0.25, 0, 0], [0.25, 0.25, 0], [0, -0.25, 0]])


def test_hand_worked_chain_rule_at_one_input_unit():
    graph, params, x = tiny()
    result = backpropagate(graph, params, x, label=0)
    explained = chain_rule(graph, params, result, INPUT, (0, 1, 1))
    incoming = explained["incoming"]
    # x[1, 1] sits in all four 2×2 windows: at tap (1, 1) of y[0, 0] (w = −1), (1, 0) of y[0, 1] (w = 0),
    # (0, 1) of y[1, 0] (w = 0) and (0, 0) of y[1, 1] (w = 1)
    terms = {tuple(t["index"]): (t["upstream"], t["local"], t["product"]) for t in incoming["terms"]}
    assert terms == {(0, 0, 0): (-0.25, -1.0, 0.25), (0, 0, 1): (0.0, 0.0, 0.0), (0, 1, 0): (0.25, 0.0, 0.0),
                     (0, 1, 1): (0.0, 1.0, 0.0)}
    assert incoming["total"] == 0.25 == incoming["engine_value"]
    assert explained["outgoing"] is None  # nothing feeds the input


def test_hand_worked_chain_rule_at_one_output_unit():
    graph, params, x = tiny()
    result = backpropagate(graph, params, x, label=0)
    explained = chain_rule(graph, params, result, "conv", (0, 0, 0))
    # how dL/dy[0, 0] was made: the ReLU read y[0, 0] = 2 > 0, so it hands back its own −0.25 × 1
    (term,) = explained["incoming"]["terms"]
    assert (term["node"], term["upstream"], term["local"], term["product"]) == ("relu", -0.25, 1.0, -0.25)
    # where it goes: each input of the window gets −0.25 × its weight
    outgoing = explained["outgoing"]
    assert outgoing["upstream"] == -0.25
    products = {tuple(t["index"]): (t["value"], t["local"], t["product"]) for t in outgoing["terms"]}
    assert products == {(0, 0, 0): (3.0, 1.0, -0.25), (0, 0, 1): (1.0, 0.0, -0.0), (0, 1, 0): (2.0, 0.0, -0.0),
                        (0, 1, 1): (1.0, -1.0, 0.25)}
    # an inactive ReLU unit: the 0.5 that reached it stops there
    blocked = chain_rule(graph, params, result, "conv", (0, 1, 1))["incoming"]["terms"][0]
    assert (blocked["upstream"], blocked["local"], blocked["product"]) == (0.5, 0.0, 0.0)


def test_hand_worked_logits_read_by_the_loss():
    graph, params, x = tiny()
    result = backpropagate(graph, params, x, label=0)
    incoming = chain_rule(graph, params, result, "fc", (0,))["incoming"]
    assert [(t["node"], t["local"]) for t in incoming["terms"]] == [("loss", -0.5)]  # p0 − 1
    assert incoming["total"] == incoming["engine_value"] == -0.5


def test_hand_worked_filter_gradient():
    graph, params, x = tiny()
    result = backpropagate(graph, params, x, label=0)
    f = filter_gradient(graph, params, result, "conv", 0)
    # dL/dw[a, b] = Σ_o g[o] x[o + (a, b)] = −0.25 x[a, b] + 0.25 x[1 + a, b]  (g[0, 1] = g[1, 1] = 0)
    np.testing.assert_allclose(f["gradient"][0], [[-0.25, 0.0], [-0.25, -0.25]])
    np.testing.assert_allclose(f["engine_gradient"], f["gradient"])
    assert f["bias_gradient"] == 0.0 == f["engine_bias_gradient"]
    example = f["example"]  # the largest gradient, w[0, 0]: its two nonzero products
    assert example["weight"] == [0, 0, 0, 0]
    assert example["total"] == -0.25
    assert sorted(t["product"] for t in example["terms"])[:2] == [-0.75, 0.0]


# --- the chain rule against the engine's own backward pass --------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    x, y = load_mnist("test", limit=4)
    return x, y


@pytest.mark.parametrize("model", ["digits_classic", "digits_resnet"])
def test_every_unit_sum_matches_the_backward_pass(model, digits):
    bundle = load_model(model)
    x, y = digits
    wrong = (int(y[0]) + 3) % 10  # a wrong label: large gradients everywhere
    result = backpropagate(bundle.graph, bundle.params, x[:1], wrong)
    rng = np.random.default_rng(0)
    for node in result.order:
        g = result.gradients[node][0]
        picks = [tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(g)), g.shape))]
        picks += [tuple(int(rng.integers(n)) for n in g.shape) for _ in range(3)]
        for unit in picks:
            incoming = chain_rule(bundle.graph, bundle.params, result, node, unit)["incoming"]
            scale = max([abs(t["product"]) for t in incoming["terms"]] + [1e-12])
            assert abs(incoming["total"] - incoming["engine_value"]) <= 1e-5 * scale, (model, node, unit, incoming)


@pytest.mark.parametrize("model", ["digits_classic", "digits_resnet"])
def test_formulas_match_the_ops_own_jacobian_rows(model, digits):
    """conv's and linear's local derivatives (the weights, from the formula) equal the rows the ops' backward passes
    give; the units found to read a unit are exactly those whose row is nonzero there."""
    bundle = load_model(model)
    graph, params = bundle.graph, bundle.params
    result = backpropagate(graph, params, digits[0][:1], 1)
    rng = np.random.default_rng(1)
    checked = 0
    for node in graph.nodes:
        if node.op.op not in ("conv2d", "linear"):
            continue
        local = LocalNode(graph, params, result, node.id)
        shape = node.output_shape
        for _ in range(3):
            y = tuple(int(rng.integers(n)) for n in shape)
            row = local.row(y)[0]
            formula = np.zeros_like(row)
            for _, x, d in feeders(local, y):
                formula[x] = d
            np.testing.assert_array_equal(formula, row)  # exact: a row is 1 · w summed with zeros
            checked += 1
        x_shape = node.op.input_shapes[0]
        x_unit = tuple(int(n // 2) for n in x_shape)
        found = {y: d for y, d in readers(local, 0, x_unit)}
        column = {y: float(local.row(y)[0][x_unit]) for y in np.ndindex(*shape)}
        assert {y for y, d in column.items() if d != 0} <= set(found)
        assert all(found[y] == column[y] for y in found)
    assert checked >= 6


def test_negative_control_a_flipped_window_breaks_the_sum(digits, monkeypatch):
    """If the units that read x were found with the kernel taps mirrored, the sum would not be dL/dx."""
    bundle = load_model("digits_classic")
    graph, params = bundle.graph, bundle.params
    result = backpropagate(graph, params, digits[0][:1], (int(digits[1][0]) + 3) % 10)
    g = result.gradients["pool1"][0]
    unit = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(g)), g.shape))
    right = chain_rule(graph, params, result, "pool1", unit)["incoming"]
    assert right["total"] == pytest.approx(right["engine_value"], rel=1e-5)
    original = chain_rule_module.windows_reading

    def mirrored(op, position):
        k = op.geometry()[0].kernel
        return [(tuple(k - 1 - t for t in tap), out) for tap, out in original(op, position)]

    monkeypatch.setattr(chain_rule_module, "windows_reading", mirrored)
    wrong = chain_rule(graph, params, result, "pool1", unit)["incoming"]
    assert abs(wrong["total"] - wrong["engine_value"]) > 0.05 * abs(wrong["engine_value"])


def loss_with(graph: Graph, params, x: np.ndarray, label: int, node: str, unit, value: float) -> float:
    """The loss with unit ``unit`` of ``node``'s output (or of the input) set to ``value``, the rest of the network
    run from there (float64)."""
    acts = {INPUT: x.copy()}
    if node == INPUT:
        acts[INPUT][(0, *unit)] = value
    for n in graph.nodes:
        own = {name: params[f"{n.id}.{name}"] for name in n.op.param_shapes()}
        acts[n.id], _ = n.op.forward([acts[i] for i in n.inputs], own, ForwardContext())
        if n.id == node:
            acts[n.id] = acts[n.id].copy()
            acts[n.id][(0, *unit)] = value
    z = acts[graph.output_id][0]
    return float(np.log(np.exp(z - z.max()).sum()) + z.max() - z[label])


def test_the_sum_is_the_central_difference_gradient():
    """dL/du from the chain rule's sum, for units of inner nodes and of the input, against (L(u + h) − L(u − h)) / 2h
    in float64; a negative control: the sum with one term's sign flipped is not the derivative."""
    graph, params, x = tiny()
    rng = np.random.default_rng(3)
    params = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    x = rng.standard_normal(x.shape)
    result = backpropagate(graph, params, x, label=1)
    controls = 0
    for node, unit in [("conv", (0, 1, 0)), ("conv", (0, 0, 1)), (INPUT, (0, 1, 1)), ("flat", (2,)), ("fc", (0,))]:
        incoming = chain_rule(graph, params, result, node, unit)["incoming"]
        u0, h = float(result.activations[node][(0, *unit)]), 1e-6
        numeric = (loss_with(graph, params, x, 1, node, unit, u0 + h) -
                   loss_with(graph, params, x, 1, node, unit, u0 - h)) / (2 * h)
        assert incoming["total"] == pytest.approx(numeric, rel=1e-6, abs=1e-9), node
        largest = incoming["terms"][0]["product"]
        if abs(largest) > 1e-3:
            controls += 1
            assert incoming["total"] - 2 * largest != pytest.approx(numeric, rel=1e-3, abs=1e-6)
    assert controls >= 3


# --- the weight gradient of one filter ------------------------------------------------------------------------------
@pytest.mark.parametrize("attrs", [
    {"kernel_size": 3, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": [[0, 1], [1, 0]]},
    {"kernel_size": 2, "dilation": 2},
    {"kernel_size": 3, "padding": 1, "groups": 2},
])
def test_filter_gradient_formula_gradient_check_and_negative_control(attrs):
    """dL/dw[k] and dL/db[k] from the correlation formula against central differences of the loss, in float64, for
    stride, asymmetric padding, dilation and groups; a negative control: a filter read mirrored fails the check."""
    graph = Graph({"input_shape": [4, 7, 7], "nodes": [
        {"id": "conv", "op": "conv2d", "out_channels": 4, **attrs},
        {"id": "relu", "op": "relu"}, {"id": "flat", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 3}]})
    rng = np.random.default_rng(7)
    params = {k: v.astype(np.float64) for k, v in graph.init_params(2).items()}
    x = rng.standard_normal((1, 4, 7, 7))
    result = backpropagate(graph, params, x, label=2)
    k = 3
    f = filter_gradient(graph, params, result, "conv", k)
    weight = params["conv.weight"]
    row = weight[k]  # a view: numeric_gradient perturbs the filter in place

    def loss() -> float:
        return backpropagate(graph, params, x, label=2).loss

    numeric = numeric_gradient(loss, row)
    assert relative_error(f["gradient"], numeric) < 1e-6
    bias = params["conv.bias"][k:k + 1]
    assert relative_error(np.array([f["bias_gradient"]]), numeric_gradient(loss, bias)) < 1e-6
    op = graph.node("conv").op
    mirrored, _ = conv_filter_gradient(op, x[0], result.gradients["conv"][0][..., ::-1, ::-1], k)
    assert relative_error(mirrored, numeric) > 0.1, "negative control: a wrong correlation must fail"


def test_filter_gradient_of_a_linear_layer():
    graph, params, x = tiny()
    result = backpropagate(graph, params, x, label=0)
    f = filter_gradient(graph, params, result, "fc", 1)  # dL/dW[1] = dL/dz1 · r = 0.5 · [2, 0, 2, 0]
    np.testing.assert_allclose(f["gradient"], [1, 0, 1, 0])
    np.testing.assert_allclose(f["engine_gradient"], f["gradient"])
    assert f["bias_gradient"] == 0.5 and f["example"] is None


# --- PyTorch: the loss, every node's gradient, the filters' ---------------------------------------------------------
def max_pool_as_routed(torch, x, engine_input: np.ndarray, kernel, stride):
    """Max pooling whose gradient goes where the engine's went: each window's first maximum in the engine's own
    forward numbers (PyTorch's rule too). Windows of a black background tie exactly in exact arithmetic, and which
    copy wins then depends on float rounding, which differs between the engine, PyTorch and BLAS versions: both
    answers are right, so the reference follows the engine's choice; every other step stays PyTorch's own."""
    (kh, kw), (sh, sw) = kernel, stride
    n, c, h, w = engine_input.shape
    rows, cols = (h - kh) // sh + 1, (w - kw) // sw + 1
    index = np.empty((n, c, rows, cols), dtype=np.int64)
    for i in range(rows):
        for j in range(cols):
            window = engine_input[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].reshape(n, c, -1)
            first = window.argmax(axis=2)  # the first maximum, row by row
            index[:, :, i, j] = (i * sh + first // kw) * w + j * sw + first % kw
    picked = x.flatten(2).gather(2, torch.from_numpy(index.reshape(n, c, -1)))
    return picked.reshape(n, c, rows, cols)


def torch_backprop(torch, graph: Graph, params: dict[str, np.ndarray], x: np.ndarray, label: int):
    """The digit networks rebuilt with torch.nn.functional from the engine's own parameters (inference mode): the
    loss, each node's output gradient and each parameter's gradient."""
    F = torch.nn.functional
    engine_acts = graph.forward(x, params).activations
    tensors = {k: torch.tensor(v, requires_grad=k in graph.trainable_names()) for k, v in params.items()}
    acts = {INPUT: torch.tensor(x, requires_grad=True)}
    for node in graph.nodes:
        op, a = node.op, node.op.attrs
        ins = [acts[i] for i in node.inputs]
        p = {name: tensors[f"{node.id}.{name}"] for name in op.param_shapes()}
        if op.op == "conv2d":
            (pt, pb), (pl, pr) = op.padding
            out = F.conv2d(F.pad(ins[0], (pl, pr, pt, pb)), p["weight"], p.get("bias"), stride=op.stride,
                           dilation=op.dilation, groups=op.groups)
        elif op.op == "batch_norm":
            out = F.batch_norm(ins[0], p["running_mean"], p["running_var"], p["weight"], p["bias"], training=False,
                               eps=a["eps"])
        elif op.op == "relu":
            out = F.relu(ins[0])
        elif op.op == "max_pool2d":
            out = max_pool_as_routed(torch, ins[0], engine_acts[node.inputs[0]], op.kernel, op.stride)
        elif op.op == "add":
            out = ins[0] + ins[1]
        elif op.op == "flatten":
            out = ins[0].flatten(1)
        elif op.op == "linear":
            out = F.linear(ins[0], p["weight"], p.get("bias"))
        elif op.op == "spatial_softmax":
            out = torch.softmax(ins[0].flatten(2), dim=2).reshape(ins[0].shape)
        elif op.op == "attention_pool":
            out = (ins[0] * ins[1]).sum(dim=(2, 3))
        else:
            raise AssertionError(f"no PyTorch reference for op {op.op}")
        out.retain_grad()
        acts[node.id] = out
    # the loss in float64 from the float32 logits, as the engine computes it (a float32 log-softmax would be off by
    # about 1e-7 absolute, a lot for the tiny loss of a confident prediction)
    loss = F.cross_entropy(acts[graph.output_id].double(), torch.tensor([label]))
    loss.backward()
    return (loss.item(), {k: v.grad.numpy()[0] for k, v in acts.items()},
            {k: t.grad.numpy() for k, t in tensors.items() if t.requires_grad})


@pytest.mark.torch
@pytest.mark.parametrize("model", ["digits_classic", "digits_resnet"])
@pytest.mark.parametrize("which_label", ["predicted", "wrong"])
def test_loss_every_gradient_and_filter_gradient_match_pytorch(torch_or_skip, model, which_label, digits):
    bundle = load_model(model)
    graph, params = bundle.graph, bundle.params
    x = digits[0][1:2]
    predicted = backpropagate(graph, params, x).label
    label = predicted if which_label == "predicted" else (predicted + 5) % 10
    result = backpropagate(graph, params, x, label)
    loss, node_grads, param_grads = torch_backprop(torch_or_skip, graph, params, x, label)
    assert result.loss == pytest.approx(loss, rel=1e-5, abs=1e-7)
    assert set(result.order) == set(node_grads)
    for node in result.order:
        mine, theirs = result.gradients[node][0], node_grads[node]
        scale = max(float(np.abs(theirs).max()), 1e-30)
        assert np.abs(mine - theirs).max() <= 2e-4 * scale + 1e-9, f"{model} {node}: engine vs PyTorch"
    for node in [n.id for n in graph.nodes if n.op.op in ("conv2d", "linear")]:
        for k in (0, graph.node(node).output_shape[0] - 1):
            f = filter_gradient(graph, params, result, node, k)
            theirs = param_grads[f"{node}.weight"][k]
            scale = max(float(np.abs(theirs).max()), 1e-30)
            assert np.abs(f["gradient"] - theirs).max() <= 2e-4 * scale + 1e-9, f"{model} {node}[{k}]"
            if f["bias_gradient"] is not None:
                assert f["bias_gradient"] == pytest.approx(float(param_grads[f"{node}.bias"][k]), rel=2e-4, abs=1e-9)


# --- the order, the summary, a model ending in softmax, refusals ---------------------------------------------------
def test_a_final_softmax_is_part_of_the_loss():
    graph, params, x = tiny()
    spec = {**graph.spec, "nodes": [*graph.spec["nodes"], {"id": "probs", "op": "softmax"}]}
    with_softmax = Graph(spec)
    result = backpropagate(with_softmax, params, x, label=0)
    plain = backpropagate(graph, params, x, label=0)
    assert result.logits_node == "fc" and result.order == plain.order
    assert result.loss == plain.loss  # the cross-entropy of the logits, not of the probabilities
    with pytest.raises(ShapeError, match="does not depend on node 'probs'"):
        chain_rule(with_softmax, params, result, "probs", (0,))


def test_backward_order_skips_what_the_loss_does_not_read():
    graph = Graph({"input_shape": [3], "nodes": [
        {"id": "a", "op": "linear", "out_features": 2},
        {"id": "side", "op": "relu", "inputs": ["input"]},
        {"id": "b", "op": "linear", "out_features": 2, "inputs": ["a"]}]})
    assert backward_order(graph, "b") == ["b", "a", INPUT]


def test_gradient_summary():
    s = gradient_summary(np.array([[-3.0, 1.0], [0.0, 2.0]]))
    assert s == {"min": -3.0, "max": 2.0, "max_abs": 3.0, "mean_abs": 1.5, "norm": math.sqrt(14)}


def test_refusals():
    graph, params, x = tiny()
    with pytest.raises(ShapeError, match="label 2 is not a class of this model: give a class index from 0 to 1"):
        backpropagate(graph, params, x, label=2)
    with pytest.raises(ShapeError, match="one input"):
        backpropagate(graph, params, np.concatenate([x, x]), label=0)
    result = backpropagate(graph, params, x, label=0)
    with pytest.raises(ShapeError, match=r"unit \[0, 2, 0\] is outside node 'conv' of shape \[1, 2, 2\]"):
        chain_rule(graph, params, result, "conv", (0, 2, 0))
    with pytest.raises(UnknownNodeError):
        chain_rule(graph, params, result, "nope", (0,))
    with pytest.raises(ShapeError, match="'relu' is a relu, which has no filters"):
        filter_gradient(graph, params, result, "relu", 0)
    with pytest.raises(ShapeError, match="has 1 filters"):
        filter_gradient(graph, params, result, "conv", 1)


def test_efficientnet_depthwise_pointwise_relu6_add_and_global_pool():
    """The sum matches the backward pass on EfficientNet-Lite0's ops too: grouped (depthwise) and 1×1 convolutions,
    ReLU6, batch norm, the skip additions, the global average and the 1000-class classifier."""
    bundle = load_model("efficientnet_lite0")
    graph, params = bundle.graph, bundle.params
    x = np.random.default_rng(0).standard_normal((1, *graph.input_shape)).astype(np.float32)
    result = backpropagate(graph, params, x, label=281)
    firsts: dict[str, str] = {}
    for node in result.order:
        kind = "input" if node == INPUT else graph.node(node).op.op
        if node != INPUT and kind == "conv2d" and graph.node(node).op.groups > 1:
            kind = "depthwise"
        firsts.setdefault(kind, node)
    assert {"depthwise", "conv2d", "relu6", "batch_norm", "add", "global_avg_pool", "linear", "input"} <= set(firsts)
    for node in firsts.values():
        g = result.gradients[node][0]
        unit = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(g)), g.shape))
        incoming = chain_rule(graph, params, result, node, unit)["incoming"]
        scale = max(abs(t["product"]) for t in incoming["terms"])
        assert abs(incoming["total"] - incoming["engine_value"]) <= 1e-5 * scale, node
