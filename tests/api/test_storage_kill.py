"""``kill -9`` during an upload loses no earlier model and leaves nothing that breaks the next start-up: checked on a
real uvicorn server process, killed while a second upload's body is arriving, with the half-written staging
directories a kill during storing leaves beside it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.api.conftest import npy_bytes, npy_load
from tests.api.live_server import start_uvicorn

onnx = pytest.importorskip("onnx")
from tests.api.routes.test_models_upload import small_onnx  # noqa: E402


def start_server(data_dir: Path, wrap: Callable[[list[str]], list[str]] = list,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """A uvicorn server on a free port with ``data_dir``; ``wrap`` may put a command before it (same process id)."""
    return start_uvicorn({"CNN_VIS_DATA_DIR": str(data_dir), **(env or {})}, wrap=wrap, seconds=30)


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.onnx\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


#: one student's identity for every request (without it each upload would belong to a new, unknown owner)
OWNER_TOKEN = "storage-test-owner-0123456789abcdef"


def request(url: str, body: bytes | None = None, content_type: str | None = None,
            method: str | None = None) -> tuple[int, bytes]:
    headers = {"X-Owner-Token": OWNER_TOKEN, **({"Content-Type": content_type} if content_type else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers, method=method),
                                    timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_kill_9_during_an_upload_loses_nothing_and_the_restart_is_clean(tmp_path):
    data_dir = tmp_path / "data"
    models_dir = data_dir / "models"
    process, base = start_server(data_dir)
    try:
        status, answer = request(f"{base}/api/models", *multipart(small_onnx(seed=1)))
        assert status == 201, answer
        first = json.loads(answer)["id"]

        body, content_type = multipart(small_onnx(seed=2, classes=7))
        with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=10) as client:
            client.sendall(f"POST /api/models HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
            time.sleep(0.3)  # the server is reading the body
            process.kill()  # SIGKILL: no clean-up of any kind
            process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    # what a kill while storing leaves: a half-written staging directory, and a delete's trash
    staged = models_dir / ".upload-kill9"
    staged.mkdir()
    (staged / "spec.json").write_text('{"input_shape": [3, 8, 8], "nodes": [{"id": "conv", "op"')
    (staged / "weights.npz").write_bytes(b"PK\x03\x04" + b"\0" * 20)
    (models_dir / ".delete-0badc0de-onnx-222222222222").mkdir()

    process, base = start_server(data_dir)
    try:
        leftovers = [p.name for p in models_dir.iterdir() if p.name.startswith((".upload-", ".delete-"))]
        assert leftovers == []  # were left for ever
        status, answer = request(f"{base}/api/models")
        assert status == 200, answer
        listing = json.loads(answer)
        assert [m["id"] for m in listing["models"] if not m["builtin"]] == [first]
        assert listing["unavailable"] == []
        x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
        status, answer = request(f"{base}/api/models/{first}/forward", npy_bytes(x), "application/x-npy")
        assert status == 200, answer
        assert npy_load(answer).shape == (1, 4)
    finally:
        process.terminate()
        process.wait(timeout=10)
