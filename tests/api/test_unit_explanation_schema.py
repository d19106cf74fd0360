"""Issue 17: the unit explanation is a union told apart by ``kind``, one model per family.

Every op the engine's registry calls explainable gives an explanation that validates against the union, lands on the
model of its family and loses no field on the way; the OpenAPI document has one component per kind, behind a
discriminator on ``kind``.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from app.core.config import Settings
from app.main import create_app
from app.schemas.explanations import EXPLANATIONS, UnitExplanation
from engine.explain import REGISTRY, explain_softmax_of_scores, explain_unit, explainable_ops, unit_shape
from engine.graph import Graph

REF_PREFIX = "#/components/schemas/"
EVERY_OP = {"input_shape": [4, 5, 5], "nodes": [
    {"id": "conv", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "stride": [2, 1]},
    {"id": "bn", "op": "batch_norm"},
    *({"id": op, "op": op, "inputs": ["bn"]} for op in
      ("relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "identity", "dropout")),
    {"id": "clip", "op": "clip", "min": -0.5, "max": 0.25, "inputs": ["bn"]},
    {"id": "gelu", "op": "gelu", "inputs": ["bn"]},
    {"id": "sqrt", "op": "sqrt", "inputs": ["relu6"]},
    {"id": "cube", "op": "pow", "exponent": 3, "inputs": ["bn"]},
    {"id": "sum", "op": "add", "inputs": ["relu6", "tanh", "clip"]},
    {"id": "prod", "op": "mul", "inputs": ["sigmoid", "silu"]},
    {"id": "max", "op": "max_pool2d", "kernel_size": 2, "padding": 1, "inputs": ["prod"]},
    {"id": "avg", "op": "avg_pool2d", "kernel_size": 2, "padding": 1, "inputs": ["prod"]},
    {"id": "score", "op": "conv2d", "out_channels": 1, "kernel_size": 1, "inputs": ["prod"]},
    {"id": "att", "op": "spatial_softmax"},
    {"id": "pooled", "op": "attention_pool", "inputs": ["sum", "att"]},
    {"id": "gap", "op": "global_avg_pool", "inputs": ["hardswish"]},
    {"id": "mirror", "op": "pad", "padding": [[1, 2], [2, 0]], "mode": "reflect", "inputs": ["input"]},
    {"id": "border", "op": "pad", "padding": 1, "value": 0.5, "inputs": ["input"]},
    {"id": "near", "op": "upsample", "scale_factor": 2, "inputs": ["input"]},
    {"id": "smooth", "op": "upsample", "scale_factor": 2, "mode": "bilinear", "inputs": ["input"]},
    {"id": "deconv", "op": "conv_transpose2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1,
     "output_padding": 1, "inputs": ["input"]},
    {"id": "rows", "op": "reshape", "shape": [20, 5], "inputs": ["input"]},
    {"id": "elman", "op": "rnn", "hidden_size": 3, "nonlinearity": "relu"},
    {"id": "lstm", "op": "lstm", "hidden_size": 2, "bidirectional": True, "output": "hidden", "inputs": ["rows"]},
    {"id": "gru", "op": "gru", "hidden_size": 2, "num_layers": 2, "inputs": ["rows"]},
    {"id": "flat", "op": "flatten", "inputs": ["gap"]},
    {"id": "fc", "op": "linear", "out_features": 5},
    {"id": "probs", "op": "softmax"}]}


def without_none(value: Any) -> Any:
    """The engine's dict as the API sends it: keys whose value is None left out (list items kept)."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value


def explanations():
    """A few units of every explained node of EVERY_OP, and the softmax of the fc scores."""
    graph = Graph(EVERY_OP)
    params = graph.init_params(0)
    x = np.random.default_rng(1).standard_normal((1, *EVERY_OP["input_shape"])).astype(np.float32)
    trace = graph.forward(x, params)
    for node in graph.nodes:
        if node.op.op in REGISTRY:
            for index in itertools.islice(itertools.product(*(range(n) for n in unit_shape(node))), 0, None, 7):
                yield explain_unit(graph, params, trace, node.id, index)
    yield explain_softmax_of_scores(graph, trace, "fc", (2,))


def test_every_explainable_op_validates_against_the_union_without_losing_a_field():
    kinds = set()
    for e in explanations():
        model = UnitExplanation.model_validate(e).root
        assert model.kind == e["kind"] and model.family == REGISTRY[e["kind"]].family
        assert model.model_dump(exclude_none=True) == without_none(e), e["kind"]
        kinds.add(e["kind"])
    assert kinds == set(explainable_ops())  # the spec above covers the whole registry


def test_a_field_of_another_family_is_refused():
    pool = next(e for e in explanations() if e["kind"] == "max_pool2d")
    with pytest.raises(ValueError, match="divisor"):
        UnitExplanation.model_validate({**pool, "kind": "avg_pool2d"})  # avg pooling has sum and divisor instead
    with pytest.raises(ValueError, match="kind"):
        UnitExplanation.model_validate({**pool, "kind": "flatten"})


@pytest.fixture
def schemas(settings: Settings) -> dict[str, dict[str, Any]]:
    return create_app(settings).openapi()["components"]["schemas"]


def test_the_openapi_schema_has_one_component_per_kind_behind_a_discriminator(schemas):
    union = schemas["UnitExplanation"]
    assert union["discriminator"]["propertyName"] == "kind"
    mapping = union["discriminator"]["mapping"]
    assert set(mapping) == set(explainable_ops())
    assert {ref["$ref"] for ref in union["oneOf"]} == set(mapping.values())
    assert {ref.removeprefix(REF_PREFIX) for ref in mapping.values()} == {m.__name__ for m in EXPLANATIONS}
    for kind, ref in mapping.items():
        component = schemas[ref.removeprefix(REF_PREFIX)]
        kind_schema = component["properties"]["kind"]
        assert kind in kind_schema.get("enum", [kind_schema.get("const")]), (kind, ref)
        assert component["properties"]["family"]["default"] == REGISTRY[kind].family
