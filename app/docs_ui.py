"""The interactive API manual at /docs, with Swagger UI's files served by the app (no CDN, works offline).

FastAPI's default /docs page loads Swagger UI from a CDN; in a lecture hall without a network it
would be blank. When ``app/docs_assets/`` holds the files (it ships in the repository), /docs uses
them; otherwise FastAPI's default page is kept.

Swagger UI starts from an inline script, which the app's Content-Security-Policy (app/security.py) forbids:
these two pages send a policy of their own that allows that one script by a fresh nonce.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).resolve().parent / "docs_assets"
ASSETS_URL = "/docs-assets"
REQUIRED = ("swagger-ui-bundle.js", "swagger-ui.css")
#: the app's policy, except that an inline script carrying the page's nonce may run (Swagger UI's start-up)
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
               "frame-ancestors 'self'")


def with_nonce(page: HTMLResponse) -> HTMLResponse:
    """``page`` with a nonce on each inline ``<script>`` and a policy allowing just those."""
    nonce = secrets.token_urlsafe(16)
    html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
    return HTMLResponse(html, status_code=page.status_code,
                        headers={"Content-Security-Policy": DOCS_POLICY.format(nonce=nonce)})


def has_local_assets() -> bool:
    return all((ASSETS / name).is_file() for name in REQUIRED)


def install_docs(app: FastAPI, docs_url: str = "/docs") -> None:
    """Serve /docs from the local Swagger UI files (call on an app created with ``docs_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    def read_docs() -> HTMLResponse:
        """The interactive API manual."""
        return with_nonce(get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title}: API", oauth2_redirect_url=None,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None}))  # no badge image from validator.swagger.io
