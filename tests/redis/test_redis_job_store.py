"""The Redis job store (app/services/redis_job_store.py) against a real redis-server: the SQLite store's contract
(admission under the limits, also raced by threads and by processes; events in order with only the latest
pictures; conditional writes; cancel flags; pruning), events resumed exactly from a Last-Event-ID, queued jobs,
and trained weights as .npz bytes."""

from __future__ import annotations

import io
import multiprocessing
import threading
import time

import numpy as np
import pytest

from app.services.job_store import JobIdTakenError, Refusal
from app.services.redis_client import connect
from app.services.redis_job_store import QUEUED, RedisJobStore, decode_row, encode_row
from tests.api.test_job_store import end, row


@pytest.fixture
def store(fresh_redis) -> RedisJobStore:
    return RedisJobStore(connect(fresh_redis))


def test_a_row_survives_the_hash_unchanged():
    original = row("a1", owner=None)
    original.pretrained_params = ["conv1.weight"]
    encoded = {k.encode(): v.encode() for k, v in encode_row(original).items()}
    assert decode_row(encoded) == original


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
    assert store.admit(row("old", heartbeat=time.time() - 100), 1, None, 0) is None
    assert store.admit(row("new"), 1, None, alive_since=time.time() - 30) is None
    assert [r.id for r in store.stale(time.time() - 30)] == ["old"]
    assert [r.id for r in store.running(time.time() - 30)] == ["new"]


def test_events_in_order_only_the_latest_images_kept(store):
    store.admit(row("a1"), 2, None, 0)
    seqs = [store.post("a1", kind, {"n": i}) for i, kind in enumerate(["epoch", "images", "batch", "images", "batch"])]
    assert seqs == [0, 1, 2, 3, 4]
    assert [(m.seq, m.event, m.data["n"]) for m in store.messages("a1")] == [
        (0, "epoch", 0), (2, "batch", 2), (3, "images", 3), (4, "batch", 4)]
    assert [m.event for m in store.messages("a1", kinds=("epoch", "batch"))] == ["epoch", "batch", "batch"]
    messages, job = store.messages_and_row("a1", 3)
    assert [m.seq for m in messages] == [4] and job is not None and job.last_seq == 4 and not job.finished


def test_events_resume_exactly_after_the_last_event_id(store):
    store.admit(row("a1"), 2, None, 0)
    for i in range(12):
        store.post("a1", "batch", {"n": i})
    store.finish("a1", "done", None, end)
    every = [m.seq for m in store.messages("a1")]
    assert every == list(range(13))
    for last_event_id in (-1, 0, 1, 9, 10, 11):
        assert [m.seq for m in store.messages("a1", after=last_event_id)] == every[last_event_id + 1:]
    assert store.messages("a1", after=11)[0].event == "end"
    for past_the_end in (12, 13, 10**9):  # nothing more, and the row says the job finished: the stream closes
        messages, job = store.messages_and_row("a1", past_the_end)
        assert messages == [] and job is not None and job.finished


def test_a_finished_job_is_never_written_again(store):
    store.admit(row("a1"), 2, None, 0)
    store.post("a1", "batch", {}, {"step": 3})
    assert store.finish("a1", "cancelled", None, end, progress={"step": 3, "epochs": 1})
    assert store.finish("a1", "done", None, end) is False  # the first end wins
    assert store.post("a1", "batch", {}) is None
    messages, job = store.messages_and_row("a1", -1)
    assert [m.event for m in messages] == ["batch", "end"]
    assert messages[-1].data == {"status": "cancelled", "error": None}
    assert job.status == "cancelled" and job.progress == {"step": 3, "epochs": 1}
    assert store.running() == []


def test_interrupting_only_a_silent_job(store):
    store.admit(row("a1"), 2, None, 0)
    assert store.finish("a1", "failed", "interrupted", end, alive_before=time.time() - 30) is False  # alive
    assert store.finish("a1", "failed", "interrupted", end, alive_before=time.time() + 1)
    assert store.get("a1").error == "interrupted"


def test_cancel_flags_and_the_heartbeat(store):
    for job_id in ("a1", "a2", "a3"):
        store.admit(row(job_id, owner=None, heartbeat=1.0), 5, None, 0)
    store.request_cancel("a2")
    store.finish("a3", "failed", "x", end)
    assert store.beat(["a1", "a2", "a3", "gone"], now=50.0) == {"a2", "a3", "gone"}
    assert store.get("a1").heartbeat == 50.0 and store.get("a3").heartbeat == 1.0
    store.request_cancel("a3")  # finished: the flag stays down
    assert store.get("a3").cancel is False and store.get("a2").cancel is True
    assert store.beat([]) == set()


def test_prune_drops_the_oldest_finished_jobs_with_their_events_and_weights(store):
    for i in range(5):
        store.admit(row(f"j{i}", owner=None, created=100.0 + i), 9, None, 0)
        store.post(f"j{i}", "epoch", {})
    for job_id in ("j1", "j2", "j4"):
        store.finish(job_id, "done", None, end)
        store.keep_weights(job_id, b"npz")
    assert store.prune(3) == ["j1", "j2"]  # j0 runs: kept
    assert [r.id for r in store.jobs()] == ["j4", "j3", "j0"]
    assert store.messages("j1") == [] and store.get("j1") is None and store.weights("j1") is None
    assert store.weights("j4") == b"npz"
    assert store.prune(3) == []


def test_weights_are_npz_bytes_any_client_reads(store, fresh_redis):
    params = {"conv1.weight": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **params)
    store.keep_weights("a1", buffer.getvalue())
    other_machine = RedisJobStore(connect(fresh_redis))
    with np.load(io.BytesIO(other_machine.weights("a1")), allow_pickle=False) as data:
        assert np.array_equal(data["conv1.weight"], params["conv1.weight"])


def test_a_queued_job_counts_and_is_alive_while_the_queue_holds_it(fresh_redis):
    held = {"q1": True}
    store = RedisJobStore(connect(fresh_redis), queued_alive=lambda job_id: held.get(job_id, False))
    waiting = row("q1", owner=None, heartbeat=time.time() - 100)
    waiting.worker = QUEUED
    assert store.admit(waiting, 1, None, alive_since=time.time() - 30) is None
    assert store.admit(row("x1", owner=None), 1, None, alive_since=time.time() - 30) == Refusal("server", 1, 1)
    assert store.stale(time.time() - 30) == [] and store.get("q1").heartbeat > time.time() - 5
    assert store.finish("q1", "failed", "interrupted", end, alive_before=time.time() - 30) is False
    held["q1"] = False  # RQ lost it (failed before a worker claimed it): it goes stale
    assert [r.id for r in store.stale(time.time() - 30)] == ["q1"]
    assert store.claim("q1", "host:1:abcd")  # ... unless a worker claims it: then its heartbeat counts
    assert store.get("q1").worker == "host:1:abcd"
    assert store.claim("q1", "host:2:abcd") is False  # only once


def test_cancelling_a_queued_job_ends_it_before_any_worker_claims_it(store):
    waiting = row("q1", owner=None)
    waiting.worker = QUEUED
    store.admit(waiting, 2, None, 0)
    assert store.finish("q1", "cancelled", None, end, only_queued=True)
    assert store.claim("q1", "host:1:abcd") is False
    claimed = row("q2", owner=None)
    claimed.worker = QUEUED
    store.admit(claimed, 2, None, 0)
    store.claim("q2", "host:1:abcd")
    assert store.finish("q2", "cancelled", None, end, only_queued=True) is False  # its worker stops it


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


def _admit_many(url: str, prefix: str, start, results) -> None:
    store = RedisJobStore(connect(url))
    start.wait()
    taken = sum(store.admit(row(f"{prefix}{i}", owner=f"o{i % 3}"), 5, 2, 0) is None for i in range(20))
    results.put(taken)


def test_two_processes_admitting_at_once_never_pass_the_limits(fresh_redis):
    """Two machines racing for the last slots take 5 in all (three owners, at most 2 each)."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [context.Process(target=_admit_many, args=(fresh_redis, p, start, results)) for p in "ab"]
    for process in processes:
        process.start()
    time.sleep(0.5)
    start.set()
    taken = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(30)
    running = RedisJobStore(connect(fresh_redis)).running()
    assert sum(taken) == 5 and len(running) == 5
    owners = [r.owner for r in running]
    assert max(owners.count(owner) for owner in set(owners)) == 2
