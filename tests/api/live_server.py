"""A real uvicorn server in a subprocess, started as `uvicorn app.main:create_app --factory` is by users."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: settings a test server must not inherit from the developer's shell
CLEARED = ("CNN_VIS_ALLOWED_HOSTS", "CNN_VIS_CORS_ORIGINS", "CNN_VIS_HOST")


def wait_until_healthy(port: int, what: str, seconds: float = 30, log: Path | None = None) -> None:
    """Wait until http://127.0.0.1:``port``/api/health answers; fail the test naming ``what`` (and its log)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not start" + (f": {log.read_text()}" if log and log.exists() else ""))
            time.sleep(0.1)


@contextmanager
def live_server(settings: dict[str, str]) -> Iterator[int]:
    """A server on a free port of 127.0.0.1 with these ``CNN_VIS_*`` settings (preload off); yields the port once
    /api/health answers, and stops the server afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {name: value for name, value in os.environ.items() if name not in CLEARED}
    env.update({"CNN_VIS_PRELOAD": "false", **settings})
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host",
                                "127.0.0.1", "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_healthy(port, "the server")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
