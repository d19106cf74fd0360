"""Training jobs on a real ``uvicorn --workers 2`` server: every request opens a new TCP connection, which
either worker may accept. A job started through one connection is read (status, list, events), cancelled,
resumed past its end and opened as a model through 10 fresh connections each, and all of them are answered
(before the shared store, about half were 404 and the list showed the job 3 to 5 times in 10)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.api.live_server import start_uvicorn, stop_uvicorn

OWNER = {"X-Owner-Token": "workers-test-owner-0123456789abcdef"}
QUICK = {"train_size": 200, "test_size": 100, "epochs": 2, "batch_size": 50, "lr": 0.05}
LONG = {"train_size": 8000, "test_size": 100, "epochs": 20, "batch_size": 16}
TRIES = 10


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """A uvicorn server with two worker processes on a free port and a fresh data directory."""
    data_dir = tmp_path_factory.mktemp("workers") / "data"
    process, base = start_uvicorn({"CNN_VIS_DATA_DIR": str(data_dir)}, workers=2)
    try:
        yield base
    finally:
        stop_uvicorn(process)


def call(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None,
         read: bool = True) -> tuple[int, bytes]:
    """One request on a new connection (urllib never reuses one)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        **OWNER, **({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read() if read else b""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def first_event(url: str) -> tuple[int, str | None]:
    """The stream's status and its first event's type, then the connection is closed."""
    request = urllib.request.Request(url, headers=OWNER)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            for line in answer:
                if line.startswith(b"event: "):
                    return answer.status, line[7:].decode().strip()
            return answer.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def whole_stream(url: str) -> tuple[int, list[str]]:
    """The stream's status and every event type until the server ends it."""
    request = urllib.request.Request(url, headers=OWNER)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, [line[7:].decode().strip() for line in answer if line.startswith(b"event: ")]
    except urllib.error.HTTPError as exc:
        return exc.code, []


def wait_for(base: str, job_id: str, wanted: str, timeout: float = 60) -> None:
    """Poll until an answer says the job is ``wanted`` (a 404 from a worker that does not know it: poll on, so
    that the old code's figures are printed too)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = call(f"{base}/api/training/jobs/{job_id}")
        if status == 200 and json.loads(body)["status"] == wanted:
            return
        assert time.monotonic() < deadline, f"job {job_id} is not {wanted}: {status} {body[:200]!r}"
        time.sleep(0.2)


def test_every_worker_answers_for_every_job(server):
    status, body = call(f"{server}/api/training/jobs", "POST", LONG)
    assert status == 201, body
    job_id = json.loads(body)["id"]
    jobs = f"{server}/api/training/jobs"
    answered: Counter[str] = Counter()
    for _ in range(TRIES):
        status, body = call(f"{jobs}/{job_id}")
        answered["status"] += status == 200 and json.loads(body)["id"] == job_id
        status, body = call(jobs)
        answered["list"] += status == 200 and job_id in [j["id"] for j in json.loads(body)["jobs"]]
        answered["events"] += first_event(f"{jobs}/{job_id}/events") == (200, "epoch")
    for _ in range(TRIES):
        status, body = call(f"{jobs}/{job_id}", "DELETE")
        answered["cancel"] += status == 202
    wait_for(server, job_id, "cancelled", timeout=30)
    for _ in range(TRIES):
        status, kinds = whole_stream(f"{jobs}/{job_id}/events")
        answered["stream to the end"] += status == 200 and kinds[-1:] == ["end"]
        status, _ = call(f"{jobs}/{job_id}/events", headers={"Last-Event-ID": str(10**9)}, read=False)
        answered["resume past the end (204)"] += status == 204

    status, body = call(jobs, "POST", QUICK)
    assert status == 201, body
    done_id = json.loads(body)["id"]
    wait_for(server, done_id, "done")
    for _ in range(TRIES):
        status, body = call(f"{jobs}/{done_id}/model", "POST")
        answered["open as a model"] += status == 200 and json.loads(body)["model_id"] == f"trained-{done_id}"
        status, body = call(f"{server}/api/models/trained-{done_id}")
        answered["the model"] += status == 200 and json.loads(body)["cam_layer"] == "relu2"

    print()
    for what, count in answered.items():
        print(f"{what:28s} {count}/{TRIES} answered")
    assert answered == {what: TRIES for what in answered}
    assert len(answered) == 8
