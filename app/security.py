"""What a browser may do with this server: which Host names it answers, which origins may change things, and the
security headers on every response.

- ``HostCheckMiddleware``: a Host header not in ``Settings.allowed_hosts`` is a 400 (a DNS-rebinding page on
  evil.example that resolves to 127.0.0.1 sends ``Host: evil.example``).
- ``OriginCheckMiddleware``: a POST/PUT/PATCH/DELETE whose ``Origin`` (or, without one, ``Referer``) is neither
  the server's own origin nor in ``Settings.cors_origins`` is a 403 (a page elsewhere could otherwise upload a
  model with a form post). Requests with neither header (curl, scripts) pass.
- ``SecurityHeadersMiddleware``: Content-Security-Policy, X-Content-Type-Options, Referrer-Policy and
  X-Frame-Options on every response that does not set them itself, the errors of the other middlewares included.

All three are pure ASGI (no ``BaseHTTPMiddleware``: it would buffer streamed answers and server-sent events).
``install_security(app, settings)`` adds them in the right order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from app.core.config import Settings, normalize_host

Scope = dict[str, Any]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

#: the app's pages load only their own scripts, styles and images; PNGs arrive as data: URLs (training lab) and
#: blob: URLs (uploaded previews); nothing may frame them or post forms elsewhere
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
                           "form-action 'self'; frame-ancestors 'self'")
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"SAMEORIGIN"),
)

Origin = tuple[str, str, int]  # scheme, host (as normalize_host writes it), port


def parse_origin(value: str) -> Origin | None:
    """``"http://Localhost:8000/page"`` → ``("http", "localhost", 8000)``; None for "null" or anything unreadable."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, normalize_host(parts.netloc.rpartition("@")[2]), port or DEFAULT_PORTS[scheme]


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Is ``host`` (normalized) one of ``allowed``: an exact name, ``*``, or a subdomain of a ``.domain`` entry."""
    for entry in allowed:
        if entry == "*" or entry == host:
            return True
        if entry.startswith(".") and (host == entry[1:] or host.endswith(entry)):
            return True
    return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def own_origin(scope: Scope) -> Origin | None:
    """The origin this request was sent to: its scheme and its Host header (port included)."""
    host = _header(scope, b"host")
    scheme = scope.get("scheme", "http")
    return parse_origin(f"{scheme}://{host}") if host else None


async def send_refusal(send: Any, status: int, detail: str) -> None:
    """A JSON error answer that closes the connection (a refused request's body is never read)."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class HostCheckMiddleware:
    """400 for a Host header that is not one of ``allowed_hosts`` (the port is ignored); no Host header passes."""

    def __init__(self, app: Any, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed_hosts = [normalize_host(h) for h in allowed_hosts]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = _header(scope, b"host")
            if raw is not None and not host_allowed(normalize_host(raw), self.allowed_hosts):
                await self._refuse(scope, receive, send, normalize_host(raw))
                return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Any, send: Any, host: str) -> None:
        detail = (f"this server does not answer to the host name '{host[:100]}' (it answers to "
                  f"{', '.join(self.allowed_hosts)}): open it by one of those names, or add this one to "
                  "CNN_VIS_ALLOWED_HOSTS (comma-separated) when starting the server")
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        await send_refusal(send, 400, detail)


class OriginCheckMiddleware:
    """403 for a state-changing request sent by a page on another origin (``Origin`` or else ``Referer``).

    The server's own origin (scheme, Host header and port) and the ``cors_origins`` pass; ``Origin: null``
    (a sandboxed frame, a file:// page, a no-referrer form) is foreign; a request with neither header passes.
    """

    def __init__(self, app: Any, cors_origins: list[str]) -> None:
        self.app = app
        self.trusted = {o for o in (parse_origin(c) for c in cors_origins) if o is not None}

    def foreign_origin(self, scope: Scope) -> str | None:
        """The refused origin as the request gave it, or None when the request may go on."""
        if scope["type"] == "http" and scope.get("method", "GET").upper() not in STATE_CHANGING:
            return None  # reads and CORS preflights; a cross-site page cannot read the answer anyway
        claimed = _header(scope, b"origin")
        if claimed is None:
            referer = _header(scope, b"referer")
            if referer is None:
                return None  # not from a browser page
            origin = parse_origin(referer)
            claimed = "null" if origin is None else f"{origin[0]}://{urlsplit(referer.strip()).netloc}"
        origin = parse_origin(claimed)
        if origin is not None and (origin == own_origin(scope) or origin in self.trusted):
            return None
        return claimed.strip()[:100] or "null"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            refused = self.foreign_origin(scope)
            if refused is not None:
                detail = refusal_text(refused)
                if scope["type"] == "websocket":
                    await receive()
                    await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
                    return
                await send_refusal(send, 403, detail)
                return
        await self.app(scope, receive, send)


def refusal_text(origin: str) -> str:
    """Why a request from ``origin`` was refused, and how to allow it."""
    what = "requests that change something (POST, PUT, PATCH, DELETE)"
    if origin == "null":
        return (f"this server does not accept {what} from a page without an origin (Origin: null: a local file, a "
                "sandboxed frame or a page that hides its address): use the pages this server serves")
    return (f"this server does not accept {what} from pages on {origin}, only from its own pages: to allow that "
            f"site, start the server with its origin listed in CNN_VIS_CORS_ORIGINS (e.g. "
            f"CNN_VIS_CORS_ORIGINS={origin})")


class SecurityHeadersMiddleware:
    """Adds ``SECURITY_HEADERS`` to every HTTP response that does not set the same header itself.

    A route with needs of its own (the /docs page's nonce) sends its own Content-Security-Policy, which is kept.
    """

    def __init__(self, app: Any, headers: Iterable[tuple[bytes, bytes]] = SECURITY_HEADERS) -> None:
        self.app = app
        self.headers = list(headers)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {key.lower() for key, _ in message.get("headers") or ()}
                missing = [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": [*(message.get("headers") or ()), *missing]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security(app: Any, settings: Settings) -> None:
    """Add the Host and Origin checks as the outermost user middlewares, and the security headers around everything.

    Call it after the app's other ``add_middleware`` calls (each one wraps those before it). The headers wrap even
    Starlette's ServerErrorMiddleware, so a 500 carries them too: ``build_middleware_stack`` is extended, the
    only place a Starlette app lets something sit outside that middleware.
    """
    app.add_middleware(OriginCheckMiddleware, cors_origins=settings.cors_origins)
    app.add_middleware(HostCheckMiddleware, allowed_hosts=settings.allowed_hosts or [])
    build: Callable[[], Any] = app.build_middleware_stack
    app.build_middleware_stack = lambda: SecurityHeadersMiddleware(build())
