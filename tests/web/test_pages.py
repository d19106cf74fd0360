"""The page routes without a browser: every page renders, links only to files that exist, and every ES module
it loads imports only modules that exist (so a missing or misspelt file fails here even where chromium is absent)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.web.pages import PAGES, sample_images

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "static"
IMPORT = re.compile(r"""^\s*import\s+(?:[^'"]*?\s+from\s+)?["'](\./[^"']+)["'];?""", re.MULTILINE)
LOCAL_URL = re.compile(r"""(?:src|href)="(/static/[^"]+)\"""")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(Settings(preload=False))
    with TestClient(app, base_url="http://localhost") as client:  # a host the default settings answer to
        yield client


def module_closure(entry: Path) -> set[Path]:
    """Every module reachable from ``entry`` through relative imports."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        assert module.is_file(), f"missing ES module {module.relative_to(REPO)}"
        seen.add(module)
        todo.extend((module.parent / name).resolve() for name in IMPORT.findall(module.read_text()))
    return seen


@pytest.mark.parametrize("page", PAGES, ids=[p.path for p in PAGES])
def test_page_renders_with_nav_and_existing_files(client, page):
    response = client.get(page.path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert f"<title>{page.title} · CNN visualiser</title>" in html
    for other in PAGES:
        assert f'href="{other.path}"' in html  # the shared nav links every page, with relative URLs
    assert html.count('aria-current="page"') == 1
    urls = LOCAL_URL.findall(html)
    assert f"/static/{page.script}" in urls and "/static/css/main.css" in urls
    for url in urls:
        assert (REPO / url.lstrip("/")).is_file(), f"{page.path} links to {url}, which does not exist"
    modules = module_closure((STATIC / page.script).resolve())
    assert (STATIC / "js" / "api.js").resolve() in modules  # every page asks the API through api.js


def test_samples_are_listed_from_the_static_folder():
    samples = sample_images()
    files = {p.name for p in (STATIC / "samples").iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}}
    assert {s["file"] for s in samples} == files
    assert all(s["name"] and "/" not in s["file"] for s in samples)


def test_front_end_loads_nothing_from_other_hosts():
    """No CDN and no run-time download: no absolute http(s) URL in any template, script or stylesheet."""
    offenders = []
    for path in [*(REPO / "templates").glob("*.html"), *(STATIC / "js").glob("*.js"), *(STATIC / "css").glob("*.css")]:
        for match in re.finditer(r"https?://[^\s\"')]+", path.read_text()):
            offenders.append(f"{path.relative_to(REPO)}: {match.group(0)}")
    svg_namespace = "http://www.w3.org/2000/svg"  # an XML namespace name, never fetched
    assert [o for o in offenders if svg_namespace not in o] == []
