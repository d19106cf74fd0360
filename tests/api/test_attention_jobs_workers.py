"""With `--workers 2` (a real uvicorn server), every request about an attention job is answered whichever worker
receives it: the job's state is in the data directory, not in the worker that runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.api.conftest import npy_bytes
from tests.api.live_server import CLEARED, REPO


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A GET on a new connection (so that the kernel may hand it to either worker)."""
    request = urllib.request.Request(url, headers={"Connection": "close", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {name: value for name, value in os.environ.items() if name not in CLEARED}
    env.update({"CNN_VIS_PRELOAD": "false", "CNN_VIS_DATA_DIR": str(tmp_path_factory.mktemp("data"))})
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host",
                                "127.0.0.1", "--port", str(port), "--workers", "2", "--log-level", "warning"],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _up(base):
            if time.monotonic() > deadline:
                pytest.fail("the server did not start")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def _up(base: str) -> bool:
    try:
        urllib.request.urlopen(f"{base}/api/health", timeout=1).close()
        return True
    except OSError:
        return False


def test_every_worker_answers_for_an_attention_job(two_workers):
    base = two_workers
    x = np.random.default_rng(3).random((1, 1, 28, 28)).astype(np.float32)
    request = urllib.request.Request(f"{base}/api/models/digits_classic/attention?method=integrated_gradients",
                                     data=npy_bytes(x), headers={"Content-Type": "application/x-npy"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 202
        job = json.loads(response.read())
    deadline = time.monotonic() + 60
    statuses = [get(base + job["status_url"])[0] for _ in range(10)]
    while json.loads(get(base + job["status_url"])[1])["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    results = [get(base + job["result_url"]) for _ in range(10)]
    events = [get(base + job["events_url"]) for _ in range(10)]
    print(f"status {statuses}, result {[c for c, _ in results]}, events {[c for c, _ in events]}")
    assert statuses == [200] * 10
    assert [code for code, _ in results] == [200] * 10
    assert len({body for _, body in results}) == 1 and json.loads(results[0][1])["method"] == "integrated_gradients"
    assert all(code == 200 and b"event: end" in body for code, body in events)
