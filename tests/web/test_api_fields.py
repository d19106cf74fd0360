"""The pages read the API's answers by their real field names (issue 17): no fallback to another name, or to the
whole answer, that would hide a change in the API instead of showing it as an error. Checked on the files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.schemas.compare import NodeDifference
from app.schemas.models import Architecture, ModelDetail, ModelList, NodeInfo, PredictResponse
from app.schemas.runs import ActivationsResponse, NodeActivation, TileLayout

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "static" / "js").rglob("*.js"))

#: fallbacks that once hid the API's shape, each with what the API really sends
FALLBACKS = {
    r"answer\.top\b": "a prediction's classes are PredictResponse.classes",
    r"\?\?\s*answer\s*[),;]": "the whole answer standing in for a missing field",
    r"\.attrs\b": "a node's attributes are NodeInfo.attributes",
    r"\.params\?\.\[": "NodeInfo.params is a count, not the attributes",
    r"arch\?\.nodes\b": "a model's nodes are ModelDetail.architecture.nodes",
    r"Array\.isArray\(answer\)": "GET /api/models answers a ModelList object",
}

#: ``field(answer, "name")`` and ``field(answer, "name", "object")`` calls (static/js/api.js), nested ones too
FIELD_CALL = re.compile(r"""(?=\bfield\((?:[^()]|\([^()]*\))+?,\s*"(\w+)"(?:,\s*"(list|object)")?\))""")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_no_fallback_hides_the_apis_field_names(path):
    text = path.read_text(encoding="utf-8")
    for pattern, truth in FALLBACKS.items():
        lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(pattern, text)]
        assert not lines, f"{path.name} lines {lines}: a fallback ({pattern}) hides the API's shape; {truth}"


def test_the_fields_the_pages_require_are_the_schemas_own():
    """Every field the pages read through ``field()`` exists in the API's schemas, as a list or an object."""
    kinds: dict[str, set[str]] = {}
    for model in (Architecture, ModelDetail, ModelList, NodeInfo, PredictResponse, ActivationsResponse, NodeActivation,
                  TileLayout, NodeDifference):
        for name, info in model.model_fields.items():
            origin = getattr(info.annotation, "__origin__", info.annotation)
            kinds.setdefault(name, set()).add("list" if origin is list else "object")
    used = {(m[1], m[2] or "list") for path in SCRIPTS for m in FIELD_CALL.finditer(path.read_text(encoding="utf-8"))}
    assert {("classes", "list"), ("attributes", "object"), ("nodes", "list"), ("architecture", "object"),
            ("models", "list"), ("unavailable", "list")} <= used
    for name, kind in used:
        assert kind in kinds.get(name, set()), f"the pages require a {kind} {name!r}, which no schema sends"
