"""The contract every graph operation fulfils, and the registry that maps op names to classes.

An op is built once per graph node from the node's attributes and the shapes of its inputs
(shapes never include the batch axis). It then knows its output shape, its parameters, its cost
and its geometry, and it runs forward and backward on batches:

    forward(inputs, params, ctx) -> (out, cache)     inputs: list of (N, *input_shape) arrays
    backward(dout, cache)        -> (dinputs, dparams)

``dinputs`` has one entry per input (None where the input takes no gradient); ``dparams`` has one
entry per *trainable* parameter. Buffers (batch norm's running statistics) are parameters that
take no gradient; an op that updates them in training mode does so in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from engine.errors import SpecError

Shape = tuple[int, ...]

REQUIRED: Any = object()  # marks an attribute a spec must give

OP_REGISTRY: dict[str, type[Op]] = {}

#: How the explorer's "main layers" view treats an op (``engine.main_layers``): a "convolution" shares the column of
#: a "normalisation" or "activation" right after it; a "normalisation" or "pass_through" shares the column of an
#: "activation", "normalisation" or "pass_through" right after it; a "hidden" op has no column.
MainView = Literal["convolution", "normalisation", "pass_through", "activation", "hidden"]


def register_op(*names: str):
    """Class decorator: make the op available in specs under each of ``names``."""

    def decorate(cls: type[Op]) -> type[Op]:
        for name in names:
            if name in OP_REGISTRY:
                raise RuntimeError(f"op '{name}' registered twice")
            OP_REGISTRY[name] = cls
        cls.op_names = tuple(names)
        return cls

    return decorate


@dataclass(frozen=True)
class AxisGeometry:
    """How one spatial axis maps output positions onto input positions.

    Output unit ``i`` reads input positions ``i * stride - padding + j * dilation`` for
    ``j = 0 .. kernel - 1``. An op that keeps positions as they are has ``(1, 1, 0, 1)``.
    ``transposed`` marks a transposed convolution, whose stride runs the other way.
    """

    kernel: int
    stride: int
    padding: int
    dilation: int = 1
    transposed: bool = False

    @property
    def effective_kernel(self) -> int:
        """The span the dilated kernel covers: ``dilation * (kernel - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1


IDENTITY = "identity"  # geometry(): positions map one to one
GLOBAL = "global"  # geometry(): every output unit sees every input position


@dataclass
class ForwardContext:
    """What a forward pass needs besides inputs and parameters."""

    training: bool = False
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    #: set by the graph for one call: the op may write its result into ``inputs[0]``, which nothing
    #: reads afterwards (lean inference passes only; ops that can, declare ``can_overwrite``)
    overwrite: bool = False


class Op:
    """Base class of every operation. Subclasses set ``defaults`` and override what they need."""

    op_names: ClassVar[tuple[str, ...]] = ()
    #: attribute name -> default (``REQUIRED`` for attributes a spec must give)
    defaults: ClassVar[dict[str, Any]] = {}
    #: how many inputs the op takes (None: one or more)
    arity: ClassVar[int | None] = 1
    #: names in ``param_shapes()`` that are buffers, not trained
    buffer_names: ClassVar[tuple[str, ...]] = ()
    #: the op can compute in place, into ``inputs[0]``, when ``ctx.overwrite`` allows it
    can_overwrite: ClassVar[bool] = False
    #: what the op is called in lessons and labels ("Convolution", "Batch normalisation"); every op sets one
    title: ClassVar[str] = ""
    #: its part in the "main layers" view (see ``MainView``); None: it keeps a column of its own
    main_view: ClassVar[MainView | None] = None

    def __init__(self, node_id: str, op: str, attrs: dict[str, Any], input_shapes: list[Shape]) -> None:
        self.node_id = node_id
        self.op = op
        self.input_shapes = [tuple(s) for s in input_shapes]
        unknown = sorted(set(attrs) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise SpecError(node_id, f"op '{op}' does not take {', '.join(unknown)} (it takes: {allowed})")
        missing = [k for k, v in self.defaults.items() if v is REQUIRED and k not in attrs]
        if missing:
            raise SpecError(node_id, f"op '{op}' needs {', '.join(missing)}")
        self.attrs: dict[str, Any] = {**self.defaults, **attrs}
        if self.arity is not None and len(input_shapes) != self.arity:
            raise SpecError(node_id, f"op '{op}' takes {self.arity} input(s), got {len(input_shapes)}")
        if self.arity is None and not input_shapes:
            raise SpecError(node_id, f"op '{op}' needs at least one input")
        self.output_shape: Shape = tuple(self.build())

    # --- built once -------------------------------------------------------------------------
    def build(self) -> Shape:
        """Validate attributes against the input shapes; return the output shape (no batch axis)."""
        return self.input_shapes[0]

    def fail(self, message: str) -> SpecError:
        """A SpecError naming this node, to ``raise``."""
        return SpecError(self.node_id, message)

    def param_shapes(self) -> dict[str, Shape]:
        """Parameter name -> shape, buffers included (e.g. ``{"weight": (K, C, kh, kw), "bias": (K,)}``)."""
        return {}

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Fresh float32 parameters (PyTorch's default initialisation where it has one)."""
        return {name: np.zeros(shape, dtype=np.float32) for name, shape in self.param_shapes().items()}

    def macs(self) -> int:
        """Multiply-accumulates for one sample (0 for ops that do none)."""
        return 0

    def geometry(self) -> list[AxisGeometry] | str:
        """Per spatial axis, how output positions map to input positions; or IDENTITY / GLOBAL."""
        return IDENTITY

    def aligned_axes(self) -> list[dict[int, int]] | None:
        """Per input, ``{output axis: input axis}`` for the axes along which output index i reads that input at
        index i only (axes of the per-sample shapes, no batch axis; the two have the same size). Along any other
        axis the input is read whole (a contraction, a normalisation) or broadcast (size 1, or absent).

        None (the default): not worked out, and the receptive-field analysis knows the op by ``geometry()``
        alone. ``geometry()`` reads the last axes as positions; this lets the analysis follow positions that a
        transpose moved elsewhere (ConvNeXt's channels-last (H, W, C) between two transposes).
        """
        return None

    def describe(self) -> dict[str, Any]:
        """The node's attributes in canonical form (per-axis tuples, padding pairs), for display."""
        return dict(self.attrs)

    # --- per batch --------------------------------------------------------------------------
    def forward(
        self, inputs: list[np.ndarray], params: dict[str, np.ndarray], ctx: ForwardContext
    ) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def backward(self, dout: np.ndarray, cache: Any) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        raise NotImplementedError

    @property
    def trainable_names(self) -> list[str]:
        return [n for n in self.param_shapes() if n not in self.buffer_names]
