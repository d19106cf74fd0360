"""Page routes. Minimal placeholder: renders templates/index.html once it exists, else points to the API docs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def read_index(request: Request) -> HTMLResponse:
    """The home page."""
    templates = request.app.state.templates
    try:
        templates.get_template("index.html")
    except Exception:  # the front-end is not there yet
        return HTMLResponse('<!doctype html><title>cnn-visualiser</title><h1>cnn-visualiser</h1>'
                            '<p>The pages are not installed yet; the REST API is documented at '
                            '<a href="/docs">/docs</a>.</p>')
    return templates.TemplateResponse(request=request, name="index.html", context={})
