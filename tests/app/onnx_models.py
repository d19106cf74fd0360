"""Tiny ONNX models built with ``onnx.helper`` for the importer's tests, and onnxruntime as their reference.

``Builder`` collects nodes and random initializers; ``build()`` gives the serialised model. Inputs
and weights are seeded so that each case is the same on every run. ``check_against_onnxruntime`` imports a
built model and holds the engine's output (recording and lean passes) to onnxruntime's; ``export_with_torch``
writes a module with ``torch.onnx.export`` (skipping the test where the exporter is unusable).
"""

from __future__ import annotations

import io
import warnings
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


def check_against_onnxruntime(builder: Builder, output: str, relative: float = 1e-5,
                              batch: int = 2) -> tuple[dict, dict, dict]:
    """Import ``builder``'s model, run it in the engine (recording and lean passes) and in onnxruntime, require the
    outputs to agree within ``relative`` of the reference's largest magnitude; return the import."""
    from app.importers import import_onnx
    from engine.analysis import analyze
    from engine.graph import Graph

    model = builder.build(output)
    x = builder.sample(batch)
    reference = run_onnxruntime(model, x)
    spec, params, info = import_onnx(model)
    graph = Graph(spec)
    mine = graph.forward(x, params).output
    assert mine.shape == reference.shape, f"engine {mine.shape} vs onnxruntime {reference.shape}\n{spec}"
    scale = float(np.abs(reference).max())
    assert np.all(np.isfinite(reference)) and scale > 1e-3, "a degenerate reference proves nothing"
    error = float(np.abs(mine - reference).max()) / scale
    assert error <= relative, f"engine vs onnxruntime: relative difference {error:.3g}\n{spec}"
    np.testing.assert_array_equal(graph.forward(x, params, keep_caches=False, keep=()).output, mine)
    analyze(graph, strict=False)  # the architecture view (receptive fields included) takes the graph
    return spec, params, info


def export_with_torch(torch: Any, model: Any, x: Any, opset: int = 17) -> bytes:
    """``model`` (in eval mode) written by ``torch.onnx.export`` (the TorchScript exporter, dynamic batch), or the
    calling test skipped where the exporter cannot run (its dependencies vary across torch builds)."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=opset, input_names=["image"],
                              output_names=["out"], dynamic_axes={"image": {0: "batch"}})
    except (ImportError, ModuleNotFoundError, RuntimeError) as error:
        pytest.skip(f"torch.onnx.export is not usable here: {error}")
    return buffer.getvalue()
