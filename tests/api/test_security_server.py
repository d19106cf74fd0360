"""The Host and Origin checks on a real uvicorn server, with requests as a DNS-rebinding page and a cross-site
form would send them (raw sockets: no client library fills in headers of its own)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.live_server import live_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A uvicorn server with the default settings (allowed hosts, no CORS origins) on a free port."""
    with live_server({"CNN_VIS_DATA_DIR": str(tmp_path_factory.mktemp("data"))}) as port:
        yield port


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], dict]:
    """Send ``request`` on a fresh connection; the status, headers and JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def multipart_upload(host: str, origin: str | None) -> bytes:
    """A model upload as an HTML form on ``origin`` posts it (``enctype="multipart/form-data"``)."""
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.onnx\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\nnot an onnx file\r\n--b--\r\n")
    origin_line = f"Origin: {origin}\r\n" if origin else ""
    return (f"POST /api/models HTTP/1.1\r\nHost: {host}\r\n{origin_line}"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def test_a_rebinding_host_header_is_a_400(port):
    request = b"GET /api/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    status, headers, body = exchange(port, request)
    assert status == 400 and "'evil.example'" in body["detail"] and "CNN_VIS_ALLOWED_HOSTS" in body["detail"]
    assert headers["x-content-type-options"] == "nosniff"
    status, _, _ = exchange(port, f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                  "Connection: close\r\n\r\n".encode())
    assert status == 200


def test_a_cross_site_form_upload_is_a_403(port):
    """The same upload from the server's own page or from curl reaches the app (which finds the file unusable)."""
    status, headers, body = exchange(port, multipart_upload(f"127.0.0.1:{port}", "http://evil.example"))
    assert status == 403 and "http://evil.example" in body["detail"]
    assert "content-security-policy" in headers
    for origin in (f"http://127.0.0.1:{port}", None):
        status, _, body = exchange(port, multipart_upload(f"127.0.0.1:{port}", origin))
        assert status == 422, (origin, body)
