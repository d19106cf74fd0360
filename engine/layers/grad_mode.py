"""Which gradients a backward pass computes: the parameters' too (training), or only the inputs' (attribution).

Attribution methods (saliency, SmoothGrad, Integrated Gradients, Grad-CAM) need the gradient of a score with
respect to the input or an activation only; every weight gradient they would compute on the way is thrown
away, and for a convolution it costs about as much as the input gradient. ``Graph.backward(..., params=False)``
runs its pass inside ``input_grads_only()``; layers whose weight gradients are costly ask
``param_grads_wanted()`` and return None for them (as ``torch.no_grad`` does for autograd).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_PARAM_GRADS = contextvars.ContextVar("engine_param_grads", default=True)


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
