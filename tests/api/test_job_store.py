"""The SQLite job store (app/services/job_store.py): admission under the running limits counted atomically
(also by two processes racing), events in order with only the latest pictures kept, conditional writes that
never revive a finished job, cancel flags read by the heartbeat, pruning, and rows that survive a reopen."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from app.errors import ApiError
from app.services.job_store import JobIdTakenError, JobRow, JobStore, Refusal, store_errors
from app.services.storage import StorageError


def row(job_id: str, owner: str | None = "alice", status: str = "running", heartbeat: float | None = None,
        created: float | None = None) -> JobRow:
    now = time.time()
    return JobRow(id=job_id, owner=owner, name=f"job {job_id}", settings={"epochs": 1}, network="classic",
                  param_count=10, pretrained_params=[], status=status, error=None, progress={"epochs": 1, "steps": 4},
                  model_id=None, cancel=False, worker="host:1:abcd", heartbeat=now if heartbeat is None else heartbeat,
                  created=now if created is None else created, created_at="2026-12-05T00:00:00Z", finished_at=None,
                  last_seq=-1)


@pytest.fixture
def store(tmp_path) -> JobStore:
    return JobStore(tmp_path / "state.sqlite3")


def end(row: JobRow) -> dict:
    return {"status": row.status, "error": row.error}


def test_wal_mode_and_a_reopened_store_keeps_everything(tmp_path, store):
    assert store.admit(row("a1"), 2, None, 0) is None
    assert store.post("a1", "epoch", {"epoch": 0}, {"epoch": 0, "epochs": 1, "steps": 4}) == 0
    assert store.finish("a1", "done", None, end)
    again = JobStore(tmp_path / "state.sqlite3")  # a restart
    kept = again.get("a1")
    assert kept is not None and kept.status == "done" and kept.finished_at and kept.settings == {"epochs": 1}
    assert [(m.seq, m.event) for m in again.messages("a1")] == [(0, "epoch"), (1, "end")]
    mode = sqlite3.connect(tmp_path / "state.sqlite3").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_admit_counts_the_server_limit_and_the_owners(store):
    assert store.admit(row("a1"), 3, 1, 0) is None
    assert store.admit(row("a2"), 3, 1, 0) == Refusal("owner", 1, 1)
    assert store.admit(row("b1", owner="bob"), 3, 1, 0) is None
    assert store.admit(row("x1", owner=None), 3, 1, 0) is None  # no owner: only the server's limit
    assert store.admit(row("c1", owner="carol"), 3, 1, 0) == Refusal("server", 3, 3)
    assert [r.id for r in store.jobs()] == ["x1", "b1", "a1"]  # newest first
    with pytest.raises(JobIdTakenError):
        store.admit(row("a1", owner="dave"), 9, None, 0)


def test_jobs_of_a_silent_worker_do_not_count(store):
    long_ago = time.time() - 100
    assert store.admit(row("old", heartbeat=long_ago), 1, None, 0) is None
    assert store.admit(row("new"), 1, None, alive_since=time.time() - 30) is None
    assert [r.id for r in store.stale(time.time() - 30)] == ["old"]
    assert [r.id for r in store.running(time.time() - 30)] == ["new"]


def test_events_in_order_only_the_latest_images_kept(store):
    store.admit(row("a1"), 2, None, 0)
    seqs = [store.post("a1", kind, {"n": i}) for i, kind in enumerate(["epoch", "images", "batch", "images", "batch"])]
    assert seqs == [0, 1, 2, 3, 4]
    assert [(m.seq, m.event, m.data["n"]) for m in store.messages("a1")] == [
        (0, "epoch", 0), (2, "batch", 2), (3, "images", 3), (4, "batch", 4)]
    assert [m.seq for m in store.messages("a1", after=2)] == [3, 4]
    assert [m.event for m in store.messages("a1", kinds=("epoch", "batch"))] == ["epoch", "batch", "batch"]
    messages, job = store.messages_and_row("a1", 3)
    assert [m.seq for m in messages] == [4] and job is not None and job.last_seq == 4 and not job.finished


def test_a_finished_job_is_never_written_again(store):
    store.admit(row("a1"), 2, None, 0)
    store.post("a1", "batch", {}, {"step": 3})
    assert store.finish("a1", "cancelled", None, end, progress={"step": 3, "epochs": 1})
    assert store.finish("a1", "done", None, end) is False  # the first end wins
    assert store.post("a1", "batch", {}) is None
    messages, job = store.messages_and_row("a1", -1)
    assert [m.event for m in messages] == ["batch", "end"] and messages[-1].data == {"status": "cancelled",
                                                                                      "error": None}
    assert job.status == "cancelled" and job.progress == {"step": 3, "epochs": 1}


def test_interrupting_only_a_silent_job(store):
    store.admit(row("a1"), 2, None, 0)
    assert store.finish("a1", "failed", "interrupted", end, alive_before=time.time() - 30) is False  # alive
    assert store.finish("a1", "failed", "interrupted", end, alive_before=time.time() + 1)
    assert store.get("a1").error == "interrupted"


def test_the_heartbeat_reports_cancelled_and_ended_jobs(store):
    for job_id in ("a1", "a2", "a3"):
        store.admit(row(job_id, owner=None, heartbeat=1.0), 5, None, 0)
    store.request_cancel("a2")
    store.finish("a3", "failed", "x", end)
    assert store.beat(["a1", "a2", "a3", "gone"], now=50.0) == {"a2", "a3", "gone"}
    assert store.get("a1").heartbeat == 50.0 and store.get("a3").heartbeat == 1.0
    store.request_cancel("a3")  # finished: the flag stays down
    assert store.get("a3").cancel is False and store.get("a2").cancel is True
    assert store.beat([]) == set()


def test_prune_drops_the_oldest_finished_jobs_only(store):
    for i in range(5):
        store.admit(row(f"j{i}", owner=None, created=100.0 + i), 9, None, 0)
        store.post(f"j{i}", "epoch", {})
    for job_id in ("j1", "j2", "j4"):
        store.finish(job_id, "done", None, end)
    assert store.prune(3) == ["j1", "j2"]  # j0 runs: kept
    assert [r.id for r in store.jobs()] == ["j4", "j3", "j0"] and store.messages("j1") == []
    assert store.prune(3) == []


def test_threads_admitting_at_once_never_pass_the_limit(store):
    admitted, barrier = [], threading.Barrier(12)

    def take(i: int) -> None:
        barrier.wait()
        if store.admit(row(f"t{i}", owner=None), 4, None, 0) is None:
            admitted.append(i)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(admitted) == 4 and len(store.running()) == 4


def _admit_many(path: str, prefix: str, start, results) -> None:
    store = JobStore(Path(path))
    start.wait()
    taken = sum(store.admit(row(f"{prefix}{i}", owner=None), 5, None, 0) is None for i in range(20))
    results.put(taken)


def test_two_processes_admitting_at_once_never_pass_the_limit(tmp_path):
    """The limit is the deployment's: two worker processes racing for the last slots take 5 in all."""
    path = tmp_path / "state.sqlite3"
    JobStore(path)
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [context.Process(target=_admit_many, args=(str(path), p, start, results)) for p in "ab"]
    for process in processes:
        process.start()
    time.sleep(0.5)
    start.set()
    taken = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(30)
    assert sum(taken) == 5 and len(JobStore(path).running()) == 5


@pytest.mark.parametrize(("message", "kind", "status"), [
    ("database or disk is full", StorageError, 507),
    ("attempt to write a readonly database", StorageError, 503),
    ("database is locked", ApiError, 503),
    ("disk I/O error", ApiError, 503),
])
def test_store_errors_become_the_apis_507_or_503(message, kind, status):
    with pytest.raises(kind) as raised, store_errors("starting the training job"):
        raise sqlite3.OperationalError(message)
    assert raised.value.status_code == status
    text = raised.value.message if isinstance(raised.value, StorageError) else raised.value.detail
    assert "starting the training job" in text and message not in text and "Error" not in text  # no repr


def test_a_damaged_store_is_503_saying_so(tmp_path):
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ApiError) as raised, store_errors("listing the training jobs"):
        JobStore(path)
    assert raised.value.status_code == 503 and "damaged" in raised.value.detail
