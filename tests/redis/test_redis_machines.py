"""Two "machines" on one Redis: two real uvicorn servers with different data directories and one
`cnn-visualiser worker` process, all with the same ``CNN_VIS_REDIS_URL``. A job started through server A is read,
streamed, cancelled and its result fetched through server B, every time (10 tries each); a worker killed mid-job
leaves the job failed ("interrupted") within a bounded time, not running forever."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from rq import Worker

from app.services.redis_client import connect
from tests.api.conftest import npy_bytes
from tests.api.live_server import REPO, children, start_uvicorn, stop_uvicorn
from tests.redis_server import flush

OWNER = {"X-Owner-Token": "redis-machines-test-owner-0123456789abcdef"}
QUICK = {"train_size": 200, "test_size": 100, "epochs": 1, "batch_size": 50, "lr": 0.05}
LONG = {"train_size": 8000, "test_size": 100, "epochs": 20, "batch_size": 16}
TRIES = 10
STALE_S = 2.0


def machine_settings(redis_url: str, data_dir) -> dict[str, str]:
    return {"CNN_VIS_DATA_DIR": str(data_dir), "CNN_VIS_REDIS_URL": redis_url, "CNN_VIS_JOB_STALE_S": str(STALE_S),
            "CNN_VIS_PRELOAD": "false"}


@pytest.fixture(scope="module")
def machines(redis_url, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """Servers A and B (base URLs), each with its own data directory, on an emptied Redis."""
    flush(redis_url)
    started = []
    try:
        for name in ("a", "b"):
            started.append(start_uvicorn(machine_settings(redis_url, tmp_path_factory.mktemp(f"machine-{name}"))))
        yield started[0][1], started[1][1]
    finally:
        for process, _ in started:
            stop_uvicorn(process)


@pytest.fixture
def worker(redis_url, tmp_path_factory) -> Iterator[subprocess.Popen]:
    """A `cnn-visualiser worker` process (a third machine's data directory), registered with RQ; stopped after."""
    client = connect(redis_url)
    before = {w.name for w in Worker.all(connection=client)}
    env = {**os.environ, **machine_settings(redis_url, tmp_path_factory.mktemp("machine-worker"))}
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--log-level", "warning"], cwd=REPO,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not {w.name for w in Worker.all(connection=client)} - before:
            assert process.poll() is None, "the worker exited at start"
            assert time.monotonic() < deadline, "the worker did not register with RQ"
            time.sleep(0.1)
        yield process
    finally:
        kill_worker(process)


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL the worker and its work horse (RQ starts the horse in a session of its own), as when their
    machine goes away."""
    horses = children(process.pid)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    for pid in horses:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(10)


def call(url: str, method: str = "GET", body: dict | bytes | None = None, headers: dict | None = None,
         read: bool = True) -> tuple[int, bytes]:
    """One request on a new connection."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    kind = {"Content-Type": "application/json"} if isinstance(body, dict) else (
        {"Content-Type": "application/x-npy"} if body else {})
    request = urllib.request.Request(url, data=data, method=method, headers={**OWNER, **kind, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read() if read else b""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def first_event(url: str) -> tuple[int, str | None]:
    """The stream's status and its first event's type, then the connection is closed."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=OWNER), timeout=30) as answer:
            for line in answer:
                if line.startswith(b"event: "):
                    return answer.status, line[7:].decode().strip()
            return answer.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def whole_stream(url: str) -> tuple[int, list[tuple[str, dict]]]:
    """The stream's status and every ``(event, data)`` until the server ends it."""
    events, kind = [], None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=OWNER), timeout=60) as answer:
            for line in answer:
                if line.startswith(b"event: "):
                    kind = line[7:].decode().strip()
                elif line.startswith(b"data: ") and kind:
                    events.append((kind, json.loads(line[6:])))
            return answer.status, events
    except urllib.error.HTTPError as exc:
        return exc.code, []


def wait_for(base: str, path: str, done, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, body = call(base + path)
        if status == 200 and done(json.loads(body)):
            return json.loads(body)
        assert time.monotonic() < deadline, f"{path}: {status} {body[:300]!r}"
        time.sleep(0.1)


def test_a_training_job_started_on_a_is_answered_by_b(machines, worker):
    a, b = machines
    status, body = call(f"{a}/api/training/jobs", "POST", LONG)
    assert status == 201, body
    job_id = json.loads(body)["id"]
    path = f"/api/training/jobs/{job_id}"
    wait_for(b, path, lambda job: job["epochs"])  # the worker took it: epoch 0 is recorded
    answered: Counter[str] = Counter()
    for _ in range(TRIES):
        status, body = call(b + path)
        answered["status"] += status == 200 and json.loads(body)["status"] == "running"
        answered["events"] += first_event(f"{b}{path}/events") == (200, "epoch")
    for _ in range(TRIES):
        status, _ = call(b + path, "DELETE")
        answered["cancel"] += status == 202
    wait_for(b, path, lambda job: job["status"] == "cancelled", timeout=30)
    for _ in range(TRIES):
        status, events = whole_stream(f"{b}{path}/events")
        answered["stream to the end"] += status == 200 and events[-1][0] == "end" and \
            events[-1][1]["status"] == "cancelled"
        status, _ = call(f"{b}{path}/events", headers={"Last-Event-ID": str(10**9)}, read=False)
        answered["resume past the end (204)"] += status == 204
    print()
    for what, count in answered.items():
        print(f"{what:28s} {count}/{TRIES} answered by B")
    assert answered == {what: TRIES for what in answered} and len(answered) == 5

    status, body = call(f"{a}/api/training/jobs", "POST", QUICK)
    assert status == 201, body
    done_id = json.loads(body)["id"]
    wait_for(b, f"/api/training/jobs/{done_id}", lambda job: job["status"] == "done")
    status, body = call(f"{b}/api/training/jobs/{done_id}/model", "POST")  # trained by the worker, opened on B
    assert status == 200 and json.loads(body)["model_id"] == f"trained-{done_id}", body
    status, body = call(f"{b}/api/models/trained-{done_id}")
    assert status == 200 and json.loads(body)["cam_layer"] == "relu2"


def test_an_attention_job_started_on_a_is_answered_by_b(machines, worker):
    a, b = machines
    x = np.random.default_rng(3).random((1, 1, 28, 28)).astype(np.float32)
    status, body = call(f"{a}/api/models/digits_classic/attention?method=integrated_gradients&steps=128", "POST",
                        npy_bytes(x))
    assert status == 202, body
    job = json.loads(body)
    status, events = whole_stream(b + job["events_url"])
    assert status == 200 and [kind for kind, _ in events].count("end") == 1 and events[-1][0] == "end"
    progress = [data for kind, data in events if kind == "progress"]
    assert progress and events[-1][1]["status"] == "done"
    statuses = [call(b + job["status_url"]) for _ in range(TRIES)]
    results = [call(b + job["result_url"]) for _ in range(TRIES)]
    print(f"\nstatus {[c for c, _ in statuses]}, result {[c for c, _ in results]}")
    assert all(code == 200 and json.loads(body)["status"] == "done" for code, body in statuses)
    assert [code for code, _ in results] == [200] * TRIES and len({body for _, body in results}) == 1
    assert json.loads(results[0][1])["method"] == "integrated_gradients"


def test_a_job_whose_worker_is_killed_reads_interrupted(machines, worker):
    a, b = machines
    status, body = call(f"{a}/api/training/jobs", "POST", LONG)
    assert status == 201, body
    path = f"/api/training/jobs/{json.loads(body)['id']}"
    wait_for(b, path, lambda job: job["epochs"])
    assert children(worker.pid), "the worker runs the job in a work horse"
    kill_worker(worker)
    killed = time.monotonic()
    job = wait_for(b, path, lambda job: job["status"] != "running", timeout=STALE_S + 10)
    print(f"\nread as {job['status']} {time.monotonic() - killed:.1f} s after the kill (job_stale_s {STALE_S})")
    assert job["status"] == "failed" and job["error"].startswith("interrupted")
    status, events = whole_stream(f"{a}{path}/events")
    assert status == 200 and events[-1][0] == "end" and events[-1][1]["status"] == "failed"
    status, body = call(f"{a}/api/training/jobs")
    assert json.loads(body)["running"] == 0
