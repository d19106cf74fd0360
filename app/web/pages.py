"""Page routes: each renders one template from ``templates/``; the page's ES module asks /api for the numbers.

The pages hold no data of their own. Their view state (model, image, layer, sliders) lives in the URL's
query string, read and written by ``static/js/state.js``, so any view can be shared as a link.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.api.deps import remember_owner
from app.core.config import MB
from app.paths import find_dir
from app.services.owners import new_token

router = APIRouter(tags=["pages"], include_in_schema=False)


@dataclass(frozen=True)
class Page:
    """One page of the front-end: its path, its route name, its titles, its template and its ES module."""

    path: str
    endpoint: str
    title: str
    nav: str
    template: str
    script: str


PAGES = [
    Page("/", "read_explorer", "Explorer", "Explorer", "explorer.html", "js/explorer.js"),
    Page("/arithmetic", "read_arithmetic", "Output-size arithmetic", "Arithmetic", "arithmetic.html",
         "js/arithmetic.js"),
    Page("/receptive-fields", "read_receptive_fields", "Receptive fields", "Receptive fields",
         "receptive_fields.html", "js/receptive_fields.js"),
    Page("/attention", "read_attention", "Attention", "Attention", "attention.html", "js/attention.js"),
    Page("/recurrent", "read_recurrent", "Recurrent networks", "Recurrent networks", "recurrent.html",
         "js/recurrent.js"),
    Page("/learned", "read_learned", "What the network learned", "What it learned", "learned.html",
         "js/learned.js"),
    Page("/upload", "read_upload", "Bring your own model", "Your model", "upload.html", "js/upload.js"),
    Page("/training", "read_training", "Training lab", "Training lab", "training.html", "js/training.js"),
]

def samples_dir() -> Path:
    """``static/samples`` wherever the app serves ``static/`` from."""
    return find_dir("static") / "samples"
SAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}


def sample_images() -> list[dict[str, str]]:
    """The samples shipped in ``static/samples/`` (sources in its SOURCES.md), by file name: photos, and
    held-out MNIST digits (``digit-*.png``), which the pages offer only to one-channel (digit) models."""
    directory = samples_dir()
    if not directory.is_dir():
        return []
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)
    return [{"file": p.name, "name": p.stem.replace("_", " ").replace("-", " "),
             "kind": "digit" if p.stem.startswith("digit-") else "photo"} for p in files]


def render(request: Request, page: Page) -> HTMLResponse:
    """The page's template with the shared nav; ``app.state.templates`` is set by ``app.main.create_app``.

    A browser without an owner cookie gets one, so that whatever it uploads or trains is its own."""
    templates = request.app.state.templates
    max_model_mib = round(request.app.state.settings.max_model_bytes / MB)  # the upload page states the limit
    response = templates.TemplateResponse(request=request, name=page.template,
                                          context={"page": page, "pages": PAGES, "samples": sample_images(),
                                                   "max_model_mib": max_model_mib})
    remember_owner(request, response, new_token())
    return response


def _route(page: Page):
    def read_page(request: Request) -> HTMLResponse:
        return render(request, page)

    read_page.__name__ = page.endpoint
    read_page.__doc__ = f"The {page.title} page."
    return read_page


for _page in PAGES:
    router.add_api_route(_page.path, _route(_page), methods=["GET"], response_class=HTMLResponse,
                         name=_page.endpoint)
