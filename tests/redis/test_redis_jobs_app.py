"""The app with ``CNN_VIS_REDIS_URL`` (a real redis-server), in one process: the store is picked from the settings,
jobs wait in RQ's queues until a worker runs them (here an in-process RQ ``SimpleWorker`` in burst mode, with the
services a worker builds), a queued job is cancelled at once, a job RQ lost reads as interrupted, weights open as a
model from Redis, and an unreachable Redis answers 503 saying so (never 500)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from app.core.config import LOOPBACK_HOSTS, Settings
from app.main import create_app
from app.services.container import build_services
from app.services.job_queue import ATTENTION_QUEUE, QUEUES, TRAINING_QUEUE, set_worker_services
from app.services.job_store import JobRow
from app.services.redis_attention_jobs import RedisAttentionJobs
from app.services.redis_client import connect
from app.services.training_queue import QueuedJobManager
from tests.api.attention_jobs import read_events
from tests.api.conftest import TEST_HOST
from tests.redis_server import free_port

OWNER = {"X-Owner-Token": "redis-app-test-owner-0123456789abcdef"}
QUICK = {"train_size": 200, "test_size": 100, "epochs": 1, "batch_size": 50, "lr": 0.05}


def redis_settings(tmp_path, url: str, **extra) -> Settings:
    return Settings(data_dir=tmp_path / "data", redis_url=url, preload=False, compute_slots=2,
                    allowed_hosts=[*LOOPBACK_HOSTS, TEST_HOST], **extra)


@pytest.fixture
def settings(tmp_path, fresh_redis) -> Settings:
    return redis_settings(tmp_path, fresh_redis, job_stale_s=1.0)


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def work_queues(settings: Settings, tmp_path) -> None:
    """Run every queued job, as `cnn-visualiser worker --burst` would (another data directory: another machine)."""
    machine_b = settings.model_copy(update={"data_dir": tmp_path / "worker-data"})
    services = build_services(machine_b)
    set_worker_services(services)
    connection = connect(settings.redis_url)
    try:
        queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in QUEUES]
        SimpleWorker(queues, connection=connection, serializer=JSONSerializer).work(burst=True)
    finally:
        set_worker_services(None)
        services.training.shutdown()


def test_the_settings_pick_the_redis_stores(client):
    services = client.app.state.services
    assert isinstance(services.training, QueuedJobManager)
    assert isinstance(services.attention, RedisAttentionJobs)


def test_a_training_job_waits_in_the_queue_then_a_worker_trains_it(client, settings, tmp_path):
    created = client.post("/api/training/jobs", json=QUICK, headers=OWNER)
    assert created.status_code == 201, created.text
    job = created.json()
    queue = Queue(TRAINING_QUEUE, connection=connect(settings.redis_url), serializer=JSONSerializer)
    assert queue.job_ids == [f"training-{job['id']}"]
    time.sleep(1.5)  # longer than job_stale_s: a queued job is alive while the queue holds it
    assert client.get(f"/api/training/jobs/{job['id']}").json()["status"] == "running"

    work_queues(settings, tmp_path)
    finished = client.get(f"/api/training/jobs/{job['id']}").json()
    assert finished["status"] == "done", finished
    assert [e["epoch"] for e in finished["epochs"]] == [0, 1]
    with client.stream("GET", f"/api/training/jobs/{job['id']}/events") as stream:
        kinds = [line[7:] for line in stream.iter_lines() if line.startswith("event: ")]
    assert kinds[0] == "epoch" and kinds[-1] == "end" and kinds.count("images") == 1
    opened = client.post(f"/api/training/jobs/{job['id']}/model", headers=OWNER)
    assert opened.status_code == 200, opened.text
    model = client.get(f"/api/models/{opened.json()['model_id']}")
    assert model.status_code == 200 and model.json()["cam_layer"] == "relu2"
    assert not (settings.data_dir / "training").exists()  # the weights are in Redis, not in a data directory


def test_a_queued_job_is_cancelled_at_once_and_leaves_the_queue(client, settings, tmp_path):
    job = client.post("/api/training/jobs", json=QUICK, headers=OWNER).json()
    stopped = client.delete(f"/api/training/jobs/{job['id']}", headers=OWNER)
    assert stopped.status_code == 202 and stopped.json()["status"] == "cancelled"
    assert Queue(TRAINING_QUEUE, connection=connect(settings.redis_url), serializer=JSONSerializer).job_ids == []
    work_queues(settings, tmp_path)  # nothing to train
    assert client.get(f"/api/training/jobs/{job['id']}").json()["status"] == "cancelled"


def test_a_job_the_queue_lost_reads_interrupted(client, settings):
    job = client.post("/api/training/jobs", json=QUICK, headers=OWNER).json()
    Job.fetch(f"training-{job['id']}", connection=connect(settings.redis_url), serializer=JSONSerializer).delete()
    time.sleep(1.2)  # job_stale_s after its admission
    read = client.get(f"/api/training/jobs/{job['id']}").json()
    assert read["status"] == "failed" and read["error"].startswith("interrupted"), read
    assert client.get("/api/training/jobs", headers=OWNER).json()["running"] == 0


def test_an_attention_job_is_computed_by_a_worker(client, settings, tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(3).random((1, 1, 28, 28)).astype(np.float32))
    created = client.post("/api/models/digits_classic/attention?method=integrated_gradients",
                          content=buffer.getvalue(), headers={"Content-Type": "application/x-npy", **OWNER})
    assert created.status_code == 202, created.text
    job = created.json()
    assert client.get(job["status_url"]).json()["status"] == "queued"
    assert client.get(job["result_url"]).status_code == 409
    assert Queue(ATTENTION_QUEUE, connection=connect(settings.redis_url), serializer=JSONSerializer).job_ids == [
        f"attention-{job['id']}"]
    work_queues(settings, tmp_path)
    events = read_events(client, job["events_url"])
    assert events[-1][1] == "end" and events[-1][2]["status"] == "done"
    result = client.get(job["result_url"])
    assert result.status_code == 200 and result.json()["method"] == "integrated_gradients"
    past_the_end = read_events(client, job["events_url"], headers={"Last-Event-ID": str(events[-1][0])})
    assert past_the_end == []


def test_a_queued_attention_job_is_cancelled_at_once(client, settings, tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 1, 28, 28), dtype=np.float32))
    job = client.post("/api/models/digits_classic/attention?method=occlusion", content=buffer.getvalue(),
                      headers={"Content-Type": "application/x-npy", **OWNER}).json()
    stopped = client.delete(job["status_url"], headers=OWNER)
    assert stopped.status_code == 202 and stopped.json()["status"] == "cancelled"
    work_queues(settings, tmp_path)
    assert client.get(job["status_url"]).json()["status"] == "cancelled"
    assert client.get(job["result_url"]).status_code == 409


def test_an_attention_job_the_queue_lost_reads_failed(client, settings):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 1, 28, 28), dtype=np.float32))
    job = client.post("/api/models/digits_classic/attention?method=occlusion", content=buffer.getvalue(),
                      headers={"Content-Type": "application/x-npy", **OWNER}).json()
    Job.fetch(f"attention-{job['id']}", connection=connect(settings.redis_url), serializer=JSONSerializer).delete()
    read = client.get(job["status_url"]).json()
    assert read["status"] == "failed" and read["error_status"] == 503 and "send the request again" in read["error"]
    result = client.get(job["result_url"])
    assert result.status_code == 503


def test_an_unreachable_redis_is_503_saying_so(tmp_path):
    url = f"redis://:hidden-password@127.0.0.1:{free_port()}/0"
    with TestClient(create_app(redis_settings(tmp_path, url)), raise_server_exceptions=False) as client:
        assert client.get("/api/health").status_code == 200  # the rest of the app serves
        for answer in (client.post("/api/training/jobs", json=QUICK, headers=OWNER),
                       client.get("/api/training/jobs", headers=OWNER),
                       client.get("/api/training/jobs/0123abcd"),
                       client.get("/api/attention/jobs/0123456789abcdef")):
            assert answer.status_code == 503, answer.text
            detail = answer.json()["detail"]
            assert "Redis at redis://:***@127.0.0.1" in detail and "hidden-password" not in detail
            assert answer.headers["Retry-After"] == "5"
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((1, 1, 28, 28), dtype=np.float32))
        heavy = client.post("/api/models/digits_classic/attention?method=occlusion", content=buffer.getvalue(),
                            headers={"Content-Type": "application/x-npy"})
        assert heavy.status_code == 503 and "redis-server is running" in json.loads(heavy.text)["detail"]


def test_a_stream_waits_on_xread_and_wakes_at_the_next_event(settings):
    """No polling: a stream waiting for the next event wakes up as soon as it is written (well before the
    blocking read's one-second limit), and waits out that limit when nothing comes."""
    manager = QueuedJobManager(connect(settings.redis_url), settings.redis_url, 2, 10, settings.data_dir, 30.0)
    now = time.time()
    manager.store.admit(JobRow(id="j1", owner=None, name="j", settings={}, network="classic", param_count=1,
                               pretrained_params=[], status="running", error=None, progress={}, model_id=None,
                               cancel=False, worker="host:1:abcd", heartbeat=now, created=now, created_at="",
                               finished_at=None, last_seq=-1), 2, None, 0)
    manager.store.post("j1", "epoch", {"n": 0})

    async def waited(after: int, post_after: float | None) -> float:
        if post_after is not None:
            asyncio.get_running_loop().call_later(post_after, manager.store.post, "j1", "batch", {"n": 1})
        start = time.monotonic()
        await manager.wait_for_events("j1", after, 0.1)
        return time.monotonic() - start

    def run(after: int, post_after: float | None) -> float:
        """In a thread of its own: a test before this one may have left an event loop running in this one."""
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, waited(after, post_after)).result(timeout=10)

    try:
        assert run(-1, None) < 0.2  # an event after -1 exists: no wait
        assert 0.9 < run(0, None) < 2.0  # nothing new: the blocking read's limit
        assert 0.2 < run(0, 0.3) < 0.7  # woken by the new event
    finally:
        manager.shutdown()
