"""Recurrent layers (PyTorch's ``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) as forward/backward pairs, through time.

Conventions are PyTorch's, gates stacked in its order (docs/recurrent.md has the equations):

    rnn:   h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)                   (or relu)
    lstm:  [i, f, g, o] = [σ, σ, tanh, σ](W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
           c_t = f ⊙ c_{t-1} + i ⊙ g;   h_t = o ⊙ tanh(c_t)
    gru:   [r, z] = σ(W_i[r,z] x_t + b_i[r,z] + W_h[r,z] h_{t-1} + b_h[r,z])
           n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn));   h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

One layer in one direction is a ``*_layer_forward`` / ``*_layer_backward`` pair working time-major, ``x: (T, N,
F)``: every step's input projection ``W_ih x_t`` is one matrix product before the loop, and only the recurrent
product ``W_hh h_{t-1}`` is inside it. The backward pass runs the loop the other way (backpropagation through
time), keeps each step's gradient of the pre-activations ``da: (T, N, G·H)`` (G gates), and turns them into the
weights' gradients with one product each after the loop. A reverse direction reads the steps from last to first
and stores step t at index t, so every array is in input order.

``recurrent_forward`` / ``recurrent_backward`` stack the layers and the two directions as PyTorch does:
batch-first ``x: (N, T, F)``, initial states ``(N, L·D, H)`` (D = 2 if bidirectional), dropout between layers in
training, and return the top layer's outputs ``(N, T, D·H)`` and the final states ``h_n``, ``c_n``.
Inside ``grad_mode.input_grads_only()`` the weights' gradients are skipped (None); inside
``grad_mode.without_input_grad()`` the first layer's dx and the initial states' gradients.

The LSTM's and GRU's forward loops that run are ``engine.layers.fast.recurrent``'s: the same numbers with fewer
NumPy calls per step (``recurrent_forward(..., fast=False)`` runs the loop forms written here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.layers.dropout import dropout_backward, dropout_forward
from engine.layers.fast.recurrent import gru_forward_steps, lstm_forward_steps
from engine.layers.grad_mode import input_grad_wanted, param_grads_wanted
from engine.layers.merge import unbroadcast

#: gates stacked in the weights, in PyTorch's order
GATES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
#: the recurrent states a cell carries (and takes as initial states)
STATES = {"rnn": ("h",), "lstm": ("h", "c"), "gru": ("h",)}


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` written as ``(1 + tanh(x / 2)) / 2``: one ufunc, never overflows, keeps the dtype."""
    out = np.tanh(x * 0.5)
    out *= 0.5
    out += 0.5
    return out


def _steps(length: int, reverse: bool) -> range:
    """The order the steps are read in: 0 .. T−1, or T−1 .. 0 for the reverse direction."""
    return range(length - 1, -1, -1) if reverse else range(length)


def _transposed(w_hh: np.ndarray) -> np.ndarray:
    """``W_hh^T`` laid out row by row, for the product ``h @ W_hh^T`` of every step: with hidden size 128 and batch
    64 OpenBLAS takes about 60 µs for it instead of 80 µs through the transposed view."""
    return np.ascontiguousarray(w_hh.T)


def _input_projection(x: np.ndarray, w_ih: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``W_ih x_t + bias`` for every step in one product: ``x: (T, N, F)`` -> ``(T, N, G·H)``."""
    steps, n, features = x.shape
    out = x.reshape(steps * n, features) @ w_ih.T
    if bias is not None:
        out += bias
    return out.reshape(steps, n, -1)


def _recurrent_weight_grad(da: np.ndarray, hs: np.ndarray, h0: np.ndarray, reverse: bool) -> np.ndarray:
    """``dW_hh = Σ_t da_t^T h_{t-1}`` in two products, the previous states being ``hs`` shifted by one and ``h0``.

    da: (T, N, G·H); hs: (T, N, H) states after each step; h0: (N, H) -> (G·H, H).
    """
    steps, _, width = da.shape
    first = steps - 1 if reverse else 0  # the step that reads h0
    grad = da[first].T @ h0
    if steps > 1:
        later, earlier = (slice(0, steps - 1), slice(1, steps)) if reverse else (slice(1, steps), slice(0, steps - 1))
        grad += da[later].reshape(-1, width).T @ hs[earlier].reshape(-1, hs.shape[2])
    return grad


def _weight_grads(dgi: np.ndarray, dgh: np.ndarray, cache: dict[str, Any],
                  need_dx: bool) -> tuple[np.ndarray | None, list[np.ndarray | None]]:
    """dx and the weights' gradients, one product each, from every step's pre-activation gradients.

    ``dgi``: (T, N, G·H) on the input side, ``dgh`` on the recurrent side (the same array but in the GRU)::

        dx_t = dgi_t W_ih;   dW_ih = Σ_t dgi_t^T x_t;   dW_hh = Σ_t dgh_t^T h_{t-1}
        db_ih = Σ_t dgi_t;   db_hh = Σ_t dgh_t

    Returns ``(dx or None, [dw_ih, dw_hh, db_ih, db_hh])`` (no biases' without biases; all None inside
    ``input_grads_only()``).
    """
    x = cache["x"]
    steps, n, width = dgi.shape
    flat = dgi.reshape(steps * n, width)
    dx = (flat @ cache["w_ih"]).reshape(x.shape) if need_dx else None
    if not param_grads_wanted():
        return dx, [None] * 4
    grads = [flat.T @ x.reshape(steps * n, -1), _recurrent_weight_grad(dgh, cache["hs"], cache["states"][0],
                                                                        cache["reverse"])]
    if cache["has_bias"]:
        db_ih = flat.sum(axis=0)
        grads += [db_ih, db_ih.copy() if dgh is dgi else dgh.reshape(steps * n, width).sum(axis=0)]
    return dx, grads


def _layer_cache(x: np.ndarray, states: tuple[np.ndarray, ...], w_ih: np.ndarray, w_hh: np.ndarray,
                 b_ih: np.ndarray | None, reverse: bool, **arrays: Any) -> dict[str, Any]:
    """What a layer's backward pass needs: its inputs, and ``arrays`` of every step (``hs``, gates, ...)."""
    return {"x": x, "states": states, "w_ih": w_ih, "w_hh": w_hh, "has_bias": b_ih is not None, "reverse": reverse,
            **arrays}


def _summed_bias(b_ih: np.ndarray | None, b_hh: np.ndarray | None) -> np.ndarray | None:
    return None if b_ih is None else b_ih + b_hh


# --- Elman RNN ------------------------------------------------------------------------------------------


def rnn_layer_forward(x: np.ndarray, states: tuple[np.ndarray, ...], w_ih: np.ndarray, w_hh: np.ndarray,
                      b_ih: np.ndarray | None, b_hh: np.ndarray | None, reverse: bool = False,
                      nonlinearity: str = "tanh") -> tuple[np.ndarray, tuple[np.ndarray, ...], Any]:
    """One layer of ``nn.RNN`` in one direction: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

    Shape:
        x: (T, N, F) time-major; states: (h0,) with h0: (N, H); w_ih: (H, F); w_hh: (H, H); b_ih, b_hh: (H,)
        or None; out: hs (T, N, H), the state after each step; finals: (h_T,), the last step read.
    """
    (h0,) = states
    xw = _input_projection(x, w_ih, _summed_bias(b_ih, b_hh))
    hs = np.empty_like(xw)
    w_hh_t = _transposed(w_hh)
    h = h0
    for t in _steps(len(x), reverse):
        a = xw[t] + h @ w_hh_t
        h = np.tanh(a, out=a) if nonlinearity == "tanh" else np.maximum(a, 0, out=a)
        hs[t] = h
    return hs, (h,), _layer_cache(x, states, w_ih, w_hh, b_ih, reverse, hs=hs, nonlinearity=nonlinearity)


def rnn_layer_backward(dhs: np.ndarray, dfinals: tuple[np.ndarray, ...], cache: Any,
                       need_dx: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...], list]:
    """``dhs: (T, N, H)`` (from the layer above), ``dfinals = (dh_T,)`` -> ``(dx, (dh0,), [dw_ih, dw_hh, db_ih,
    db_hh])``; the biases' gradients are None without biases, every weight's inside ``input_grads_only()``."""
    x, w_hh, hs, reverse = cache["x"], cache["w_hh"], cache["hs"], cache["reverse"]
    da = np.empty_like(hs)  # gradient of each step's pre-activation
    (dh,) = dfinals
    for t in reversed(_steps(len(x), reverse)):
        dh = dhs[t] + dh
        da[t] = dh * (1 - hs[t] * hs[t]) if cache["nonlinearity"] == "tanh" else dh * (hs[t] > 0)
        dh = da[t] @ w_hh
    dx, grads = _weight_grads(da, da, cache, need_dx)
    return dx, (dh,), grads


# --- LSTM ---------------------------------------------------------------------------------------------------


def lstm_layer_forward(x: np.ndarray, states: tuple[np.ndarray, ...], w_ih: np.ndarray, w_hh: np.ndarray,
                       b_ih: np.ndarray | None, b_hh: np.ndarray | None,
                       reverse: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, ...], Any]:
    """One layer of ``nn.LSTM`` in one direction, gates i, f, g, o::

        [i, f, g, o] = [σ, σ, tanh, σ](W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
        c_t = f ⊙ c_{t-1} + i ⊙ g;   h_t = o ⊙ tanh(c_t)

    Shape:
        x: (T, N, F); states: (h0, c0), each (N, H); w_ih: (4H, F); w_hh: (4H, H); b_ih, b_hh: (4H,) or None;
        out: hs (T, N, H); finals: (h_T, c_T). The cache keeps every step's c_t, tanh(c_t) and gates (T, N, 4H).
    """
    h0, c0 = states
    hidden = h0.shape[1]
    xw = _input_projection(x, w_ih, _summed_bias(b_ih, b_hh))
    gates = np.empty_like(xw)  # activations i, f, g, o of every step
    hs = np.empty_like(xw[..., :hidden])
    cs, tanh_cs = np.empty_like(hs), np.empty_like(hs)
    w_hh_t = _transposed(w_hh)
    h, c = h0, c0
    for t in _steps(len(x), reverse):
        a = xw[t] + h @ w_hh_t
        act = gates[t]
        act[:, :2 * hidden] = sigmoid(a[:, :2 * hidden])
        act[:, 2 * hidden:3 * hidden] = np.tanh(a[:, 2 * hidden:3 * hidden])
        act[:, 3 * hidden:] = sigmoid(a[:, 3 * hidden:])
        i, f, g, o = act[:, :hidden], act[:, hidden:2 * hidden], act[:, 2 * hidden:3 * hidden], act[:, 3 * hidden:]
        c = cs[t] = f * c + i * g
        tanh_c = tanh_cs[t] = np.tanh(c)
        h = hs[t] = o * tanh_c
    return hs, (h, c), _layer_cache(x, states, w_ih, w_hh, b_ih, reverse, hs=hs, cs=cs, tanh_cs=tanh_cs, gates=gates)


def lstm_layer_backward(dhs: np.ndarray, dfinals: tuple[np.ndarray, ...], cache: Any,
                        need_dx: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...], list]:
    """``dhs: (T, N, H)``, ``dfinals = (dh_T, dc_T)`` -> ``(dx, (dh0, dc0), [dw_ih, dw_hh, db_ih, db_hh])``."""
    x, w_hh, cs, tanh_cs, gates = cache["x"], cache["w_hh"], cache["cs"], cache["tanh_cs"], cache["gates"]
    hidden = w_hh.shape[1]
    steps = len(x)
    c0 = cache["states"][1]
    da = np.empty_like(gates)  # gradient of each step's pre-activations
    dh, dc = dfinals
    for t in reversed(_steps(steps, cache["reverse"])):
        previous = t + 1 if cache["reverse"] else t - 1
        c_prev = cs[previous] if 0 <= previous < steps else c0
        act = gates[t]
        i, f, g, o = act[:, :hidden], act[:, hidden:2 * hidden], act[:, 2 * hidden:3 * hidden], act[:, 3 * hidden:]
        dh = dhs[t] + dh
        tanh_c = tanh_cs[t]
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        step = da[t]
        step[:, :hidden] = dc * g * i * (1 - i)
        step[:, hidden:2 * hidden] = dc * c_prev * f * (1 - f)
        step[:, 2 * hidden:3 * hidden] = dc * i * (1 - g * g)
        step[:, 3 * hidden:] = dh * tanh_c * o * (1 - o)
        dc = dc * f
        dh = step @ w_hh
    dx, grads = _weight_grads(da, da, cache, need_dx)
    return dx, (dh, dc), grads


# --- GRU ------------------------------------------------------------------------------------------------------


def gru_layer_forward(x: np.ndarray, states: tuple[np.ndarray, ...], w_ih: np.ndarray, w_hh: np.ndarray,
                      b_ih: np.ndarray | None, b_hh: np.ndarray | None,
                      reverse: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, ...], Any]:
    """One layer of ``nn.GRU`` in one direction, gates r, z, n::

        [r, z] = σ(W_i[r,z] x_t + b_i[r,z] + W_h[r,z] h_{t-1} + b_h[r,z])
        n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn));   h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    b_hn stays inside the reset gate's product, so only the input biases join the input projection.

    Shape:
        x: (T, N, F); states: (h0,) with h0: (N, H); w_ih: (3H, F); w_hh: (3H, H); b_ih, b_hh: (3H,) or None;
        out: hs (T, N, H); finals: (h_T,). The cache keeps every step's r, z, n and W_hn h_{t-1} + b_hn.
    """
    (h0,) = states
    hidden = h0.shape[1]
    xw = _input_projection(x, w_ih, b_ih)
    gates = np.empty_like(xw)  # activations r, z, n of every step
    hn = np.empty_like(xw[..., :hidden])  # W_hn h_{t-1} + b_hn, which the reset gate scales
    hs = np.empty_like(hn)
    w_hh_t = _transposed(w_hh)
    h = h0
    for t in _steps(len(x), reverse):
        gh = h @ w_hh_t
        if b_hh is not None:
            gh += b_hh
        act = gates[t]
        act[:, :2 * hidden] = sigmoid(xw[t, :, :2 * hidden] + gh[:, :2 * hidden])
        r, z = act[:, :hidden], act[:, hidden:2 * hidden]
        hn[t] = gh[:, 2 * hidden:]
        n = act[:, 2 * hidden:] = np.tanh(xw[t, :, 2 * hidden:] + r * hn[t])
        h = hs[t] = n + z * (h - n)
    return hs, (h,), _layer_cache(x, states, w_ih, w_hh, b_ih, reverse, hs=hs, gates=gates, hn=hn)


def gru_layer_backward(dhs: np.ndarray, dfinals: tuple[np.ndarray, ...], cache: Any,
                       need_dx: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...], list]:
    """``dhs: (T, N, H)``, ``dfinals = (dh_T,)`` -> ``(dx, (dh0,), [dw_ih, dw_hh, db_ih, db_hh])``.

    The input side and the recurrent side differ in the n gate only: ``d(W_hn h + b_hn) = r ⊙ d(pre-n)``.
    """
    x, w_hh, hs, gates, hn = cache["x"], cache["w_hh"], cache["hs"], cache["gates"], cache["hn"]
    hidden = w_hh.shape[1]
    steps = len(x)
    (h0,) = cache["states"]
    dgi = np.empty_like(gates)  # gradient of the input side's pre-activations
    dgh = np.empty_like(gates)  # and of the recurrent side's
    (dh,) = dfinals
    for t in reversed(_steps(steps, cache["reverse"])):
        previous = t + 1 if cache["reverse"] else t - 1
        h_prev = hs[previous] if 0 <= previous < steps else h0
        act = gates[t]
        r, z, n = act[:, :hidden], act[:, hidden:2 * hidden], act[:, 2 * hidden:]
        dh = dhs[t] + dh
        dn = dh * (1 - z) * (1 - n * n)  # through tanh: the gradient of n's pre-activation
        dgi[t, :, 2 * hidden:] = dn
        dgh[t, :, 2 * hidden:] = dn * r
        dgi[t, :, :hidden] = dgh[t, :, :hidden] = dn * hn[t] * r * (1 - r)
        dgi[t, :, hidden:2 * hidden] = dgh[t, :, hidden:2 * hidden] = dh * (h_prev - n) * z * (1 - z)
        dh = dh * z + dgh[t] @ w_hh
    dx, grads = _weight_grads(dgi, dgh, cache, need_dx)
    return dx, (dh,), grads


def lstm_layer_forward_fast(x: np.ndarray, states: tuple[np.ndarray, ...], w_ih: np.ndarray, w_hh: np.ndarray,
                            b_ih: np.ndarray | None, b_hh: np.ndarray | None,
                            reverse: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, ...], Any]:
    """``lstm_layer_forward`` with the loop of ``engine.layers.fast.recurrent``: the same numbers and cache."""
    order = _steps(len(x), reverse)
    arrays = lstm_forward_steps(_input_projection(x, w_ih, _summed_bias(b_ih, b_hh)), *states, w_hh, order)
    finals = (arrays["hs"][order[-1]], arrays["cs"][order[-1]])
    return arrays["hs"], finals, _layer_cache(x, states, w_ih, w_hh, b_ih, reverse, **arrays)


def gru_layer_forward_fast(x: np.ndarray, states: tuple[np.ndarray, ...], w_ih: np.ndarray, w_hh: np.ndarray,
                           b_ih: np.ndarray | None, b_hh: np.ndarray | None,
                           reverse: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, ...], Any]:
    """``gru_layer_forward`` with the loop of ``engine.layers.fast.recurrent``: the same numbers and cache."""
    order = _steps(len(x), reverse)
    arrays = gru_forward_steps(_input_projection(x, w_ih, b_ih), states[0], w_hh, b_hh, order)
    return arrays["hs"], (arrays["hs"][order[-1]],), _layer_cache(x, states, w_ih, w_hh, b_ih, reverse, **arrays)


#: the loop forms, which say what a step computes (the tests compare the fast forms with them)
LOOP_FORWARD = {"rnn": rnn_layer_forward, "lstm": lstm_layer_forward, "gru": gru_layer_forward}
LAYER_FORWARD = {"rnn": rnn_layer_forward, "lstm": lstm_layer_forward_fast, "gru": gru_layer_forward_fast}
LAYER_BACKWARD = {"rnn": rnn_layer_backward, "lstm": lstm_layer_backward, "gru": gru_layer_backward}


# --- layers and directions stacked -------------------------------------------------------------------------


def param_names(num_layers: int, bidirectional: bool, bias: bool) -> list[tuple[str, ...]]:
    """Per layer and direction (in torch's order), the names of its parameters: ``("weight_ih_l0", "weight_hh_l0",
    "bias_ih_l0", "bias_hh_l0")``, then ``..._l0_reverse``, ``..._l1``, ... (biases left out without ``bias``)."""
    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if bias else ("weight_ih", "weight_hh")
    return [tuple(f"{kind}_l{k}{'_reverse' if d else ''}" for kind in kinds)
            for k in range(num_layers) for d in range(2 if bidirectional else 1)]


def recurrent_forward(cell: str, x: np.ndarray, initial: list[np.ndarray | None], params: Mapping[str, np.ndarray],
                      num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0, training: bool = False,
                      rng: np.random.Generator | None = None, nonlinearity: str = "tanh",
                      fast: bool = True) -> tuple[tuple[np.ndarray, ...], Any]:
    """``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` with ``batch_first=True`` (``cell``: "rnn", "lstm" or "gru").

    Layer k > 0 reads the outputs of layer k − 1, both directions concatenated (forward first), after dropout
    with probability ``dropout`` in training (drawn from ``rng``). ``fast=False`` runs the loop forms of this
    module instead of ``engine.layers.fast.recurrent`` (same numbers: the tests compare them).

    Shape:
        x: (N, T, F); initial: one entry per state of the cell (h0, and c0 for the LSTM), each (N, L·D, H)
        (N may be 1: shared by every sample) or None for zeros; params: torch's names (``param_names``);
        out: (output (N, T, D·H), h_n (N, L·D, H), c_n (N, L·D, H)) for the LSTM, (output, h_n) otherwise;
        index k·D + d of h_n is layer k, direction d (1: reverse), as in torch.
    """
    hidden = params["weight_hh_l0"].shape[1]
    directions = 2 if bidirectional else 1
    batch = x.shape[0]
    has_bias = "bias_ih_l0" in params
    names = param_names(num_layers, bidirectional, has_bias)
    dtype = np.result_type(x, params["weight_ih_l0"])
    layer_in = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=dtype)  # time-major: one step is contiguous
    options = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
    rng = rng if rng is not None else np.random.default_rng()
    layer_forward = (LAYER_FORWARD if fast else LOOP_FORWARD)[cell]
    layers, masks, finals = [], [], []
    for k in range(num_layers):
        mask = None
        if k > 0 and training and dropout > 0:  # between layers, as torch
            layer_in, mask = dropout_forward(layer_in, dropout, True, rng)
        masks.append(mask)
        outputs = []
        for d in range(directions):
            index = k * directions + d
            w_ih, w_hh, *biases = (params[name] for name in names[index])
            b_ih, b_hh = biases if has_bias else (None, None)
            states = tuple(np.zeros((batch, hidden), dtype) if s is None
                           else np.broadcast_to(s[:, index], (batch, hidden)).astype(dtype, copy=False)
                           for s in initial)
            hs, last, cache = layer_forward(layer_in, states, w_ih, w_hh, b_ih, b_hh, reverse=d == 1, **options)
            outputs.append(hs)
            layers.append(cache)
            finals.append(last)
        layer_in = outputs[0] if directions == 1 else np.concatenate(outputs, axis=2)
    output = np.ascontiguousarray(layer_in.transpose(1, 0, 2))
    final_states = tuple(np.stack([last[j] for last in finals], axis=1) for j in range(len(STATES[cell])))
    cache = {"cell": cell, "num_layers": num_layers, "directions": directions, "has_bias": has_bias, "layers": layers,
             "masks": masks, "initial_shapes": [None if s is None else s.shape for s in initial], "x_shape": x.shape,
             "dtype": dtype, "hidden": hidden}
    return (output, *final_states), cache


def recurrent_backward(doutput: np.ndarray | None, dfinals: list[np.ndarray | None],
                       cache: Any) -> tuple[np.ndarray | None, list[np.ndarray | None], dict[str, np.ndarray]]:
    """Gradients of ``recurrent_forward``'s outputs, ``doutput: (N, T, D·H)`` and ``dfinals`` (dh_n, and dc_n for
    the LSTM, each (N, L·D, H)), None for an output the loss does not read, ->
    ``(dx: (N, T, F), [gradient of each initial state given, None for those not given], {param name: gradient})``.

    dx and the initial states' gradients are None inside ``without_input_grad()``; the parameters' are left out
    inside ``input_grads_only()``.
    """
    cell, num_layers, directions = cache["cell"], cache["num_layers"], cache["directions"]
    batch, steps = cache["x_shape"][:2]
    hidden, dtype = cache["hidden"], cache["dtype"]
    names = param_names(num_layers, directions == 2, cache["has_bias"])
    if doutput is None:
        dlayer = np.zeros((steps, batch, directions * hidden), dtype)
    else:
        dlayer = np.ascontiguousarray(doutput.transpose(1, 0, 2), dtype=dtype)
    dstates = [np.empty((batch, num_layers * directions, hidden), dtype) for _ in STATES[cell]]
    dparams: dict[str, np.ndarray] = {}
    for k in reversed(range(num_layers)):
        dinput = None
        for d in range(directions):
            index = k * directions + d
            dlast = tuple(np.zeros((batch, hidden), dtype) if df is None else df[:, index] for df in dfinals)
            need_dx = k > 0 or input_grad_wanted()
            dhs = dlayer[..., d * hidden:(d + 1) * hidden]
            dx, dfirst, grads = LAYER_BACKWARD[cell](dhs, dlast, cache["layers"][index], need_dx)
            for dstate, g in zip(dstates, dfirst):
                dstate[:, index] = g
            dparams.update((name, g) for name, g in zip(names[index], grads) if g is not None)
            if dx is not None:
                dinput = dx if dinput is None else dinput + dx
        if cache["masks"][k] is not None:
            dinput = dropout_backward(dinput, cache["masks"][k])
        dlayer = dinput
    dx = None if dlayer is None else np.ascontiguousarray(dlayer.transpose(1, 0, 2))
    wanted = input_grad_wanted()  # the initial states are inputs too
    dinitial = [None if shape is None or not wanted else unbroadcast(dstate, shape)
                for dstate, shape in zip(dstates, cache["initial_shapes"])]
    return dx, dinitial, dparams


def recorded_states(cache: Any) -> dict[str, np.ndarray]:
    """Per layer and direction, what each step computed, for the visualiser: ``{"h_l0": (N, T, H), ...}``.

    Keys ``"<name>_l{k}"`` and ``"<name>_l{k}_reverse"``: ``h`` (the state after each step) for every cell; ``c``
    and the gates ``i``, ``f``, ``g``, ``o`` for the LSTM; the gates ``r``, ``z``, ``n`` for the GRU. Index t is
    the step in input order, the reverse direction included.
    """
    cell, directions, hidden = cache["cell"], cache["directions"], cache["hidden"]
    found = {}
    for index, layer in enumerate(cache["layers"]):
        k, d = divmod(index, directions)
        suffix = f"_l{k}{'_reverse' if d else ''}"
        arrays = {"h": layer["hs"]}
        if "cs" in layer:
            arrays["c"] = layer["cs"]
        if "gates" in layer:
            gates = layer["gates"]
            arrays.update((name, gates[..., j * hidden:(j + 1) * hidden]) for j, name in enumerate(GATES[cell]))
        for name, value in arrays.items():
            found[name + suffix] = np.ascontiguousarray(value.transpose(1, 0, 2))
    return found
