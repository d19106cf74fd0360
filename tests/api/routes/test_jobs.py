"""Analysis jobs: a task runs once in the background and its answer is the cache for equal tasks; progress and
previews stream as server-sent events; results, files, cancelling, failures, bounds and clean-up; any worker reads
them (their state is in the data directory)."""

from __future__ import annotations

import json
import threading
import time
from contextlib import nullcontext

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.services.analysis_jobs import AnalysisJobs, AnalysisTask, JobContext, task_id
from app.services.errors import UnusableRequestError
from engine.errors import EngineError
from tests.api.conftest import npy_load

OTHER = {"X-Owner-Token": "b" * 43}


def jobs_of(client: TestClient) -> AnalysisJobs:
    return client.app.state.services.analysis


def counting_task(steps: int = 3, key: dict | None = None, gate: threading.Event | None = None,
                  calls: list[int] | None = None) -> AnalysisTask:
    def run(ctx: JobContext) -> dict:
        if calls is not None:
            calls.append(1)
        for step in range(steps):
            if gate is not None:
                gate.wait(10)
            ctx.progress(step + 1, steps)
        ctx.preview("preview.png", b"\x89PNG fake")
        url = ctx.write_npy("values.npy", np.arange(steps, dtype=np.float32))
        return {"sum": steps * (steps - 1) / 2, "values_url": url}

    return AnalysisTask(kind="count", model_id="tiny", version="v1", key=key or {"steps": steps}, run=run)


def wait_for(client: TestClient, job_id: str, condition, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/api/jobs/{job_id}").json()
        if condition(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.02)


def events(client: TestClient, job_id: str, headers: dict[str, str] | None = None) -> list[tuple[str, int, dict]]:
    answer = client.get(f"/api/jobs/{job_id}/events", headers=headers or {})
    assert answer.status_code == 200, answer.text
    found = []
    for block in answer.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in lines:
            found.append((lines["event"], int(lines["id"]), json.loads(lines["data"])))
    return found


def test_a_task_runs_once_and_its_answer_is_the_cache(client: TestClient) -> None:
    jobs = jobs_of(client)
    calls: list[int] = []
    status = jobs.submit(counting_task(4, calls=calls), nullcontext)
    assert status["status"] in {"queued", "running"} and status["id"] == counting_task(4).id
    done = wait_for(client, status["id"], lambda s: s["status"] == "done")
    assert (done["done"], done["total"]) == (4, 4) and done["kind"] == "count" and done["model_id"] == "tiny"
    result = client.get(done["result_url"]).json()
    assert result["sum"] == 6
    assert npy_load(client.get(result["values_url"]).content).tolist() == [0, 1, 2, 3]
    again = jobs.submit(counting_task(4, calls=calls), nullcontext)
    assert again["status"] == "done" and again["id"] == status["id"]
    assert jobs.cached_result(counting_task(4)) == result
    assert calls == [1]  # the second request found the answer; nothing ran again
    assert jobs.cached_result(counting_task(5)) is None  # another key, another job


def test_the_id_is_what_is_computed() -> None:
    assert task_id("count", "tiny", "v1", {"a": 1, "b": 2}) == task_id("count", "tiny", "v1", {"b": 2, "a": 1})
    others = {task_id("count", "tiny", "v2", {"a": 1, "b": 2}), task_id("count", "other", "v1", {"a": 1, "b": 2}),
              task_id("fv", "tiny", "v1", {"a": 1, "b": 2}), task_id("count", "tiny", "v1", {"a": 1, "b": 3})}
    assert len(others) == 4 and task_id("count", "tiny", "v1", {"a": 1, "b": 2}) not in others


def test_a_running_job_is_followed_not_started_twice(client: TestClient) -> None:
    jobs = jobs_of(client)
    gate = threading.Event()
    calls: list[int] = []
    first = jobs.submit(counting_task(2, gate=gate, calls=calls), nullcontext)
    second = jobs.submit(counting_task(2, gate=gate, calls=calls), nullcontext)
    assert second["id"] == first["id"] and second["status"] in {"queued", "running"}
    answer = client.get(first["result_url"])
    assert answer.status_code == 409 and "still" in answer.json()["detail"] and "/events" in answer.json()["detail"]
    gate.set()
    wait_for(client, first["id"], lambda s: s["status"] == "done")
    assert calls == [1]


def test_events_stream_progress_and_preview_then_end_and_resuming_past_the_end_closes(client: TestClient) -> None:
    status = jobs_of(client).submit(counting_task(3), nullcontext)
    wait_for(client, status["id"], lambda s: s["status"] == "done")
    found = events(client, status["id"])
    assert found[-1][0] == "end" and found[-1][2]["status"] == "done"
    assert found[-1][2]["preview_url"] == f"/api/jobs/{status['id']}/files/preview.png"
    assert client.get(found[-1][2]["preview_url"]).content == b"\x89PNG fake"
    assert events(client, status["id"], {"Last-Event-ID": str(found[-1][1])}) == []
    assert events(client, status["id"], {"Last-Event-ID": "999999"}) == []


def test_live_events_carry_the_progress(client: TestClient) -> None:
    gate = threading.Event()
    status = jobs_of(client).submit(counting_task(3, gate=gate), nullcontext)
    threading.Timer(0.3, gate.set).start()
    found = events(client, status["id"])
    kinds = [kind for kind, _, _ in found]
    assert kinds[-1] == "end" and set(kinds[:-1]) <= {"progress"}
    seqs = [seq for _, seq, _ in found]
    assert seqs == sorted(set(seqs))  # each state once, in order


def test_cancel_stops_the_job_and_only_its_owner_or_the_lecturer_may(client: TestClient) -> None:
    gate = threading.Event()
    owner = client.get("/").cookies.get("cnn_vis_owner") or "a" * 43
    from app.services.owners import hash_token

    status = jobs_of(client).submit(counting_task(50, gate=gate), nullcontext, owner=hash_token(owner))
    refused = client.delete(f"/api/jobs/{status['id']}", headers=OTHER)
    assert refused.status_code == 403 and "someone else" in refused.json()["detail"]
    accepted = client.delete(f"/api/jobs/{status['id']}", headers={"X-Owner-Token": owner})
    assert accepted.status_code == 202 and accepted.json()["owned"] is True
    gate.set()
    ended = wait_for(client, status["id"], lambda s: s["status"] not in {"queued", "running"})
    assert ended["status"] == "cancelled"
    answer = client.get(status["result_url"])
    assert answer.status_code == 409 and "cancelled" in answer.json()["detail"]
    restarted = jobs_of(client).submit(counting_task(50), nullcontext)  # asked again: a fresh attempt
    assert restarted["status"] in {"queued", "running", "done"}
    assert wait_for(client, status["id"], lambda s: s["status"] == "done")["done"] == 50


@pytest.mark.parametrize("error, status_code", [(EngineError("the node has no channels"), 422),
                                                (UnusableRequestError("no digits"), 422),
                                                (MemoryError(), 413)])
def test_a_failure_is_recorded_with_the_status_the_request_would_have_had(client: TestClient, error: Exception,
                                                                          status_code: int) -> None:
    def run(ctx: JobContext) -> dict:
        raise error

    task = AnalysisTask(kind="fail", model_id="tiny", version="v1", key={"error": repr(error)}, run=run)
    status = jobs_of(client).submit(task, nullcontext)
    failed = wait_for(client, status["id"], lambda s: s["status"] == "failed")
    assert failed["error_status"] == status_code
    answer = client.get(failed["result_url"])
    assert answer.status_code == status_code and answer.json()["detail"] == failed["error"]


def test_the_machine_runs_at_most_max_running_jobs(client: TestClient) -> None:
    jobs = jobs_of(client)
    gate = threading.Event()
    started = [jobs.submit(counting_task(1, key={"n": n}, gate=gate), nullcontext) for n in range(jobs.max_running)]
    from app.errors import ApiError

    with pytest.raises(ApiError) as refused:
        jobs.submit(counting_task(1, key={"n": 99}), nullcontext)
    assert refused.value.status_code == 429 and "wait for one to finish" in refused.value.detail
    gate.set()
    for status in started:
        wait_for(client, status["id"], lambda s: s["status"] == "done")
    assert jobs.submit(counting_task(1, key={"n": 99}), nullcontext)["status"] in {"queued", "running", "done"}


def test_finished_jobs_beyond_kept_go_least_recently_used_first(tmp_path) -> None:
    jobs = AnalysisJobs(tmp_path, max_running=4, kept=3, ttl_s=3600)
    ids = []
    for n in range(3):
        status = jobs.submit(counting_task(1, key={"n": n}), nullcontext)
        ids.append(status["id"])
        deadline = time.monotonic() + 10
        while jobs.read(status["id"])["status"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.02)
    assert jobs.cached_result(counting_task(1, key={"n": 0})) is not None  # job 0 used again: now the newest
    time.sleep(0.02)
    jobs.submit(counting_task(1, key={"n": 3}), nullcontext)
    kept = {path.name for path in (tmp_path / "analysis-jobs").iterdir() if path.is_dir()}
    assert ids[0] in kept and ids[2] in kept and ids[1] not in kept and len(kept) == 3


def test_a_job_whose_worker_died_reads_as_failed(tmp_path) -> None:
    jobs = AnalysisJobs(tmp_path, max_running=4, kept=10, ttl_s=3600)
    directory = tmp_path / "analysis-jobs" / ("0" * 16)
    directory.mkdir(parents=True)
    (directory / "status.json").write_text(json.dumps({
        "id": "0" * 16, "kind": "count", "model_id": "tiny", "status": "running", "owner": None, "created_at": 1.0,
        "started_at": 1.0, "finished_at": None, "done": 1, "total": 9, "seq": 3, "preview": None, "error": None,
        "error_status": None, "pid": 2 ** 22 + 12345, "host": jobs.host}))
    status = jobs.read("0" * 16)
    assert status["status"] == "failed" and status["error_status"] == 503
    assert "send the request again" in status["error"]


@pytest.mark.parametrize("path", ["/api/jobs/nothere", "/api/jobs/0123456789abcdef", "/api/jobs/../../etc/passwd",
                                  "/api/jobs/0123456789abcdef/events", "/api/jobs/0123456789abcdef/result"])
def test_unknown_jobs_are_404(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404


def test_files_are_only_those_the_job_wrote(client: TestClient) -> None:
    status = jobs_of(client).submit(counting_task(1), nullcontext)
    wait_for(client, status["id"], lambda s: s["status"] == "done")
    for name in ["status.json", "..%2Fstatus.json", "result.json", "missing.png", ".values.npy.tmp"]:
        answer = client.get(f"/api/jobs/{status['id']}/files/{name}")
        assert answer.status_code == 404, name
    assert client.get(f"/api/jobs/{status['id']}/files/values.npy").status_code == 200


def test_a_second_worker_reads_the_job_from_the_data_directory(client: TestClient, settings) -> None:
    status = jobs_of(client).submit(counting_task(2), nullcontext)
    wait_for(client, status["id"], lambda s: s["status"] == "done")
    other = AnalysisJobs(settings.data_dir, max_running=2, kept=10, ttl_s=3600)
    assert other.read(status["id"])["status"] == "done"
    assert json.loads(other.result(status["id"]))["sum"] == 1
    values_url = f"/api/jobs/{status['id']}/files/values.npy"
    assert other.cached_result(counting_task(2)) == {"sum": 1, "values_url": values_url}


def test_bad_file_names_are_refused_by_the_context(tmp_path) -> None:
    ctx = JobContext("0" * 16, tmp_path, lambda *a: None, lambda: False)
    for name in ["../x.png", "A.png", ".hidden", "a/b.png", ""]:
        with pytest.raises(ValueError):
            ctx.write_file(name, b"x")


def test_a_preview_replaced_while_it_is_read_arrives_whole(client: TestClient) -> None:
    """The atlas once saw ERR_CONTENT_LENGTH_MISMATCH: a preview rewritten while it was served."""
    versions = [b"a" * 50_000, b"b" * 70_000]
    stop = threading.Event()

    def run(ctx: JobContext) -> dict:
        turn = 0
        while not stop.is_set():
            ctx.preview("preview.png", versions[turn % 2])
            turn += 1
        return {}

    status = jobs_of(client).submit(AnalysisTask("rewrite", "tiny", "v1", {}, run), nullcontext)
    url = f"/api/jobs/{status['id']}/files/preview.png"
    try:
        deadline = time.monotonic() + 10
        while client.get(url).status_code != 200:
            assert time.monotonic() < deadline
        for _ in range(100):
            answer = client.get(url)
            assert answer.content in versions and int(answer.headers["content-length"]) == len(answer.content)
    finally:
        stop.set()
    wait_for(client, status["id"], lambda s: s["status"] == "done")
