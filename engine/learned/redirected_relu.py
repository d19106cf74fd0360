"""Lucid's redirected ReLU gradient: how a visualisation starts when the unit does not fire at all on the first picture.

A ReLU whose input is negative everywhere passes no gradient, so gradient ascent from a picture that leaves the
channel at 0 never moves. Lucid (``lucid/optvis/overrides/redirected_relu_grad.py``) replaces the ReLU's (and
ReLU6's) gradient for the first 16 steps, for each sample whose ordinary gradient through that ReLU is all zero,
by the upstream gradient itself, except where it would push the input further out of the active range::

    0 <= x <= 6   pass the gradient
    x < 0         pass it only where it raises x   (dout > 0: gradient *ascent* raises x where d/dx > 0)
    x > 6         pass it only where it lowers x   (ReLU6)

Used as a ``rule`` of :meth:`engine.graph.Graph.backward`; a sample with any gradient getting through keeps
the ordinary one. Lucid turns the rule off after 16 steps; :mod:`engine.learned.feature_vis` keeps it on for every
step by default, since it changes nothing while a gradient gets through, and a channel that falls back to zero
after step 16 (a random transform can do that) would otherwise stay there.
"""

from __future__ import annotations

import numpy as np

from engine.graph import Node, Trace

#: Lucid returns the ordinary gradient after this many steps
REDIRECTED_STEPS = 16

_UPPER = {"relu": np.inf, "relu6": 6.0}


def redirected_relu_rule(node: Node, dout: np.ndarray, trace: Trace) -> list[np.ndarray | None] | None:
    """The gradient of a relu or relu6 node's input (a list of one), or None (the op's own) for other ops."""
    upper = _UPPER.get(node.op.op)
    if upper is None:
        return None
    x = trace.activations[node.inputs[0]]
    ordinary = dout * ((x > 0) & (x < upper))
    blocked = ~np.any(ordinary.reshape(len(x), -1) != 0, axis=1)
    if not blocked.any():
        return [ordinary]
    redirected = np.where(((x < 0) & (dout < 0)) | ((x > upper) & (dout > 0)), 0, dout).astype(dout.dtype)
    return [np.where(blocked.reshape((-1,) + (1,) * (x.ndim - 1)), redirected, ordinary)]
