"""With `--workers 2` (a real uvicorn server), every request about an attention job is answered whichever worker
receives it: the job's state is in the data directory, not in the worker that runs it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from tests.api.conftest import npy_bytes
from tests.api.live_server import start_uvicorn, stop_uvicorn


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A GET on a new connection (so that the kernel may hand it to either worker)."""
    request = urllib.request.Request(url, headers={"Connection": "close", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> Iterator[str]:
    process, base = start_uvicorn({"CNN_VIS_DATA_DIR": str(tmp_path_factory.mktemp("data"))}, workers=2)
    try:
        yield base
    finally:
        stop_uvicorn(process)


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
