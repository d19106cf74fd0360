"""Document the API's error answers in the OpenAPI schema, as they really are.

FastAPI documents every route with a 422 whose ``detail`` is a list (its own validation format), but
this API answers every error with ``{"detail": "<a sentence>", ...}`` (app/errors.py) and also uses
404, 413, 415, 410, 409, 403, 503 and 507. This rewrites each ``/api`` operation's error responses so that
``/docs`` and clients generated from ``/openapi.json`` see the real statuses and the real body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.schemas.errors import ErrorResponse

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}

DESCRIPTIONS = {
    "403": "not allowed: a built-in model, someone else's model or job, or a wrong or unconfigured lecturer token "
           "(X-Admin-Token)",
    "409": "the model's stored files cannot be loaded (the message says which): delete it and upload it again",
    "404": "an unknown model, node, parameter, run or job: the message lists what exists",
    "410": "the run was made with an earlier version of the model: create it again",
    "413": "too large: body bytes, image pixels (including decompression bombs), tensor elements or work",
    "415": "not a format this endpoint reads: the message lists the accepted ones",
    "422": "readable but unusable: the message says what was wrong and what would work",
    "503": "the server stayed busy for too long (retry shortly), or may not write to its data directory (read-only)",
    "507": "the server's disk is full: nothing was stored",
}

#: operations that run a model (and so may queue for a compute slot) or read a run
COMPUTE_MARKERS = ("/predict", "/activations", "/attention", "/forward", "/receptive-field", "/api/runs/")


def error_statuses(path: str, method: str, operation: dict[str, Any]) -> set[str]:
    """The error statuses one operation can answer with."""
    statuses = {"422"}
    if "{" in path:
        statuses.add("404")
    if "requestBody" in operation:
        statuses.add("413")
        content = operation["requestBody"].get("content", {})
        if any(media != "application/json" for media in content):
            statuses.add("415")
    if any(marker in path for marker in COMPUTE_MARKERS):
        statuses.add("503")
    if path.startswith("/api/runs/"):
        statuses.add("410")
    if method == "delete" and path == "/api/models/{model_id}":
        statuses.add("403")
    if path.startswith("/api/models/{model_id}") and not (method == "delete" and path == "/api/models/{model_id}"):
        statuses.add("409")  # a stored model whose files cannot be loaded
    if (method, path) in (("post", "/api/models"), ("delete", "/api/models/{model_id}")):
        statuses.add("503")  # the data directory is read-only (runs fall back to memory and never answer it)
    if (method, path) == ("post", "/api/models"):
        statuses.add("507")  # the disk is full
    if any(parameter.get("name") == "X-Admin-Token" for parameter in operation.get("parameters", [])):
        statuses.add("403")  # a wrong lecturer token, or one sent when the server has none
    return statuses


def rewrite(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every /api operation's error responses documented as ErrorResponse."""
    for path, methods in schema.get("paths", {}).items():
        if not path.startswith("/api"):
            continue
        for method, operation in methods.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            declared = {code for code in responses if code[:1] in "45"}
            for code in error_statuses(path, method, operation) | declared:
                response = responses.setdefault(code, {})
                if code == "422" or "description" not in response:
                    response["description"] = DESCRIPTIONS.get(code, response.get("description", "error"))
                response["content"] = {"application/json": {"schema": ERROR_REF}}
            operation["responses"] = dict(sorted(responses.items()))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    text = str(schema.get("paths"))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}'" not in text:
            components.pop(unused, None)
    return schema


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the schema with the real error responses (computed once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = rewrite(get_openapi(
                title=app.title, version=app.version, openapi_version=app.openapi_version,
                description=app.description, routes=app.routes, tags=app.openapi_tags, servers=app.servers))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
