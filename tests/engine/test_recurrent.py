"""rnn, lstm and gru: gradients by central differences (each with negative controls), PyTorch sweeps, the recorded
steps by hand, the fast loops against the loop forms, the ops' params, errors and cost, and whole graphs (a
digit read row by row): gradients, lean pass, float32."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import SpecError
from engine.gradcheck import check_function
from engine.graph import Graph
from engine.layers.activation import sigmoid_forward
from engine.layers.grad_mode import input_grads_only, without_input_grad
from engine.layers.recurrent import recurrent_backward, recurrent_forward
from engine.ops.base import GLOBAL, OP_REGISTRY, ForwardContext, Op
from tests.engine.graphcheck import graph_gradient_errors

STATES = {"rnn": 1, "lstm": 2, "gru": 1}
N, T, F, H = 2, 4, 3, 3


def make_op(cell: str, features: int = F, steps: int = T, states: bool = True, **attrs) -> Op:
    """An op built as a graph builds it, with its initial states as inputs when ``states``."""
    attrs = {"hidden_size": H, **attrs}
    directions = 2 if attrs.get("bidirectional") else 1
    state_shape = (attrs.get("num_layers", 1) * directions, attrs["hidden_size"])
    shapes = [(steps, features)] + [state_shape] * (STATES[cell] if states else 0)
    return OP_REGISTRY[cell]("n", cell, attrs, shapes)


def random_inputs(op: Op, rng: np.random.Generator, batch: int = N, dtype=np.float64) -> list[np.ndarray]:
    return [rng.standard_normal((batch, *shape)).astype(dtype) for shape in op.input_shapes]


def random_params(op: Op, rng: np.random.Generator, dtype=np.float64) -> dict[str, np.ndarray]:
    """Uniform in ±1 (wider than the initialisation, so that every path carries a visible gradient)."""
    return {name: rng.uniform(-1, 1, shape).astype(dtype) for name, shape in op.param_shapes().items()}


def context(training: bool) -> ForwardContext:
    """A fresh seeded context: every forward pass of a check draws the same dropout masks."""
    return ForwardContext(training=training, rng=np.random.default_rng(7))


# --- gradient checks ---------------------------------------------------------------------------------------

GRAD_CASES = [
    ("rnn", {"nonlinearity": "tanh"}, False),
    ("rnn", {"nonlinearity": "relu", "bidirectional": True}, False),
    ("rnn", {"num_layers": 2, "bias": False, "output": "hidden"}, False),
    ("rnn", {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True, "output": "hidden"}, False),
    ("lstm", {}, False),
    ("lstm", {"bidirectional": True, "output": "hidden"}, False),
    ("lstm", {"bidirectional": True, "bias": False, "output": "cell"}, False),
    ("lstm", {"num_layers": 2, "bias": False, "output": "cell"}, False),
    ("lstm", {"num_layers": 2, "bidirectional": True}, False),
    ("lstm", {"num_layers": 2, "bidirectional": True, "output": "hidden", "dropout": 0.4}, True),
    ("gru", {}, False),
    ("gru", {"bidirectional": True, "bias": False, "output": "hidden"}, False),
    ("gru", {"num_layers": 2, "output": "hidden"}, False),
    ("gru", {"num_layers": 2, "bidirectional": True, "dropout": 0.3}, True),
]


def case_id(case) -> str:
    cell, attrs, training = case
    return "-".join([cell, *(f"{k}={v}" for k, v in attrs.items()), *(["training"] if training else [])])


def gradient_errors(op: Op, inputs: list[np.ndarray], params: dict[str, np.ndarray], training: bool,
                    spoil=None) -> dict[str, float]:
    """Relative error of the op's gradients of every input and parameter; ``spoil(cache)`` may damage the cache
    before the backward pass (negative controls)."""
    names = list(params)
    arrays = [*inputs, *params.values()]

    def forward(*a):
        return op.forward(list(a[:len(inputs)]), dict(zip(names, a[len(inputs):])), context(training))[0]

    def analytic(dout):
        _, cache = op.forward(inputs, params, context(training))
        if spoil is not None:
            spoil(cache[0])
        dinputs, dparams = op.backward(dout, cache)
        return (*dinputs, *(dparams[name] for name in names))

    errors = check_function(forward, analytic, arrays)
    labels = ["x", "h0", "c0"][:len(inputs)] + names
    return dict(zip(labels, errors))


@pytest.mark.parametrize("case", GRAD_CASES, ids=case_id)
def test_gradient_check(case):
    cell, attrs, training = case
    rng = np.random.default_rng(len(case_id(case)))
    op = make_op(cell, **attrs)
    errors = gradient_errors(op, random_inputs(op, rng), random_params(op, rng), training)
    assert set(errors) == {"x", "h0", *(["c0"] if cell == "lstm" else []), *op.param_shapes()}
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("case", GRAD_CASES, ids=case_id)
def test_gradient_check_rejects_a_backward_cut_off_in_time(case):
    """Negative control for every configuration: a backward pass that forgets the recurrent product (each step's
    gradient stops at that step, as if W_hh were 0) is rejected: the input's gradient is wrong."""
    cell, attrs, training = case
    rng = np.random.default_rng(len(case_id(case)))
    op = make_op(cell, **attrs)

    def cut_off(cache):
        for layer in cache["layers"]:
            layer["w_hh"] = np.zeros_like(layer["w_hh"])

    errors = gradient_errors(op, random_inputs(op, rng), random_params(op, rng), training, spoil=cut_off)
    assert errors["x"] > 1e-2, errors


def test_gradient_check_rejects_wrong_gates():
    """Negative controls inside a step: the LSTM's forget gate scaling c_t instead of c_{t-1} (an off-by-one), the
    GRU's reset gate left without gradient, a ReLU RNN differentiated as a tanh one."""
    rng = np.random.default_rng(3)

    def off_by_one(cache):
        layer = cache["layers"][0]
        layer["cs"] = np.concatenate([layer["cs"][1:], layer["cs"][-1:]])  # cs[t - 1] now reads c_t

    def no_reset_gradient(cache):
        cache["layers"][0]["hn"] = np.zeros_like(cache["layers"][0]["hn"])  # d r = d(pre-n) ⊙ hn = 0

    def as_tanh(cache):
        cache["layers"][0]["nonlinearity"] = "tanh"

    for cell, attrs, spoil, name in [("lstm", {}, off_by_one, "weight_ih_l0"),
                                     ("gru", {}, no_reset_gradient, "weight_ih_l0"),
                                     ("rnn", {"nonlinearity": "relu"}, as_tanh, "weight_hh_l0")]:
        op = make_op(cell, **attrs)
        inputs, params = random_inputs(op, rng), random_params(op, rng)
        assert max(gradient_errors(op, inputs, params, False).values()) < 1e-7
        errors = gradient_errors(op, inputs, params, False, spoil=spoil)
        assert errors[name] > 1e-2, (cell, errors)


def test_gradients_without_initial_states(rng):
    """Initial states left out are zeros; the op then returns the input's gradient only."""
    op = make_op("lstm", states=False, bidirectional=True, output="hidden")
    with_states = make_op("lstm", bidirectional=True, output="hidden")
    x, params = random_inputs(op, rng)[0], random_params(op, rng)
    zeros = np.zeros((N, 2, H))
    out, cache = op.forward([x], params, context(False))
    ref, ref_cache = with_states.forward([x, zeros, zeros], params, context(False))
    np.testing.assert_array_equal(out, ref)
    dout = rng.standard_normal(out.shape)
    (dx,), dparams = op.backward(dout, cache)
    (ref_dx, *_), ref_dparams = with_states.backward(dout, ref_cache)
    np.testing.assert_array_equal(dx, ref_dx)
    assert all(np.array_equal(dparams[k], ref_dparams[k]) for k in ref_dparams)
    errors = gradient_errors(op, [x], params, False)
    assert max(errors.values()) < 1e-7, errors


def test_initial_state_shared_by_the_batch(rng):
    """An initial state with batch 1 (a ``constant`` node's) is every sample's; its gradient is summed over them."""
    op = make_op("gru", num_layers=2)
    x, h0 = random_inputs(op, rng, batch=3)
    shared = h0[:1]
    params = random_params(op, rng)
    out, cache = op.forward([x, shared], params, context(False))
    ref, ref_cache = op.forward([x, np.repeat(shared, 3, axis=0)], params, context(False))
    np.testing.assert_array_equal(out, ref)
    dout = rng.standard_normal(out.shape)
    (_, dshared), _ = op.backward(dout, cache)
    (_, dh0), _ = op.backward(dout, ref_cache)
    assert dshared.shape == (1, 2, H)
    np.testing.assert_allclose(dshared, dh0.sum(axis=0, keepdims=True), rtol=1e-12)


def test_grad_modes(rng):
    """``input_grads_only``: no parameter gradients, the same input gradients; ``without_input_grad``: the
    parameters' gradients only (the inputs' are None)."""
    op = make_op("lstm", num_layers=2, bidirectional=True)
    inputs, params = random_inputs(op, rng), random_params(op, rng)
    out, cache = op.forward(inputs, params, context(False))
    dout = rng.standard_normal(out.shape)
    dinputs, dparams = op.backward(dout, cache)
    with input_grads_only():
        only_inputs, no_params = op.backward(dout, cache)
    assert no_params == {}
    for mine, ref in zip(only_inputs, dinputs):
        np.testing.assert_array_equal(mine, ref)
    with without_input_grad():
        no_inputs, only_params = op.backward(dout, cache)
    assert no_inputs == [None, None, None]
    assert only_params.keys() == dparams.keys()
    for name in dparams:
        np.testing.assert_array_equal(only_params[name], dparams[name])


def test_float32_stays_float32(rng):
    for cell in ("rnn", "lstm", "gru"):
        op = make_op(cell, bidirectional=True)
        inputs = random_inputs(op, rng, dtype=np.float32)
        params = op.init_params(rng)
        out, cache = op.forward(inputs, params, context(False))
        assert out.dtype == np.float32
        dinputs, dparams = op.backward(np.ones_like(out), cache)
        assert all(g.dtype == np.float32 for g in [*dinputs, *dparams.values()]), cell
        assert all(a.dtype == np.float32 for a in op.recorded(cache).values())


# --- the fast loops against the loop forms ---------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_loops_equal_the_loop_forms(cell, dtype):
    """engine.layers.fast.recurrent gives the loop forms' outputs, caches and gradients (halving is exact)."""
    rng = np.random.default_rng(11)
    tol = {np.float64: 1e-13, np.float32: 1e-6}[dtype]
    for attrs in [{}, {"num_layers": 2, "bidirectional": True}, {"num_layers": 3, "bias": False}]:
        op = make_op(cell, features=5, steps=6, **attrs)
        x, *initial = random_inputs(op, rng, batch=3, dtype=dtype)
        params = random_params(op, rng, dtype)
        layers, bidirectional = attrs.get("num_layers", 1), attrs.get("bidirectional", False)
        fast, fast_cache = recurrent_forward(cell, x, initial, params, layers, bidirectional, fast=True)
        loop, loop_cache = recurrent_forward(cell, x, initial, params, layers, bidirectional, fast=False)
        where = f"{cell} {attrs} {dtype.__name__}"
        for mine, ref in zip(fast, loop):
            np.testing.assert_allclose(mine, ref, rtol=tol, atol=tol, err_msg=f"{where}: fast vs loop")
        for mine, ref in zip(fast_cache["layers"], loop_cache["layers"]):
            assert mine.keys() == ref.keys()
            for key in ("hs", "cs", "tanh_cs", "gates", "hn"):
                if key in ref:
                    np.testing.assert_allclose(mine[key], ref[key], rtol=tol, atol=tol, err_msg=f"{where}: {key}")
        douts = [rng.standard_normal(a.shape).astype(dtype) for a in fast]
        fast_grads = recurrent_backward(douts[0], douts[1:], fast_cache)
        loop_grads = recurrent_backward(douts[0], douts[1:], loop_cache)
        np.testing.assert_allclose(fast_grads[0], loop_grads[0], rtol=tol, atol=tol)
        for name in params:
            np.testing.assert_allclose(fast_grads[2][name], loop_grads[2][name], rtol=tol, atol=tol,
                                       err_msg=f"{where}: d{name}")


# --- PyTorch ------------------------------------------------------------------------------------------------

TORCH_CELLS = [("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}), ("gru", {})]


def torch_module(torch, cell: str, features: int, attrs: dict, dtype):
    kinds = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    kwargs = {k: v for k, v in attrs.items() if k != "output"}
    module = kinds[cell](features, batch_first=True, **kwargs)
    return module.to(torch.float64 if dtype == np.float64 else torch.float32)


@pytest.mark.torch
@pytest.mark.parametrize("cell, extra", TORCH_CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pytorch(torch_or_skip, cell, extra, dtype):
    """Seeded sweep of sizes, layers, directions, biases and initial states against nn.RNN/LSTM/GRU(batch_first=True):
    the output sequence, h_n, c_n, and the gradients of x, h0, c0 and every parameter, for every ``output``."""
    torch = torch_or_skip
    rng = np.random.default_rng({"rnn": 31, "lstm": 32, "gru": 33}[cell] + len(extra.get("nonlinearity", "")))
    tol = {np.float64: 1e-10, np.float32: 2e-4}[dtype]
    outputs = ["sequence", "hidden", "cell"] if cell == "lstm" else ["sequence", "hidden"]
    for trial in range(6):
        batch, steps, features = (int(n) for n in rng.integers(1, 6, size=3))
        attrs = {"hidden_size": int(rng.integers(1, 7)), "num_layers": int(rng.integers(1, 4)),
                 "bidirectional": bool(rng.random() < 0.5), "bias": bool(rng.random() < 0.7), **extra}
        states = bool(rng.random() < 0.6)
        ops = {kind: make_op(cell, features, steps, states, **attrs, output=kind) for kind in outputs}
        first = ops["sequence"]
        module = torch_module(torch, cell, features, attrs, dtype)
        theirs = [(name, tuple(p.shape)) for name, p in module.named_parameters()]
        assert list(first.param_shapes().items()) == theirs, f"trial {trial}: parameters, mine vs torch"
        params = random_params(first, rng, dtype)
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(torch.from_numpy(params[name]))
        inputs = random_inputs(first, rng, batch, dtype)
        tx = torch.tensor(inputs[0], requires_grad=True)
        tstates = [torch.tensor(s.transpose(1, 0, 2).copy(), requires_grad=True) for s in inputs[1:]]
        if cell == "lstm":
            out, (h_n, c_n) = module(tx, tuple(tstates) if states else None)
            refs = {"sequence": out, "hidden": h_n, "cell": c_n}
        else:
            out, h_n = module(tx, tstates[0] if states else None)
            refs = {"sequence": out, "hidden": h_n}
        where = f"{cell} {extra} trial {trial}: N {batch}, T {steps}, F {features}, {attrs}, states {states}"
        for kind, op in ops.items():
            ref = refs[kind] if kind == "sequence" else refs[kind].transpose(0, 1)  # torch's states: (L·D, N, H)
            mine, cache = op.forward(inputs, params, context(False))
            np.testing.assert_allclose(mine, ref.detach().numpy(), rtol=tol, atol=tol,
                                       err_msg=f"{where}: {kind}, mine vs torch")
            dout = rng.standard_normal(mine.shape).astype(dtype)
            wrt = [tx, *tstates, *(dict(module.named_parameters())[name] for name in params)]
            grads = torch.autograd.grad(ref, wrt, torch.from_numpy(dout), retain_graph=True, allow_unused=True)
            grads = [np.zeros(tuple(w.shape)) if g is None else g.numpy() for w, g in zip(wrt, grads)]
            dinputs, dparams = op.backward(dout, cache)
            np.testing.assert_allclose(dinputs[0], grads[0], rtol=tol, atol=tol,
                                       err_msg=f"{where}: {kind} dx, mine vs torch")
            for j, dstate in enumerate(dinputs[1:]):
                np.testing.assert_allclose(dstate, grads[1 + j].transpose(1, 0, 2), rtol=tol, atol=tol,
                                           err_msg=f"{where}: {kind} d{'hc'[j]}0, mine vs torch")
            for name, theirs in zip(params, grads[len(inputs):]):
                np.testing.assert_allclose(dparams[name], theirs, rtol=tol, atol=tol,
                                           err_msg=f"{where}: {kind} d{name}, mine vs torch")


@pytest.mark.torch
def test_dropout_between_layers_as_pytorch(torch_or_skip):
    """Dropout acts between layers in training only: inference ignores it (as torch's eval mode), and training
    draws one mask on the first layer's outputs, whose surviving values are scaled by 1 / (1 − p)."""
    torch = torch_or_skip
    rng = np.random.default_rng(5)
    op = make_op("lstm", states=False, num_layers=2, dropout=0.5)
    params = random_params(op, rng)
    (x,) = random_inputs(op, rng)
    module = torch_module(torch, "lstm", F, {"hidden_size": H, "num_layers": 2, "dropout": 0.5}, np.float64).eval()
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(params[name]))
        ref = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(op.forward([x], params, context(False))[0], ref, rtol=1e-12)
    trained, cache = op.forward([x], params, context(True))
    assert not np.allclose(trained, ref)
    mask = cache[0]["masks"][1]
    assert cache[0]["masks"][0] is None and set(np.unique(mask)) <= {0.0, 2.0}


# --- what a recording keeps -------------------------------------------------------------------------------


KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def sigmoid(a: np.ndarray) -> np.ndarray:
    return sigmoid_forward(a)[0]


def test_lstm_recorded_steps_by_hand(rng):
    """Two bidirectional layers: every gate at a step recomputed from the weights, the step's input (the layer
    below's outputs, both directions) and the previous state (the next step's, in the reverse direction)."""
    op = make_op("lstm", steps=5, num_layers=2, bidirectional=True)
    x, h0, c0 = random_inputs(op, rng)
    params = random_params(op, rng)
    out, cache = op.forward([x, h0, c0], params, context(False))
    rec = op.recorded(cache)
    assert set(rec) == {f"{name}_l{k}{suffix}" for name in "hcifgo" for k in (0, 1) for suffix in ("", "_reverse")}
    assert all(a.shape == (N, 5, H) for a in rec.values())
    np.testing.assert_array_equal(out, np.concatenate([rec["h_l1"], rec["h_l1_reverse"]], axis=2))
    # layer 0, forward, step 0 reads h0[:, 0] and c0[:, 0]
    w_ih, w_hh, b_ih, b_hh = (params[f"{kind}_l0"] for kind in KINDS)
    a = x[:, 0] @ w_ih.T + b_ih + h0[:, 0] @ w_hh.T + b_hh
    i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
    for name, value in zip("ifgo", (i, f, g, o)):
        np.testing.assert_allclose(rec[f"{name}_l0"][:, 0], value, rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(rec["c_l0"][:, 0], f * c0[:, 0] + i * g, rtol=1e-12)
    # layer 1, reverse, step 2: input is both directions of layer 0 at step 2, previous state is step 3's
    t = 2
    step_in = np.concatenate([rec["h_l0"][:, t], rec["h_l0_reverse"][:, t]], axis=1)
    h_prev, c_prev = rec["h_l1_reverse"][:, t + 1], rec["c_l1_reverse"][:, t + 1]
    w_ih, w_hh, b_ih, b_hh = (params[f"{kind}_l1_reverse"] for kind in KINDS)
    i_t = sigmoid(step_in @ w_ih[:H].T + b_ih[:H] + h_prev @ w_hh[:H].T + b_hh[:H])  # σ(W_ii x + b_ii + W_hi h + b_hi)
    f_t = sigmoid(step_in @ w_ih[H:2 * H].T + b_ih[H:2 * H] + h_prev @ w_hh[H:2 * H].T + b_hh[H:2 * H])
    g_t = np.tanh(step_in @ w_ih[2 * H:3 * H].T + b_ih[2 * H:3 * H] + h_prev @ w_hh[2 * H:3 * H].T + b_hh[2 * H:3 * H])
    o_t = sigmoid(step_in @ w_ih[3 * H:].T + b_ih[3 * H:] + h_prev @ w_hh[3 * H:].T + b_hh[3 * H:])
    for name, value in zip("ifgo", (i_t, f_t, g_t, o_t)):
        np.testing.assert_allclose(rec[f"{name}_l1_reverse"][:, t], value, rtol=1e-12, err_msg=name)
    c_t = f_t * c_prev + i_t * g_t
    np.testing.assert_allclose(rec["c_l1_reverse"][:, t], c_t, rtol=1e-12)
    np.testing.assert_allclose(rec["h_l1_reverse"][:, t], o_t * np.tanh(c_t), rtol=1e-12)
    # the final states: the forward directions' last step, the reverse directions' first
    hidden = make_op("lstm", steps=5, num_layers=2, bidirectional=True, output="hidden")
    h_n = hidden.forward([x, h0, c0], params, context(False))[0]
    expected = [rec["h_l0"][:, -1], rec["h_l0_reverse"][:, 0], rec["h_l1"][:, -1], rec["h_l1_reverse"][:, 0]]
    np.testing.assert_array_equal(h_n, np.stack(expected, axis=1))


def test_gru_recorded_steps_by_hand(rng):
    op = make_op("gru", steps=5, bidirectional=True)
    x, h0 = random_inputs(op, rng)
    params = random_params(op, rng)
    _, cache = op.forward([x, h0], params, context(False))
    rec = op.recorded(cache)
    assert set(rec) == {f"{name}_l0{suffix}" for name in "hrzn" for suffix in ("", "_reverse")}
    # the forward direction at step 3 reads step 2's state; the reverse direction starts at step 4 from h0[:, 1]
    # and at step 1 reads step 2's state
    cases = [("", 3, rec["h_l0"][:, 2]), ("_reverse", 4, h0[:, 1]), ("_reverse", 1, rec["h_l0_reverse"][:, 2])]
    for suffix, t, h_prev in cases:
        w_ih, w_hh, b_ih, b_hh = (params[f"{kind}_l0{suffix}"] for kind in KINDS)
        gi, gh = x[:, t] @ w_ih.T + b_ih, h_prev @ w_hh.T + b_hh
        r = sigmoid(gi[:, :H] + gh[:, :H])
        z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])  # b_hn inside the reset gate's product
        for name, value in zip("rzn", (r, z, n)):
            np.testing.assert_allclose(rec[f"{name}_l0{suffix}"][:, t], value, rtol=1e-12, err_msg=name + suffix)
        np.testing.assert_allclose(rec[f"h_l0{suffix}"][:, t], (1 - z) * n + z * h_prev, rtol=1e-12)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_recorded_steps_by_hand(rng, nonlinearity):
    op = make_op("rnn", steps=5, num_layers=2, nonlinearity=nonlinearity, bias=False)
    x, h0 = random_inputs(op, rng)
    params = random_params(op, rng)
    out, cache = op.forward([x, h0], params, context(False))
    rec = op.recorded(cache)
    assert set(rec) == {"h_l0", "h_l1"}
    act = np.tanh if nonlinearity == "tanh" else (lambda a: np.maximum(a, 0))
    np.testing.assert_allclose(rec["h_l0"][:, 0], act(x[:, 0] @ params["weight_ih_l0"].T
                                                      + h0[:, 0] @ params["weight_hh_l0"].T), rtol=1e-12)
    np.testing.assert_allclose(rec["h_l1"][:, 3], act(rec["h_l0"][:, 3] @ params["weight_ih_l1"].T
                                                      + rec["h_l1"][:, 2] @ params["weight_hh_l1"].T), rtol=1e-12)
    np.testing.assert_array_equal(out, rec["h_l1"])


# --- the ops ---------------------------------------------------------------------------------------------


def test_param_names_shapes_and_order():
    op = make_op("gru", features=5, num_layers=2, bidirectional=True)
    assert list(op.param_shapes().items()) == [
        ("weight_ih_l0", (9, 5)), ("weight_hh_l0", (9, 3)), ("bias_ih_l0", (9,)), ("bias_hh_l0", (9,)),
        ("weight_ih_l0_reverse", (9, 5)), ("weight_hh_l0_reverse", (9, 3)), ("bias_ih_l0_reverse", (9,)),
        ("bias_hh_l0_reverse", (9,)),
        ("weight_ih_l1", (9, 6)), ("weight_hh_l1", (9, 3)), ("bias_ih_l1", (9,)), ("bias_hh_l1", (9,)),
        ("weight_ih_l1_reverse", (9, 6)), ("weight_hh_l1_reverse", (9, 3)), ("bias_ih_l1_reverse", (9,)),
        ("bias_hh_l1_reverse", (9,))]
    assert list(make_op("lstm", bias=False).param_shapes().items()) == [("weight_ih_l0", (12, 3)),
                                                                       ("weight_hh_l0", (12, 3))]
    assert make_op("rnn", hidden_size=7).param_shapes()["weight_hh_l0"] == (7, 7)


def test_initialisation_as_pytorch():
    op = make_op("lstm", hidden_size=16, num_layers=2)
    params = op.init_params(np.random.default_rng(0))
    for name, value in params.items():
        assert value.dtype == np.float32 and value.shape == op.param_shapes()[name]
        assert np.abs(value).max() <= 1 / math.sqrt(16) and np.abs(value).max() > 0.9 / math.sqrt(16), name
    assert not np.array_equal(params["weight_hh_l0"][:16], params["weight_hh_l0"][16:32])


def test_output_shapes_macs_and_geometry():
    lstm = make_op("lstm", features=28, steps=28, states=False, hidden_size=128)
    assert lstm.output_shape == (28, 128)
    assert lstm.macs() == 28 * 4 * 128 * (28 + 128)
    assert lstm.geometry() == GLOBAL
    deep = make_op("gru", features=10, steps=7, num_layers=2, bidirectional=True, output="hidden", hidden_size=5)
    assert deep.output_shape == (4, 5)
    assert deep.macs() == 2 * 7 * 15 * (10 + 5) + 2 * 7 * 15 * (10 + 5)  # layer 1 reads D·H = 10 features too
    assert make_op("lstm", output="cell", num_layers=3).output_shape == (3, H)
    assert make_op("rnn", bidirectional=True).output_shape == (T, 2 * H)
    assert make_op("rnn", features=4, steps=2, hidden_size=6).macs() == 2 * 6 * (4 + 6)


@pytest.mark.parametrize("cell, shapes, attrs, message", [
    ("lstm", [(4, 3)], {}, "needs hidden_size"),
    ("lstm", [(4, 3)], {"hidden_size": 0}, "hidden_size must be a positive int, got 0"),
    ("gru", [(4, 3)], {"hidden_size": 2, "num_layers": 1.0}, "num_layers must be a positive int"),
    ("rnn", [(4, 3)], {"hidden_size": 2, "bidirectional": 1}, "bidirectional must be true or false"),
    ("rnn", [(4, 3)], {"hidden_size": 2, "bias": "no"}, "bias must be true or false"),
    ("lstm", [(4, 3)], {"hidden_size": 2, "dropout": 1.5}, "dropout is the probability"),
    ("rnn", [(4, 3)], {"hidden_size": 2, "nonlinearity": "sigmoid"}, "nonlinearity must be 'tanh' or 'relu'"),
    ("lstm", [(4, 3)], {"hidden_size": 2, "nonlinearity": "tanh"}, "does not take nonlinearity"),
    ("lstm", [(4, 3)], {"hidden_size": 2, "batch_first": True}, "does not take batch_first"),
    ("gru", [(4, 3)], {"hidden_size": 2, "output": "cell"}, r"output must be one of 'sequence', 'hidden', got "
                                                            r"'cell' \(only an LSTM has a cell state\)"),
    ("lstm", [(4, 3)], {"hidden_size": 2, "output": "all"}, "output must be one of 'sequence', 'hidden', 'cell'"),
    ("lstm", [(1, 28, 28)], {"hidden_size": 2}, r"reads a sequence \(T, F\), time steps first and features last, "
                                                 r"but its input has shape \[1, 28, 28\]: put a 'reshape' node to "
                                                 r"\[28, 28\] before it"),
    ("gru", [(12,)], {"hidden_size": 2}, r"its input has shape \[12\]"),
    ("gru", [(4, 3), (1, 2), (1, 2)], {"hidden_size": 2}, r"'gru' takes 1 to 2 inputs \(x, h0; initial states "
                                                          r"default to zeros\), got 3"),
    ("lstm", [(4, 3), (2, 2)], {"hidden_size": 2}, r"initial state h0 has shape \[2, 2\], but 1 layer\(s\) x 1 "
                                                   r"direction\(s\) of hidden_size 2 need \[1, 2\]"),
    ("lstm", [(4, 3), (2, 2), (2, 3)], {"hidden_size": 2, "bidirectional": True}, r"initial state c0 has shape"),
])
def test_op_errors_name_the_node(cell, shapes, attrs, message):
    with pytest.raises(SpecError, match=rf"node 'n'.*{message}"):
        OP_REGISTRY[cell]("n", cell, attrs, shapes)


def test_initial_states_from_other_nodes_in_a_graph(rng):
    """A graph passes initial states as extra inputs (here a constant, shared by the batch, then scaled)."""
    graph = Graph({"input_shape": [T, F], "nodes": [
        {"id": "h0", "op": "constant", "inputs": [], "shape": [2, H]},
        {"id": "gru", "op": "gru", "inputs": ["input", "h0"], "hidden_size": H, "num_layers": 2, "output": "hidden"}]})
    params = graph.init_params(1)
    params["h0.value"] = rng.standard_normal((2, H)).astype(np.float32)
    x = rng.standard_normal((3, T, F)).astype(np.float32)
    trace = graph.forward(x, params)
    op = graph.by_id["gru"].op
    ref, _ = op.forward([x, np.repeat(params["h0.value"][None], 3, axis=0)],
                        {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("gru.")}, context(False))
    np.testing.assert_array_equal(trace.output, ref)
    grads = graph.backward(trace, {"gru": np.ones_like(trace.output)})
    assert grads.input.shape == x.shape and "gru.weight_hh_l1" in grads.params


# --- whole graphs ---------------------------------------------------------------------------------------


def row_lstm_spec(hidden: int = 3) -> dict:
    """A digit read row by row: (1, 28, 28) -> (28, 28) -> lstm, final hidden state -> flatten -> linear."""
    return {"input_shape": [1, 28, 28], "nodes": [
        {"id": "rows", "op": "reshape", "shape": [28, 28]},
        {"id": "lstm", "op": "lstm", "hidden_size": hidden, "output": "hidden"},
        {"id": "flat", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 10}]}


def row_gru_attention_spec(hidden: int = 3) -> dict:
    """Rows -> gru, every step's output -> attention pooling over the steps -> linear."""
    return {"input_shape": [1, 28, 28], "nodes": [
        {"id": "rows", "op": "reshape", "shape": [28, 28]},
        {"id": "gru", "op": "gru", "hidden_size": hidden},
        {"id": "attention", "op": "sequence_attention", "attention_size": 2},
        {"id": "fc", "op": "linear", "out_features": 10}]}


def float64_params(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-1, 1, shape) for name, shape in graph.param_shapes().items()}


@pytest.mark.parametrize("spec", [row_lstm_spec, row_gru_attention_spec])
def test_graph_gradient_check(spec):
    graph = Graph(spec())
    rng = np.random.default_rng(8)
    errors = graph_gradient_errors(graph, rng.standard_normal((2, 1, 28, 28)) * 0.5, float64_params(graph, 9))
    assert set(errors) == {"input", *graph.trainable_names()}
    assert max(errors.values()) < 1e-7, errors


def test_graph_gradient_check_catches_a_backward_cut_off_in_time(monkeypatch):
    """Negative control at graph level: an LSTM whose backward forgets the recurrent product is caught."""
    graph = Graph(row_lstm_spec())
    op_class = type(graph.by_id["lstm"].op)
    original = op_class.backward

    def cut_off(self, dout, cache):
        for layer in cache[0]["layers"]:
            layer["w_hh"] = np.zeros_like(layer["w_hh"])
        return original(self, dout, cache)

    monkeypatch.setattr(op_class, "backward", cut_off)
    rng = np.random.default_rng(8)
    errors = graph_gradient_errors(graph, rng.standard_normal((2, 1, 28, 28)) * 0.5, float64_params(graph, 9))
    assert errors["input"] > 1e-2 and errors["lstm.weight_ih_l0"] > 1e-2, errors


@pytest.mark.parametrize("spec", [row_lstm_spec, row_gru_attention_spec])
def test_lean_pass_equals_the_recording_bit_for_bit(spec):
    graph = Graph(spec(hidden=16))
    params = graph.init_params(2)
    x = np.random.default_rng(4).standard_normal((5, 1, 28, 28)).astype(np.float32)
    trace = graph.forward(x, params)
    lean = graph.forward(x, params, keep_caches=False, keep=())
    np.testing.assert_array_equal(lean.output, trace.output)
    np.testing.assert_array_equal(graph.forward(x, params, training=True).output, trace.output)  # no dropout
    assert all(a.dtype == np.float32 for a in trace.activations.values())
    grads = graph.backward(trace, {graph.output_id: np.ones_like(trace.output)})
    assert grads.input.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.params.values())
