"""A real uvicorn server in a subprocess, started as `uvicorn app.main:create_app --factory` is by users."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: settings a test server must not inherit from the developer's shell
CLEARED = ("CNN_VIS_ALLOWED_HOSTS", "CNN_VIS_CORS_ORIGINS", "CNN_VIS_HOST")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(port: int, what: str, seconds: float = 30, log: Path | None = None,
                       process: subprocess.Popen | None = None) -> None:
    """Wait until http://127.0.0.1:``port``/api/health answers; fail the test naming ``what`` (and its log) when it
    does not in time or ``process`` ends first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline or (process is not None and process.poll() is not None):
                pytest.fail(f"{what} did not start" + (f": {log.read_text()}" if log and log.exists() else ""))
            time.sleep(0.1)


def children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (uvicorn's workers)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def start_uvicorn(settings: dict[str, str], workers: int = 1, wrap: Callable[[list[str]], list[str]] = list,
                  seconds: float = 60) -> tuple[subprocess.Popen, str]:
    """A server on a free port of 127.0.0.1 with these ``CNN_VIS_*`` settings (preload off) and ``workers`` worker
    processes, answering; returns the process and its base URL. ``wrap`` may put a command before uvicorn's (keeping
    its process id). Stop it with :func:`stop_uvicorn`."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name not in CLEARED}
    env.update({"CNN_VIS_PRELOAD": "false", **settings})
    argv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1", "--port",
            str(port), "--workers", str(workers), "--log-level", "warning"]
    process = subprocess.Popen(wrap(argv), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_until_healthy(port, "the server", seconds, process=process)
        if workers > 1:  # every worker up: each answers health only once it has started
            deadline = time.monotonic() + seconds
            while len(children(process.pid)) < workers:
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not start {workers} workers")
                time.sleep(0.2)
            time.sleep(1.0)  # the last worker's lifespan
    except BaseException:
        stop_uvicorn(process)
        raise
    return process, f"http://127.0.0.1:{port}"


def stop_uvicorn(process: subprocess.Popen, seconds: float = 20) -> None:
    """Stop the server (uvicorn's supervisor stops its workers); kill the whole group if it does not."""
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def live_server(settings: dict[str, str], workers: int = 1) -> Iterator[int]:
    """A server as :func:`start_uvicorn` starts it, for a ``with`` block; yields its port."""
    process, base = start_uvicorn(settings, workers)
    try:
        yield int(base.rsplit(":", 1)[1])
    finally:
        stop_uvicorn(process)
