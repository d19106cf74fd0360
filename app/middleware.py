"""A cap on request bodies, enforced while they stream in (never read a whole oversized body first), and a
limit on how long a body may stall (a client that declares more than it sends must not hold a connection)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

Scope = dict[str, Any]


class _BodyTooLargeError(Exception):
    pass


class _BodyStalledError(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 as soon as a request's body exceeds ``limit_for(scope)`` bytes, and 408 when it stalls.

    A declared ``Content-Length`` above the limit is refused before a byte is read; a chunked body
    is counted as it arrives and refused the moment it passes the limit. While the body is still
    arriving, each part must come within ``idle_timeout`` seconds (uvicorn has no such limit of its own:
    a client declaring a longer body than it sends would otherwise hold the connection for ever).
    """

    def __init__(self, app: Any, limit_for: Callable[[Scope], tuple[int, str]], idle_timeout: float = 30.0) -> None:
        self.app = app
        self.limit_for = limit_for
        self.idle_timeout = idle_timeout

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, what = self.limit_for(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit, what, int(declared))
            return
        state = {"received": 0, "started": False, "refused": False, "complete": False}

        async def limited_receive() -> dict[str, Any]:
            if state["complete"]:  # after the body, receive() waits for a disconnect: no time limit
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.idle_timeout)
            except TimeoutError:
                if not state["started"]:
                    state["refused"] = True
                    await self._stalled(send, state["received"], self.idle_timeout)
                raise _BodyStalledError from None
            if message["type"] == "http.request":
                state["complete"] = not message.get("more_body", False)
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    if not state["started"]:
                        state["refused"] = True
                        await self._refuse(send, limit, what, None)
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["refused"]:
                return  # the 413 has been sent; whatever the app answers after it is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:  # after our own 413/408 (or what the app made of it), the answer has been sent
            if not state["refused"]:
                raise

    @staticmethod
    async def _stalled(send: Any, received: int, timeout: float) -> None:
        detail = (f"the request body stopped arriving: {received:,} bytes came, then nothing for {timeout:g} s. "
                  "Send the whole body, with a Content-Length that matches it")
        await _send_error(send, 408, {"detail": detail})

    @staticmethod
    async def _refuse(send: Any, limit: int, what: str, declared: int | None) -> None:
        size = f" ({declared:,} bytes)" if declared is not None else ""
        detail = (f"the request body{size} is larger than the {limit:,} bytes this server accepts for {what}: "
                  "send a smaller file (downscale the image or crop the tensor)")
        await _send_error(send, 413, {"detail": detail, "limit_bytes": limit})


async def _send_error(send: Any, status: int, payload: dict[str, Any]) -> None:
    """A JSON error answer that closes the connection (the rest of the body is never read)."""
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
