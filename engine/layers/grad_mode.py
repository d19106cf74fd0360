"""Which gradients a backward pass computes: the parameters' too (training), or only the inputs' (attribution).

Attribution methods (saliency, SmoothGrad, Integrated Gradients, Grad-CAM) need the gradient of a score with
respect to the input or an activation only; every weight gradient they would compute on the way is thrown
away, and for a convolution it costs about as much as the input gradient. ``Graph.backward(..., params=False)``
runs its pass inside ``input_grads_only()``; layers whose weight gradients are costly ask
``param_grads_wanted()`` and return None for them (as ``torch.no_grad`` does for autograd).

Training is the other way round: it needs every parameter's gradient but not the gradient of the input
images, which for the first convolution costs a whole transposed convolution. ``Graph.backward(...,
input_grad=False)`` runs the nodes that read the graph's input inside ``without_input_grad()``; layers ask
``input_grad_wanted()`` and return None for dx.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_PARAM_GRADS = contextvars.ContextVar("engine_param_grads", default=True)
_INPUT_GRAD = contextvars.ContextVar("engine_input_grad", default=True)


def param_grads_wanted() -> bool:
    """False inside ``input_grads_only()``: a layer's backward may then skip its parameters' gradients."""
    return _PARAM_GRADS.get()


@contextmanager
def input_grads_only() -> Iterator[None]:
    """Backward passes in this block (this thread only) need the inputs' gradients, not the parameters'."""
    token = _PARAM_GRADS.set(False)
    try:
        yield
    finally:
        _PARAM_GRADS.reset(token)


def input_grad_wanted() -> bool:
    """False inside ``without_input_grad()``: a layer's backward may then skip its input's gradient (None)."""
    return _INPUT_GRAD.get()


@contextmanager
def without_input_grad() -> Iterator[None]:
    """Backward passes in this block (this thread only) need the parameters' gradients, not the input's."""
    token = _INPUT_GRAD.set(False)
    try:
        yield
    finally:
        _INPUT_GRAD.reset(token)
