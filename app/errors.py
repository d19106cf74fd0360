"""Every error the API returns is JSON ``{"detail": "<what was wrong and what would work>", ...}``.

Bad input is a 4xx (413 too large, 415 not a format we read, 422 readable but unusable, 404 unknown
id), never a 500. A disk that refuses a write is the admin's to fix: 507 when it is full, 503 when it is
read-only (app/services/storage.py); so is an unreachable Redis (``CNN_VIS_REDIS_URL``,
app/services/redis_client.py), with ``Retry-After``. Engine errors carry the user's terms already:
``SpecError`` names the node at fault (also returned as ``"node"``), ``ShapeError`` and ``WeightsError`` say
which shapes or names disagree.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app.services.errors import UnusableRequestError
from app.services.redis_client import RedisUnavailableError
from app.services.storage import StorageError
from engine.errors import EngineError, ShapeError, SpecError, UnknownNodeError, WeightsError

log = logging.getLogger("cnn_visualiser.api")


class ApiError(Exception):
    """An error for the API's caller: an HTTP status, a message and optional extra JSON fields."""

    def __init__(self, status_code: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.extra = extra


def shorten(text: str, limit: int = 80) -> str:
    """``text`` for a message: a caller's 10,000-character id is not echoed back whole."""
    return text if len(text) <= limit else f"{text[:limit - 1]}… ({len(text):,} characters)"


#: a Python object's default repr, ``<ast.Call object at 0x7f...>``: internal, meaningless to a caller
OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def plain_text(exc: BaseException, limit: int = 200) -> str:
    """A library exception's message fit for a caller: object reprs removed, shortened; its class name if nothing
    is left. Prefer a message of our own; use this only to add a library's reason to one."""
    text = OBJECT_REPR.sub("an expression", str(exc)).strip()
    return shorten(text, limit) if text else type(exc).__name__


def not_found(what: str, name: str, known: list[str] | None = None) -> ApiError:
    """A 404 naming what was asked for and, when short enough, what exists."""
    name = shorten(name)
    hint = ""
    if known is not None:
        listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        hint = f"; known {what}s: {listed}" if known else f"; there are no {what}s"
    return ApiError(404, f"no {what} '{name}'{hint}")


def error_json(status_code: int, detail: str, **extra: Any) -> JSONResponse:
    """The JSON error answer; an object repr that slipped into ``detail`` never reaches the caller."""
    detail = OBJECT_REPR.sub("an expression", detail)
    return JSONResponse(status_code=status_code, content=jsonable_encoder({"detail": detail, **extra}))


def _describe_validation(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form")]
        where = ".".join(loc) or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "the request does not match the schema (see /docs): " + "; ".join(parts)


async def handle_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_json(exc.status_code, exc.detail, **exc.extra)


async def handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return error_json(422, _describe_validation(errors), errors=errors)


async def handle_http_exception(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors, as JSON; a body it cannot parse (400) is unusable input: 422, saying what to send."""
    if exc.status_code == 400:
        return error_json(422, f"the request body cannot be parsed ({exc.detail}): send well-formed JSON, or a "
                               "multipart form as `curl -F field=@file` writes it (see /docs)")
    path = request.url.path
    if exc.status_code == 404 and exc.detail == "Not Found":  # no route matched: say which, and where the list is
        if path.startswith("/api"):
            return error_json(404, f"there is no {request.method} {path}: the API's paths are listed at /docs "
                                   "(an id containing '/' cannot be part of a path)")
        return error_json(404, f"there is no page or file at {path}")
    if exc.status_code == 405 and exc.detail == "Method Not Allowed":
        return JSONResponse(status_code=405, headers=exc.headers, content={
            "detail": f"{request.method} is not allowed on {path}: /docs lists the methods each path takes"})
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers)


async def handle_spec_error(request: Request, exc: SpecError) -> JSONResponse:
    return error_json(422, str(exc), node=exc.node_id, reason=exc.reason)


async def handle_unknown_node(request: Request, exc: UnknownNodeError) -> JSONResponse:
    """Every route that names a node answers an unknown one the same way: 404 listing the model's nodes."""
    return error_json(404, str(exc), node=exc.node_id)


async def handle_unusable_request(request: Request, exc: UnusableRequestError) -> JSONResponse:
    """A service's domain error (app/services/errors.py): a readable request it cannot carry out, 422."""
    return error_json(422, exc.message)


async def handle_engine_error(request: Request, exc: EngineError) -> JSONResponse:
    kind = {ShapeError: "shape", WeightsError: "weights"}.get(type(exc), "engine")
    return error_json(422, str(exc), kind=kind)


async def handle_client_disconnect(request: Request, exc: ClientDisconnect) -> JSONResponse:
    """The client went away mid-body: nobody reads this answer, and it is not a server error to log."""
    return error_json(422, "the client disconnected before the whole request body arrived: send it again")


async def handle_storage_error(request: Request, exc: StorageError) -> JSONResponse:
    """A full disk is 507, a read-only or unwritable data directory 503: the admin's to fix, not the caller's."""
    return error_json(exc.status_code, exc.message, storage=exc.kind)


async def handle_redis_unavailable(request: Request, exc: RedisUnavailableError) -> JSONResponse:
    """Redis (CNN_VIS_REDIS_URL) down or refusing: 503, the admin's to fix; the client may retry."""
    response = error_json(503, exc.message, store="redis")
    response.headers["Retry-After"] = "5"
    return response


async def handle_redis_error(request: Request, exc: redis.exceptions.RedisError) -> JSONResponse:
    """A Redis call that lost the server outside ``redis_errors``: the same 503, naming the configured URL."""
    url = getattr(request.app.state.settings, "redis_url", None) or "CNN_VIS_REDIS_URL"
    return await handle_redis_unavailable(request, RedisUnavailableError(url, "the request", f"it does not answer "
                                                                                          f"({type(exc).__name__})"))


async def handle_memory_error(request: Request, exc: MemoryError) -> JSONResponse:
    return error_json(413, "the request needs more memory than this server has: send a smaller input or batch")


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_json(500, f"internal error ({type(exc).__name__}); this is a bug in cnn-visualiser, please report it")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(SpecError, handle_spec_error)
    app.add_exception_handler(UnknownNodeError, handle_unknown_node)
    app.add_exception_handler(EngineError, handle_engine_error)
    app.add_exception_handler(UnusableRequestError, handle_unusable_request)
    app.add_exception_handler(ClientDisconnect, handle_client_disconnect)
    app.add_exception_handler(StorageError, handle_storage_error)
    app.add_exception_handler(RedisUnavailableError, handle_redis_unavailable)
    app.add_exception_handler(redis.exceptions.ConnectionError, handle_redis_error)
    app.add_exception_handler(redis.exceptions.TimeoutError, handle_redis_error)
    app.add_exception_handler(MemoryError, handle_memory_error)
    app.add_exception_handler(Exception, handle_unexpected)
