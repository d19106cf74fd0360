"""Issue 5: every field of every request and response model is documented at /docs, with examples.

Builds the OpenAPI document the app serves at /openapi.json and checks components/schemas: every property has
a non-empty description, and every schema has an example, on the schema itself or on each property (a property
holding another schema, or a list or map of them, is shown by that schema's own example).
"""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import Settings
from app.main import create_app

REF_PREFIX = "#/components/schemas/"


@pytest.fixture
def schemas(settings: Settings) -> dict[str, dict[str, Any]]:
    """components/schemas of the app's OpenAPI document, built with the tmp-data-dir settings."""
    return create_app(settings).openapi()["components"]["schemas"]


def _has_own_example(node: dict[str, Any]) -> bool:
    return "example" in node or bool(node.get("examples"))


def _referenced(node: dict[str, Any]) -> list[str]:
    """Names of the schemas a property holds: directly, as items, as map values, or in anyOf (optional)."""
    if "$ref" in node:
        return [node["$ref"].removeprefix(REF_PREFIX)]
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            return _referenced(node[key])
    options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        return _referenced(options[0])
    return []


def _schemas_without_example(schemas: dict[str, dict[str, Any]]) -> list[str]:
    def exemplified(name: str, seen: frozenset[str]) -> bool:
        schema = schemas[name]
        if _has_own_example(schema) or "enum" in schema:  # an enum's values are its examples
            return True
        properties = schema.get("properties", {})
        if not properties or name in seen:
            return False
        return all(_has_own_example(node)
                   or ((refs := _referenced(node)) and all(exemplified(ref, seen | {name}) for ref in refs))
                   for node in properties.values())

    return [name for name in sorted(schemas) if not exemplified(name, frozenset())]


def test_the_schema_lists_the_models(schemas):
    # guards the checks below against passing on an empty or partial document
    assert {"ModelSummary", "NodeInfo", "NodeActivation", "UnitExplanation", "TrainingJob", "PlaygroundStep",
            "ErrorResponse"} <= set(schemas)


def test_every_property_has_a_description(schemas):
    missing = [f"{name}.{prop}" for name, schema in sorted(schemas.items())
               for prop, node in schema.get("properties", {}).items()
               if not str(node.get("description", "")).strip()]
    assert not missing, f"{len(missing)} properties without a description: {', '.join(missing)}"


def test_every_schema_has_an_example(schemas):
    missing = _schemas_without_example(schemas)
    assert not missing, (f"{len(missing)} schemas without an example (give the schema `examples`, or every "
                         f"property one): {', '.join(missing)}")


def test_the_example_check_catches_a_missing_example():
    # negative control: an undocumented property, directly or through a referenced schema, is reported
    schemas = {
        "Inner": {"properties": {"a": {"type": "integer"}}},
        "Outer": {"properties": {"inner": {"$ref": REF_PREFIX + "Inner"}, "b": {"type": "integer", "examples": [1]}}},
        "Fine": {"properties": {"c": {"type": "string"}}, "examples": [{"c": "x"}]},
        "Uses": {"properties": {"fine": {"type": "array", "items": {"$ref": REF_PREFIX + "Fine"}}}},
    }
    assert _schemas_without_example(schemas) == ["Inner", "Outer"]


def test_request_examples_validate():
    # the examples /docs offers under "Try it out" must be accepted by the models themselves
    from app.schemas.playground import PlaygroundStep
    from app.schemas.training import TrainingSettings

    for model in (TrainingSettings, PlaygroundStep):
        for example in model.model_json_schema()["examples"]:
            model.model_validate(example)
