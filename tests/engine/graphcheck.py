"""A float64 central-difference gradient check of a whole graph, w.r.t. its input and every trainable parameter."""

from __future__ import annotations

import numpy as np

from engine.gradcheck import numeric_gradient, relative_error
from engine.graph import Graph


def graph_gradient_errors(graph: Graph, x: np.ndarray, params: dict[str, np.ndarray], training: bool = False,
                          seed: int = 0) -> dict[str, float]:
    """Relative error of ``graph.backward`` against central differences of ``sum(output * dout)``.

    ``x`` and ``params`` must be float64. Buffers are restored after every evaluation, so batch
    norm in training mode sees the same running statistics each time (its output does not use them).
    Keys: ``"input"`` and every trainable parameter name.
    """
    buffers = {k: v.copy() for k, v in params.items() if k not in graph.trainable_names()}

    def run():
        trace = graph.forward(x, params, training=training, rng=np.random.default_rng(seed))
        for k, v in buffers.items():
            params[k][...] = v
        return trace

    trace = run()
    dout = np.random.default_rng(seed + 1).standard_normal(trace.output.shape)
    grads = graph.backward(trace, {graph.output_id: dout})

    def f() -> float:
        return float(np.sum(run().output * dout))

    errors = {"input": relative_error(grads.input, numeric_gradient(f, x))}
    for name in graph.trainable_names():
        errors[name] = relative_error(grads.params[name], numeric_gradient(f, params[name]))
    return errors
