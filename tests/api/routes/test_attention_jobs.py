"""Heavy attention requests run as background jobs: 202, progress as server-sent events, then the result, which is
what the synchronous computation answers; cheap requests are answered while a job runs; jobs are bounded, owned,
cancellable, cleaned up, and readable from any worker (their state is in the data directory)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.deps import get_model_store
from app.main import create_app
from app.services import attention_jobs
from app.services.attention import AttentionRequest, attention_map
from app.services.compute import ComputeSlots
from app.services.inputs import ModelInput
from tests.api.attention_jobs import finish_job, follow_job, read_events
from tests.api.conftest import npy_bytes

NPY = {"content-type": "application/x-npy"}
X = np.random.default_rng(7).standard_normal((1, 1, 12, 12)).astype(np.float32)
OTHER = {"X-Owner-Token": "b" * 43}
MANY_PASS = [
    ("scorecam", {}),
    ("smoothgrad", {"samples": 20}),
    ("integrated_gradients", {"steps": 40}),
    ("occlusion", {"window": 2, "stride": 1}),
]


def post(client: TestClient, query: str, headers: dict[str, str] | None = None):
    return client.post(f"/api/models/tiny/attention?{query}", content=npy_bytes(X), headers={**NPY, **(headers or {})})


def wait_for(client: TestClient, job: dict, condition, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(job["status_url"]).json()
        if condition(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.02)


@contextmanager
def slow_batches(store, seconds: float) -> Iterator[None]:
    """Every forward pass of more than two inputs (a job's batches, never a single-pass request) takes ``seconds``
    longer, inside the compute slot."""
    graph = store.get("tiny").graph
    forward = graph.forward

    def slow(x, *args, **kwargs):
        if len(x) > 2:
            time.sleep(seconds)
        return forward(x, *args, **kwargs)

    graph.forward = slow
    try:
        yield
    finally:
        del graph.forward


@pytest.mark.parametrize("method, options", MANY_PASS, ids=[m for m, _ in MANY_PASS])
def test_a_many_pass_method_is_a_job_whose_result_is_the_synchronous_answer(client, store, settings, method,
                                                                              options):
    query = "&".join([f"method={method}", "target=1", "include_input_map=true",
                      *(f"{k}={v}" for k, v in options.items())])
    created = post(client, query)
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["status"] in ("queued", "running") and job["owned"] is True and job["owner_token"]
    assert created.headers["location"] == job["status_url"] == f"/api/attention/jobs/{job['id']}"
    assert "cnn_vis_owner" in created.headers.get("set-cookie", "")

    events = read_events(client, job["events_url"])
    ids = [event_id for event_id, _, _ in events]
    assert ids == sorted(set(ids)), ids
    progress = [data for _, event, data in events if event == "progress"]
    assert [event for _, event, _ in events][-1] == "end" and events[-1][2]["status"] == "done"
    assert events[-1][2]["result_url"] == job["result_url"]
    dones = [p["done"] for p in progress]
    assert dones == sorted(dones)
    assert events[-1][2]["done"] == events[-1][2]["total"] > 1

    result = client.get(job["result_url"])
    assert result.status_code == 200 and result.headers["content-type"] == "application/json"
    got = result.json()
    request = AttentionRequest(method, 1, None, True, options)
    expected = json.loads(attention_map(store.get("tiny"), ModelInput("tensor", npy_bytes(X)), request, settings,
                                        ComputeSlots(None, 1, 5)).model_dump_json())
    for key in ("layer_map", "layer_map_normalized", "input_map"):
        np.testing.assert_allclose(np.array(got.pop(key)), np.array(expected.pop(key)), rtol=1e-5, atol=1e-6)
    got.pop("elapsed_ms"), expected.pop("elapsed_ms")
    assert got == expected  # the PNGs, the target, the score, the extras


def test_cheap_methods_stay_synchronous_unless_their_work_passes_the_threshold(client, settings):
    assert post(client, "method=gradcam").status_code == 200
    assert post(client, "method=saliency").status_code == 200
    settings.attention_job_gmacs = 1e-9  # every request is heavy now
    job = post(client, "method=gradcam")
    assert job.status_code == 202
    assert job.json()["estimated_gmacs"] > 0
    assert follow_job(client, job).json()["method"] == "gradcam"


def test_refusals_stay_on_the_post(client):
    assert post(client, "method=smoothgrad&samples=64&target=9").status_code == 422  # no class 9: no job
    assert post(client, "method=scorecam&layer=fc").status_code == 422
    huge = np.full((1, 1, 12, 12), 3e38, dtype=np.float32)
    refused = client.post("/api/models/tiny/attention?method=scorecam", content=npy_bytes(huge), headers=NPY)
    assert refused.status_code == 422 and "overflow" in refused.json()["detail"]
    assert post(client, "method=occlusion&layer=nope").status_code == 404  # an unknown node, on the POST
    assert not client.app.state.services.attention.root.exists() or not any(
        client.app.state.services.attention.root.iterdir())


def test_a_cheap_request_is_answered_while_a_job_holds_the_only_compute_slot(tmp_path, settings, store):
    settings.compute_slots = 1
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: store
    with TestClient(app) as client, slow_batches(store, 0.4):
        job = post(client, "method=integrated_gradients&steps=64").json()  # 4 batches of 16, 0.4 s each, then 2
        wait_for(client, job, lambda s: s["status"] == "running")
        start = time.perf_counter()
        cheap = post(client, "method=gradcam")
        waited = time.perf_counter() - start
        status = client.get(job["status_url"]).json()
        print(f"gradcam answered in {waited:.3f} s while the job was {status['status']} ({status['done']} passes)")
        assert cheap.status_code == 200
        assert status["status"] == "running"  # the job had not finished: the cheap request went between batches
        assert waited < 0.9  # at most one batch (0.4 s) of waiting, not the job's 1.6 s
        assert finish_job(client, job).status_code == 200


def test_running_jobs_are_bounded_on_the_machine_and_per_person(client, settings, store):
    settings.attention_max_jobs = 2
    settings.attention_jobs_per_owner = 1
    client.app.state.services.attention.max_running = 2  # the service was built from the settings at start-up
    client.app.state.services.attention.per_owner = 1
    with slow_batches(store, 0.3):
        mine = post(client, "method=integrated_gradients&steps=32")
        assert mine.status_code == 202
        again = post(client, "method=integrated_gradients&steps=32")
        assert again.status_code == 429 and "you have 1 attention job" in again.json()["detail"]
        other = post(client, "method=scorecam", headers=OTHER)
        assert other.status_code == 202
        third = post(client, "method=scorecam", headers={"X-Owner-Token": "c" * 43})
        assert third.status_code == 429 and "2 attention jobs are running" in third.json()["detail"]
        assert post(client, "method=gradcam").status_code == 200  # cheap requests are never refused
        for created in (mine, other):
            assert finish_job(client, created.json()).status_code == 200
    assert post(client, "method=scorecam", headers={"X-Owner-Token": "c" * 43}).status_code == 202


def test_old_jobs_are_removed_beyond_the_number_kept_and_the_age(client, settings):
    jobs = client.app.state.services.attention
    jobs.kept = 2
    started = []
    for _ in range(4):
        started.append(post(client, "method=scorecam").json())
        finish_job(client, started[-1])
    # the fourth start found three finished jobs: the oldest went
    assert client.get(started[0]["status_url"]).status_code == 404
    assert client.get(started[0]["result_url"]).status_code == 404
    assert all(client.get(job["result_url"]).status_code == 200 for job in started[1:])
    assert not (jobs.root / started[0]["id"]).exists()
    jobs.ttl_s = 0.05
    time.sleep(0.1)
    follow_job(client, post(client, "method=scorecam"))
    assert [client.get(job["status_url"]).status_code for job in started] == [404, 404, 404, 404]


def test_events_resumed_at_or_past_the_end_close_at_once(client):
    job = post(client, "method=scorecam").json()
    events = read_events(client, job["events_url"])
    end_id = events[-1][0]
    for last in (end_id, end_id + 1, 10**9):
        start = time.perf_counter()
        assert read_events(client, job["events_url"], {"Last-Event-ID": str(last)}) == []
        assert time.perf_counter() - start < 2
    replay = read_events(client, job["events_url"], {"Last-Event-ID": str(end_id - 1)})
    assert [event for _, event, _ in replay] == ["end"]


def test_result_is_409_while_running_and_cancelling_is_for_the_owner(client, store):
    with slow_batches(store, 0.3):
        created = post(client, "method=integrated_gradients&steps=64")
        job = created.json()
        mine = {"X-Owner-Token": job["owner_token"]}
        wait_for(client, job, lambda s: s["status"] == "running")
        running = client.get(job["result_url"])
        assert running.status_code == 409 and "still running" in running.json()["detail"]
        assert running.json()["status"] == "running"
        assert client.get(job["status_url"], headers=OTHER).json()["owned"] is False  # readable by anyone
        refused = client.delete(job["status_url"], headers=OTHER)
        assert refused.status_code == 403 and "started by someone else" in refused.json()["detail"]
        cancelled = client.delete(job["status_url"], headers=mine)
        assert cancelled.status_code == 202
        events = read_events(client, job["events_url"])
        assert events[-1][1] == "end" and events[-1][2]["status"] == "cancelled"
        status = client.get(job["status_url"]).json()
        assert status["status"] == "cancelled" and status["done"] < 66
        result = client.get(job["result_url"])
        assert result.status_code == 409 and "cancelled" in result.json()["detail"]


def test_a_failed_job_answers_the_error_the_request_would_have(client, store):
    graph = store.get("tiny").graph
    forward = graph.forward

    def out_of_memory(x, *args, **kwargs):
        if len(x) > 2:
            raise MemoryError
        return forward(x, *args, **kwargs)

    graph.forward = out_of_memory
    try:
        job = post(client, "method=scorecam").json()
        events = read_events(client, job["events_url"])
    finally:
        del graph.forward
    assert events[-1][2]["status"] == "failed" and events[-1][2]["error_status"] == 413
    result = client.get(job["result_url"])
    assert result.status_code == 413 and "more memory than this server has" in result.json()["detail"]
    assert client.get(job["status_url"]).json()["error"] == result.json()["detail"]


def test_any_worker_answers_for_a_job(settings, store):
    """Two apps on one data directory stand for two uvicorn workers: the second answers for the first's job."""
    first, second = create_app(settings), create_app(settings)
    for app in (first, second):
        app.dependency_overrides[get_model_store] = lambda: store
    with TestClient(first) as a, TestClient(second) as b:
        job = post(a, "method=integrated_gradients&steps=40").json()
        assert b.get(job["status_url"]).status_code == 200
        events = read_events(b, job["events_url"])
        assert events[-1][1] == "end" and events[-1][2]["status"] == "done"
        assert b.get(job["result_url"]).json() == a.get(job["result_url"]).json()
        with slow_batches(store, 0.3):
            other = post(a, "method=integrated_gradients&steps=64").json()
            wait_for(b, other, lambda s: s["status"] == "running")
            assert b.delete(other["status_url"], headers={"X-Owner-Token": other["owner_token"]}).status_code == 202
            assert wait_for(a, other, lambda s: s["status"] != "running")["status"] == "cancelled"


def test_a_job_whose_worker_is_gone_reads_as_failed(client):
    job = post(client, "method=scorecam").json()
    finish_job(client, job)
    directory = client.app.state.services.attention.root / job["id"]
    status = json.loads((directory / attention_jobs.STATUS_FILE).read_text())
    dead = subprocess.Popen(["true"])
    dead.wait()
    status.update(status="running", pid=dead.pid)  # as a killed worker leaves it
    (directory / attention_jobs.STATUS_FILE).write_text(json.dumps(status))
    read = client.get(job["status_url"]).json()
    assert read["status"] == "failed" and read["error_status"] == 503 and "stopped" in read["error"]
    assert client.get(job["result_url"]).status_code == 503
    assert read_events(client, job["events_url"])[-1][2]["status"] == "failed"


@pytest.mark.parametrize("job_id", ["0123456789abcdef", "nope", "..", "%2e%2e%2fsecrets"])
def test_unknown_jobs_are_404(client, job_id):
    for suffix in ("", "/events", "/result"):
        response = client.get(f"/api/attention/jobs/{job_id}{suffix}")
        assert response.status_code == 404, (suffix, response.text)
        assert "no attention job" in response.json()["detail"] or "there is no GET" in response.json()["detail"]
