"""A request body that stops arriving is a 408, not a connection held for ever (uvicorn has no body-read timeout of
its own). Checked on the middleware with a client that never sends the rest, and on a real uvicorn server with a
socket that declares 1,000 bytes and sends 10."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

from app.middleware import BodyLimitMiddleware
from tests.api.live_server import live_server

REPO = Path(__file__).resolve().parents[2]


async def _reading_app(scope, receive, send) -> None:
    """Reads the whole body, then answers 200 with its length."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"size": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _run(parts: list[tuple[float, dict]], timeout: float) -> list[dict]:
    """Run the middleware with a client that sends ``parts`` (delay, message) and then waits for ever."""
    sent: list[dict] = []

    async def main() -> None:
        queue = list(parts)

        async def receive() -> dict:
            if not queue:
                await asyncio.sleep(3600)
            delay, message = queue.pop(0)
            await asyncio.sleep(delay)
            return message

        async def send(message: dict) -> None:
            sent.append(message)

        app = BodyLimitMiddleware(_reading_app, limit_for=lambda scope: (10_000, "a test"), idle_timeout=timeout)
        scope = {"type": "http", "headers": [(b"content-length", b"1000")]}
        await asyncio.wait_for(app(scope, receive, send), 5)

    asyncio.run(main())
    return sent


def test_a_stalled_body_is_a_408_saying_what_arrived():
    start = time.monotonic()
    sent = _run([(0, {"type": "http.request", "body": b"x" * 10, "more_body": True})], timeout=0.2)
    assert time.monotonic() - start < 2
    assert sent[0]["status"] == 408
    detail = json.loads(sent[1]["body"])["detail"]
    assert "10 bytes came, then nothing for 0.2 s" in detail


def test_slow_but_steady_bodies_and_the_wait_after_the_body_are_not_cut():
    """Each part within the limit passes, however long the whole body takes; once the body is complete, nothing is
    timed (the app may wait for a disconnect)."""
    parts = [(0.1, {"type": "http.request", "body": b"x" * 400, "more_body": True}) for _ in range(4)]
    parts.append((0.1, {"type": "http.request", "body": b"x" * 400, "more_body": False}))
    sent = _run(parts, timeout=0.3)
    assert sent[0]["status"] == 200 and json.loads(sent[1]["body"]) == {"size": 2000}


def test_a_real_server_answers_a_stalled_upload_with_408():
    with live_server({"CNN_VIS_BODY_TIMEOUT_S": "1"}) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"POST /api/models/digits_classic/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/x-npy\r\nContent-Length: 1000\r\n\r\n" + b"\x93NUMPY" + b"x" * 4)
            start = time.monotonic()
            chunks = []
            while chunk := client.recv(4096):  # the server closes the connection after its answer
                chunks.append(chunk)
            answer = b"".join(chunks).decode("latin-1")
        assert answer.startswith("HTTP/1.1 408"), answer
        assert time.monotonic() - start < 5
        assert "stopped arriving" in answer
