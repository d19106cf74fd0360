"""Tiny ONNX models built with ``onnx.helper`` for the importer's tests, and onnxruntime as their reference.

``Builder`` collects nodes and random initializers; ``build()`` gives the serialised model. Inputs
and weights are seeded so that each case is the same on every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


class Builder:
    """A one-input, one-output ONNX graph under construction.

    ``input_shape`` includes the batch axis; give ``"N"`` as its first entry for a dynamic batch.
    """

    def __init__(self, input_shape: list[int | str], opset: int = 17, seed: int = 0, name: str = "test") -> None:
        self.input_shape = list(input_shape)
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.name = name
        self.output_shape: list[int | str] | None = None  # for outputs shape inference cannot work out
        self._count = 0

    def weight(self, shape: tuple[int, ...], name: str | None = None, scale: float = 0.5,
               positive: bool = False) -> str:
        """A random float32 initializer; returns its name."""
        value = self.rng.standard_normal(shape).astype(np.float32) * scale
        if positive:
            value = np.abs(value) + 0.5
        return self.const(value, name)

    def const(self, value: Any, name: str | None = None) -> str:
        """An initializer holding ``value``; returns its name."""
        self._count += 1
        name = name or f"w{self._count}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, name: str | None = None,
             domain: str = "", **attrs: Any) -> str | list[str]:
        """Append a node; returns its (first) output name, or all of them when ``outputs`` is a list."""
        self._count += 1
        names = outputs if isinstance(outputs, list) else [f"t{self._count}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=name if name is not None else
                                           f"{op_type}_{self._count}", domain=domain or None, **attrs))
        return names if isinstance(outputs, list) else names[0]

    def build(self, output: str | list[str], extra_inputs: list[onnx.ValueInfoProto] | None = None) -> bytes:
        outputs = [output] if isinstance(output, str) else output
        model = helper.make_model(
            helper.make_graph(
                self.nodes, self.name,
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.input_shape), *(extra_inputs or [])],
                [helper.make_tensor_value_info(o, TensorProto.FLOAT, self.output_shape) for o in outputs],
                self.initializers,
            ),
            opset_imports=[helper.make_opsetid("", self.opset)],
            producer_name="onnx.helper",
        )
        model.ir_version = min(model.ir_version, 10)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)  # fills the output's shape
        onnx.checker.check_model(model)  # the test models themselves are valid ONNX
        return model.SerializeToString()

    def sample(self, batch: int = 2) -> np.ndarray:
        """A random input of the declared shape (batch ``batch`` where the batch axis is dynamic)."""
        shape = [batch if isinstance(d, str) else d for d in self.input_shape]
        return np.random.default_rng(99).standard_normal(shape).astype(np.float32)


def run_onnxruntime(model: bytes, x: np.ndarray) -> np.ndarray:
    """The reference: onnxruntime on one thread, graph optimisations off (the model as written).

    Skips the calling test where onnxruntime is not installed (it is a test-only dependency).
    """
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (a test-only reference) is not installed")
    ort.set_default_logger_severity(4)  # combinations onnxruntime refuses raise; no log noise on top
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    run_options = ort.RunOptions()
    run_options.log_severity_level = 4
    return session.run(None, {session.get_inputs()[0].name: x}, run_options)[0]
