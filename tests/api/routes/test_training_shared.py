"""Training jobs shared by workers: two apps on one data directory in one process stand for two worker
processes (each has its own JobManager and ModelStore, built by its lifespan). Any worker reads, lists, streams
and cancels any job; the limits count both; a network trained by one opens as a model on the other; finished
jobs survive a restart; a job whose worker died reads as interrupted and its stream ends.

A real ``uvicorn --workers 2`` server is tried in tests/api/test_training_workers.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.deps import get_model_store
from app.main import create_app
from app.services.job_store import JobStore
from app.services.models import ModelStore
from app.services.owners import hash_token
from engine.datasets.mnist import load_mnist
from tests.api.conftest import npy_bytes
from tests.api.routes.test_training import LONG, QUICK, read_events, training_threads

ALICE = {"X-Owner-Token": "alice-owner-token-0123456789abcdef"}
BOB = {"X-Owner-Token": "bob-owner-token-0123456789abcdefgh"}


@pytest.fixture
def workers(settings) -> Iterator:
    """``workers(n, **setting_changes)``: n TestClients on n apps sharing ``settings.data_dir``."""
    opened: list[TestClient] = []

    def make(n: int = 2, **changes) -> list[TestClient]:
        for _ in range(n):
            app = create_app(settings.model_copy(update=changes))
            app.dependency_overrides[get_model_store] = own_store(ModelStore(settings.data_dir, builtins={}))
            opened.append(TestClient(app, raise_server_exceptions=False).__enter__())
        return opened[-n:]

    yield make
    for client in opened:
        client.__exit__(None, None, None)
    assert not training_threads(), "a training thread outlived its test"


def own_store(store: ModelStore):
    return lambda: store


def manager_of(client: TestClient):
    return client.app.state.services.training


def wait_status(client: TestClient, job_id: str, wanted: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/training/jobs/{job_id}", headers=ALICE).json()
        if job["status"] in wanted:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is still {job['status']}"
        time.sleep(0.1)


def test_any_worker_reads_lists_streams_and_cancels_a_job(workers):
    a, b = workers(2)
    started = a.post("/api/training/jobs", json=LONG, headers=ALICE)
    assert started.status_code == 201, started.text
    job_id = started.json()["id"]
    seen = b.get(f"/api/training/jobs/{job_id}", headers=ALICE)
    assert seen.status_code == 200 and seen.json()["status"] == "running" and seen.json()["owned"] is True
    listed = b.get("/api/training/jobs", headers=ALICE).json()
    assert [j["id"] for j in listed["jobs"]] == [job_id] and listed["running"] == 1
    assert b.get("/api/training/jobs", headers=BOB).json()["jobs"] == []  # still only the owner's
    assert b.delete(f"/api/training/jobs/{job_id}", headers=BOB).status_code == 403

    start = time.monotonic()
    assert b.delete(f"/api/training/jobs/{job_id}", headers=ALICE).status_code == 202
    thread = manager_of(a).get(job_id).thread
    thread.join(20)  # worker a stops it: it reads the cancel flag at its next heartbeat
    assert not thread.is_alive()
    print(f"\ncancel through worker b stopped worker a's job in {time.monotonic() - start:.2f} s")
    events = read_events(b, job_id)  # streamed by the worker that did not train it
    assert events[0][1] == "epoch" and events[-1][1] == "end" and events[-1][2]["status"] == "cancelled"
    assert [e[0] for e in events] == sorted({e[0] for e in events})
    state = a.get(f"/api/training/jobs/{job_id}").json()
    assert state["status"] == "cancelled" and state["epochs"][0]["epoch"] == 0


def test_the_limits_count_every_workers_jobs(workers):
    a, b = workers(2, training_max_jobs=2, quota_running_jobs_per_owner=1)
    assert a.post("/api/training/jobs", json=LONG, headers=ALICE).status_code == 201
    mine = b.post("/api/training/jobs", json=LONG, headers=ALICE)  # alice's one job runs on worker a
    assert mine.status_code == 429 and "you have 1 training job running" in mine.json()["detail"]
    assert b.post("/api/training/jobs", json=LONG, headers=BOB).status_code == 201
    full = a.post("/api/training/jobs", json=QUICK, headers={"X-Owner-Token": "carol-token-0123456789abcdefghij"})
    assert full.status_code == 429 and "this server trains at most 2 at once" in full.json()["detail"]
    assert full.json()["running"] == 2
    for client in (a, b):
        for job in client.get("/api/training/jobs", headers=ALICE).json()["jobs"]:
            client.delete(f"/api/training/jobs/{job['id']}", headers=ALICE)
        for job in client.get("/api/training/jobs", headers=BOB).json()["jobs"]:
            client.delete(f"/api/training/jobs/{job['id']}", headers=BOB)


def test_a_network_trained_by_one_worker_opens_as_a_model_on_another(workers, settings):
    a, b = workers(2)
    job_id = a.post("/api/training/jobs", json=QUICK, headers=ALICE).json()["id"]
    wait_status(b, job_id, {"done"})
    assert (settings.data_dir / "training" / job_id / "weights.npz").is_file()
    opened = b.post(f"/api/training/jobs/{job_id}/model", headers=ALICE)
    assert opened.status_code == 200, opened.text
    model_id = opened.json()["model_id"]
    assert a.get(f"/api/training/jobs/{job_id}").json()["model_id"] == model_id
    x, _ = load_mnist("test", limit=1)
    expected = int(np.argmax(manager_of(a).get(job_id).graph.forward(x, manager_of(a).get(job_id).params).output[0]))
    for client in (a, b):  # worker a never registered it: it finds it in the data directory
        detail = client.get(f"/api/models/{model_id}", headers=ALICE)
        assert detail.status_code == 200 and detail.json()["cam_layer"] == "relu2" and detail.json()["owned"]
        predicted = client.post(f"/api/models/{model_id}/predict", content=npy_bytes(x),
                                headers={**ALICE, "content-type": "application/x-npy"})
        assert predicted.status_code == 200 and predicted.json()["classes"][0]["index"] == expected
        assert client.get(f"/api/models/{model_id}", headers=BOB).status_code == 404  # still alice's


def test_finished_jobs_and_their_models_survive_a_restart(workers, settings):
    (a,) = workers(1)
    job_id = a.post("/api/training/jobs", json=QUICK, headers=ALICE).json()["id"]
    before = wait_status(a, job_id, {"done"})
    events_before = read_events(a, job_id)
    a.__exit__(None, None, None)  # the server stops

    (restarted,) = workers(1)
    after = restarted.get(f"/api/training/jobs/{job_id}", headers=ALICE).json()
    assert after == before
    assert read_events(restarted, job_id) == events_before
    assert restarted.post(f"/api/training/jobs/{job_id}/model", headers=ALICE).status_code == 200


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_job_whose_worker_process_died_is_interrupted_at_start_up(workers, settings):
    (a,) = workers(1)
    job_id = a.post("/api/training/jobs", json=LONG, headers=ALICE).json()["id"]
    store = JobStore(settings.data_dir / "state.sqlite3")
    with store.transaction() as con:  # as if a worker process that has since died were training it
        con.execute("UPDATE jobs SET worker = ? WHERE id = ?", (f"{socket.gethostname()}:{dead_pid()}:x", job_id))
    manager_of(a).cancel(job_id)  # its thread stops (the row is rewritten below as a dead worker left it)
    manager_of(a).get(job_id).thread.join(20)
    with store.transaction() as con:
        con.execute("UPDATE jobs SET status = 'running', error = NULL WHERE id = ?", (job_id,))
        con.execute("DELETE FROM events WHERE job_id = ? AND event = 'end'", (job_id,))

    (restarted,) = workers(1)
    job = restarted.get(f"/api/training/jobs/{job_id}", headers=ALICE).json()
    assert job["status"] == "failed" and job["error"].startswith("interrupted: the server process training it")
    events = read_events(restarted, job_id)
    assert events[-1][1] == "end" and events[-1][2]["status"] == "failed"
    assert restarted.get("/api/training/jobs", headers=ALICE).json()["running"] == 0


def test_a_job_not_heard_from_is_interrupted_and_its_stream_ends(workers, settings):
    (a,) = workers(1)
    manager = manager_of(a)
    manager.stale_seconds = 1.0
    store = JobStore(settings.data_dir / "state.sqlite3")
    from tests.api.test_job_store import row

    silent = row("5ilent00", owner=hash_token(ALICE["X-Owner-Token"]), heartbeat=time.time())
    silent.worker = "another-machine:1234:abcd"
    assert store.admit(silent, 5, None, 0) is None
    assert store.post(silent.id, "epoch", {"epoch": 0, "loss": 2.3, "accuracy": 0.1, "test_loss": 2.3,
                                           "test_accuracy": 0.1, "elapsed": 0.0}) == 0
    assert a.get(f"/api/training/jobs/{silent.id}").json()["status"] == "running"
    start = time.monotonic()
    events = read_events(a, silent.id, timeout=10)  # nobody beats for it: the stream ends once it is stale
    assert [e[1] for e in events] == ["epoch", "end"] and events[-1][2]["status"] == "failed"
    assert 0.5 < time.monotonic() - start < 5
    assert a.get(f"/api/training/jobs/{silent.id}").json()["error"].startswith("interrupted")


def test_a_store_that_cannot_be_opened_is_503_and_the_rest_still_serves(settings, monkeypatch):
    """A read-only data directory (simulated: the tests run as root) does not stop the server; training says why."""
    import sqlite3

    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr("app.services.job_store.sqlite3.connect", refuse)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/api/health").status_code == 200
        for method, path in [("POST", "/api/training/jobs"), ("GET", "/api/training/jobs"),
                             ("GET", "/api/training/jobs/abcd1234")]:
            answer = client.request(method, path, json=QUICK if method == "POST" else None)
            assert answer.status_code == 503, (path, answer.text)
            assert "may not write to its data directory" in answer.json()["detail"]
