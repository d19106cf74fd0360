"""A real ``redis-server`` for the tests: on a free port of 127.0.0.1, in a temporary directory, with no
persistence (``--save "" --appendonly no``); Debian's package (``apt-get install redis-server``, which
``scripts/install-test-packages.sh`` does for ``make test``). Where the binary is absent, the tests that need it
skip saying so."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

NO_PERSISTENCE = ("--save", "", "--appendonly", "no")
SKIP_REASON = "redis-server is not installed: apt-get install redis-server to run the Redis tests"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(path).is_file()), None)


@contextmanager
def running_redis(seconds: float = 15.0, options: Sequence[str] = NO_PERSISTENCE,
                  directory: Path | None = None) -> Iterator[str]:
    """A redis-server for a ``with`` block, started with ``options`` in ``directory`` (default: a fresh temporary
    one, removed afterwards); yields its URL (``redis://127.0.0.1:<port>/0``). Skips the test where redis-server is
    not installed."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip(SKIP_REASON)
    temporary = directory is None
    directory = Path(tempfile.mkdtemp(prefix="cnn-vis-redis-")) if directory is None else directory
    port = free_port()
    log = directory / "redis.log"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), *options,
         "--logfile", str(log), "--daemonize", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    text = log.read_text() if log.exists() else ""
                    pytest.fail(f"redis-server did not start on port {port}: {text[-2000:]}")
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)


def flush(url: str) -> None:
    """Empty the server's every database (between tests)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()
