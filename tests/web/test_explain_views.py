"""The operation detail's views (static/js/explain/): one per family of the engine's explanations, picked by the
API's ``family``, and no op lists or inline style attributes of their own."""

from __future__ import annotations

import re
from pathlib import Path

from engine.explain import REGISTRY

EXPLAIN_JS = Path(__file__).resolve().parents[2] / "static" / "js" / "explain"


def view_families() -> set[str]:
    """The keys of VIEWS in static/js/explain/index.js."""
    text = (EXPLAIN_JS / "index.js").read_text(encoding="utf-8")
    body = text[text.index("export const VIEWS = {"):]
    body = body[:body.index("};")]
    return set(re.findall(r"^\s+(\w+): \w+,$", body, flags=re.MULTILINE))


def test_every_family_of_the_engine_has_a_view_and_every_view_a_family():
    assert view_families() == {explainer.family for explainer in REGISTRY.values()}


def test_the_views_keep_no_op_lists_and_no_inline_styles():
    for path in [*EXPLAIN_JS.glob("*.js"), EXPLAIN_JS.parent / "detail.js"]:
        text = path.read_text(encoding="utf-8")
        assert 'style="' not in text, path.name  # a strict CSP blocks style attributes set through innerHTML
        assert not re.search(r'"max_pool2d"|"relu6"|"spatial_softmax"|new Set\(\["relu"', text), path.name
