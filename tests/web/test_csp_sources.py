"""The pages' sources keep to the Content-Security-Policy (style-src 'self', no inline script): no style=""
attribute in a template or in HTML that a script writes, no inline <script> and no on...= handler. Checked on the
files, so a slip fails here even where chromium (tests/browser/test_csp.py) is absent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((REPO / "templates").glob("*.html"))
SCRIPTS = sorted((REPO / "static" / "js").glob("*.js"))

STYLE_ATTRIBUTE = re.compile(r"""\sstyle\s*=\s*["'{]|setAttribute\(\s*["']style["']""")
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
HANDLER_ATTRIBUTE = re.compile(r"""\son[a-z]+\s*=\s*["']""")


@pytest.mark.parametrize("path", TEMPLATES + SCRIPTS, ids=lambda p: p.name)
def test_no_inline_styles_or_scripts(path):
    text = path.read_text()
    for pattern in (STYLE_ATTRIBUTE, INLINE_SCRIPT, HANDLER_ATTRIBUTE):
        found = [text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)]
        assert not found, f"{path.name} lines {found}: the policy blocks this; use a class in static/css"
