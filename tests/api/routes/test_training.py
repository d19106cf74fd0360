"""The training lab's API: start, stream, cancel, limits (429), bad settings (422), a real run lowers the loss,
fine-tuning starts from the given weights, a finished network opens as a model; no thread outlives a test."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from app.api.deps import get_job_manager
from app.api.routes.training import event_stream
from app.services.training_jobs import JobManager
from engine.datasets.mnist import load_mnist
from engine.graph import Graph
from engine.models.digits import classic_spec
from engine.training import evaluate

QUICK = {"train_size": 200, "test_size": 100, "epochs": 2, "batch_size": 50, "lr": 0.05}
#: long enough that it is still running when the test acts on it (it is always cancelled)
LONG = {"train_size": 8000, "test_size": 100, "epochs": 20, "batch_size": 16}


def training_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("training-") and t.is_alive()]


@pytest.fixture
def fake_pretrained() -> dict[str, np.ndarray]:
    """Stands in for the shipped digits_classic weights: a fixed, recognisable set for the classic network."""
    return Graph(classic_spec()).init_params(seed=99)


@pytest.fixture
def manager(fake_pretrained):
    manager = JobManager(max_running=2, max_kept=10, pretrained_source=lambda model_id: fake_pretrained)
    yield manager
    manager.shutdown(timeout=30)
    assert not training_threads(), "a training thread outlived its test"


@pytest.fixture
def make_manager():
    """JobManagers made by a test, all shut down after it."""
    made: list[JobManager] = []

    def make(**kwargs) -> JobManager:
        made.append(JobManager(**kwargs))
        return made[-1]

    yield make
    for manager in made:
        manager.shutdown(timeout=30)
    assert not training_threads(), "a training thread outlived its test"


@pytest.fixture
def lab(client, manager):
    client.app.dependency_overrides[get_job_manager] = lambda: manager
    return client


def read_events(client, job_id: str, headers: dict | None = None, timeout: float = 60) -> list[tuple[int, str, dict]]:
    """Every (id, event, data) of the job's stream, until the server ends it."""
    events, current = [], {}
    start = time.monotonic()
    with client.stream("GET", f"/api/training/jobs/{job_id}/events", headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            assert time.monotonic() - start < timeout, "the event stream did not end"
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and "event" in current:
                events.append((current["id"], current["event"], current["data"]))
                current = {}
    return events


def wait_finished(manager: JobManager, job_id: str, timeout: float = 60) -> None:
    thread = manager.get(job_id).thread
    assert thread is not None
    thread.join(timeout)
    assert not thread.is_alive(), f"job {job_id} did not finish in {timeout} s"


def png_size(data_url: str) -> tuple[int, int]:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix):]))).size


# --- life cycle --------------------------------------------------------------------------------


def test_start_and_stream_to_the_end(lab):
    response = lab.post("/api/training/jobs", json=QUICK)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "running" and job["events_url"] == f"/api/training/jobs/{job['id']}/events"
    assert job["progress"]["steps"] == 2 * 4 and job["param_count"] == Graph(classic_spec()).param_count()

    events = read_events(lab, job["id"])
    ids = [e[0] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    kinds = [e[1] for e in events]
    assert kinds[-1] == "end" and kinds.count("end") == 1
    epochs = [d for _, kind, d in events if kind == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert all(0 <= e["test_accuracy"] <= 1 and e["test_loss"] > 0 for e in epochs)
    batches = [d for _, kind, d in events if kind == "batch"]
    assert batches[-1]["step"] == 8 and batches[-1]["x"] == 2.0 and batches[-1]["eta"] is not None
    assert all(b["x"] <= a["x"] for b, a in itertools.pairwise(batches))
    images = [d for _, kind, d in events if kind == "images"]
    assert images, "pictures: before training, and after every epoch"
    pictures = images[-1]
    assert pictures["filter_layer"] == "conv1" and pictures["feature_layer"] == "relu1"
    assert [png_size(u) for u in pictures["filters"]] == [(5, 5)] * 8
    assert [png_size(u) for u in pictures["feature_maps"]] == [(28, 28)] * 8
    sample = pictures["sample"]
    assert png_size(sample["image"]) == (28, 28) and 0 <= sample["label"] <= 9
    assert abs(sum(sample["probabilities"]) - 1) < 1e-3 and sample["predicted"] == int(np.argmax(
        sample["probabilities"]))
    end = events[-1][2]
    assert end["status"] == "done" and end["error"] is None and end["progress"]["step"] == 8

    state = lab.get(f"/api/training/jobs/{job['id']}").json()
    assert state["status"] == "done" and [e["epoch"] for e in state["epochs"]] == [0, 1, 2]
    assert state["epochs"][-1]["test_loss"] == epochs[-1]["test_loss"]


def test_stream_resumes_after_last_event_id(lab, manager):
    job_id = lab.post("/api/training/jobs", json=QUICK).json()["id"]
    wait_finished(manager, job_id)
    everything = read_events(lab, job_id)
    assert [e[1] for e in everything].count("images") == 1, "a replay sends only the latest pictures"
    middle = everything[len(everything) // 2][0]
    rest = read_events(lab, job_id, headers={"Last-Event-ID": str(middle)})
    assert [e[0] for e in rest] == [e[0] for e in everything if e[0] > middle]


def test_images_follow_the_weights(lab, manager):
    """The filters sent at the end are the trained conv1 weights, not the initial ones."""
    job_id = lab.post("/api/training/jobs", json=QUICK).json()["id"]
    wait_finished(manager, job_id)
    job = manager.get(job_id)
    trained, initial = job.params["conv1.weight"], job.initial_params["conv1.weight"]
    assert not np.allclose(trained, initial)
    from app.services.training_jobs import filter_images

    pictures = [m for m in job.messages if m.event == "images"][-1].data
    assert pictures["filters"] == filter_images(trained)
    assert pictures["filters"] != filter_images(initial)


def test_cancel_stops_the_job_and_ends_its_stream(lab, manager):
    job_id = lab.post("/api/training/jobs", json=LONG).json()["id"]
    time.sleep(0.3)
    response = lab.delete(f"/api/training/jobs/{job_id}")
    assert response.status_code == 202
    wait_finished(manager, job_id, timeout=20)
    events = read_events(lab, job_id)
    assert events[-1][1] == "end" and events[-1][2]["status"] == "cancelled"
    state = lab.get(f"/api/training/jobs/{job_id}").json()
    assert state["status"] == "cancelled" and state["progress"]["step"] < state["progress"]["steps"]
    # cancelling a finished job changes nothing; the POST form is gone (DELETE is the one way)
    assert lab.delete(f"/api/training/jobs/{job_id}").json()["status"] == "cancelled"
    assert lab.post(f"/api/training/jobs/{job_id}/cancel").status_code in (404, 405)


def test_over_the_limit_is_429_then_accepted_when_a_slot_frees(lab, manager):
    first = lab.post("/api/training/jobs", json=LONG).json()["id"]
    second = lab.post("/api/training/jobs", json=LONG).json()["id"]
    refused = lab.post("/api/training/jobs", json=QUICK)
    assert refused.status_code == 429
    body = refused.json()
    assert "at most 2 at once" in body["detail"] and "cancel" in body["detail"]
    assert body["limit"] == 2 and body["running"] == 2
    listed = lab.get("/api/training/jobs").json()
    assert [j["id"] for j in listed["jobs"]] == [second, first] and listed["running"] == 2
    assert listed["max_running"] == 2
    lab.delete(f"/api/training/jobs/{first}")
    wait_finished(manager, first, timeout=20)
    accepted = lab.post("/api/training/jobs", json=QUICK)
    assert accepted.status_code == 201, accepted.text
    lab.delete(f"/api/training/jobs/{second}")


def test_unknown_job_is_404(lab):
    for method, path in [("GET", "/api/training/jobs/nope"), ("GET", "/api/training/jobs/nope/events"),
                         ("DELETE", "/api/training/jobs/nope"), ("POST", "/api/training/jobs/nope/model")]:
        response = lab.request(method, path)
        assert response.status_code == 404 and "no training job 'nope'" in response.json()["detail"]


@pytest.mark.parametrize(("patch", "expected"), [
    ({"lr": 5}, "lr must be from 1e-05 to 1, got 5"),
    ({"lr": 0}, "lr must be from 1e-05 to 1, got 0"),
    ({"batch_size": 0}, "batch_size must be from 4 to 512"),
    ({"epochs": 100}, "epochs must be from 1 to 20, got 100"),
    ({"train_size": 50}, "train_size must be from 100 to 8000"),
    ({"test_size": 5000}, "test_size must be from 100 to 2000"),
    ({"weight_decay": 1.0}, "weight_decay must be from 1e-06 to 0.1"),
    ({"dropout_p": 1.0}, "dropout_p must be from 0.05 to 0.9"),
    ({"network": "deep", "depth": 9}, "depth must be from 1 to 8, got 9"),
    ({"seed": -1}, "seed must be from 0 to"),
    ({"optimizer": "rmsprop"}, "optimizer: Input should be 'sgd' or 'adam'"),
    ({"network": "vgg"}, "network: Input should be 'classic', 'deep', 'lstm' or 'gru_attention'"),
    ({"skip_connections": True}, "skip_connections needs network 'deep'"),
    ({"network": "deep", "pretrained": True}, "pretrained needs network 'classic'"),
    ({"learning_rate": 0.1}, "learning_rate: Extra inputs are not permitted"),
    ({"lr": "fast"}, "lr: Input should be a valid number"),
])
def test_bad_settings_are_422_naming_the_field_and_range(lab, patch, expected):
    response = lab.post("/api/training/jobs", json={**QUICK, **patch})
    assert response.status_code == 422
    assert expected in response.json()["detail"]
    assert not training_threads()


# --- training for real ----------------------------------------------------------------------------


def test_a_short_real_run_lowers_the_loss(lab, manager):
    job_id = lab.post("/api/training/jobs", json={"train_size": 1000, "test_size": 500, "epochs": 2,
                                                   "batch_size": 32, "lr": 0.05}).json()["id"]
    wait_finished(manager, job_id)
    state = lab.get(f"/api/training/jobs/{job_id}").json()
    assert state["status"] == "done", state["error"]
    before, after = state["epochs"][0], state["epochs"][-1]
    assert before["test_loss"] > 2.0 and before["test_accuracy"] < 0.3  # random weights: about ln 10
    assert after["test_loss"] < 0.5 * before["test_loss"] and after["test_accuracy"] > 0.75
    assert state["batches"][-1]["loss"] < state["batches"][0]["loss"]
    # the numbers reported are the engine's own evaluation of the trained weights
    job = manager.get(job_id)
    x, y = load_mnist("test", limit=500)
    loss, accuracy = evaluate(job.graph, job.params, x, y)
    assert loss == pytest.approx(after["test_loss"]) and accuracy == pytest.approx(after["test_accuracy"])


def test_deep_network_with_every_toggle_trains(lab, manager):
    settings = {"network": "deep", "depth": 2, "batch_norm": True, "skip_connections": True, "dropout": True,
                "l2": True, "optimizer": "adam", "lr": 0.003, "train_size": 400, "test_size": 200, "epochs": 2,
                "batch_size": 32}
    job = lab.post("/api/training/jobs", json=settings).json()
    assert "6 convolutions" in job["network"] and "batch norm, skip connections, dropout" in job["network"]
    wait_finished(manager, job["id"])
    state = lab.get(f"/api/training/jobs/{job['id']}").json()
    assert state["status"] == "done", state["error"]
    assert state["epochs"][-1]["test_loss"] < state["epochs"][0]["test_loss"]
    graph = manager.get(job["id"]).graph
    ops = [n.op.op for n in graph.nodes]
    assert ops.count("add") == 2 and ops.count("batch_norm") == 6 and "dropout" in ops


def test_pretrained_starts_from_the_shipped_weights(lab, manager, fake_pretrained):
    job = lab.post("/api/training/jobs", json={**QUICK, "pretrained": True}).json()
    assert job["pretrained_params"] == list(fake_pretrained)
    wait_finished(manager, job["id"])
    start = lab.get(f"/api/training/jobs/{job['id']}").json()["epochs"][0]
    x, y = load_mnist("test", limit=QUICK["test_size"])
    loss, accuracy = evaluate(Graph(classic_spec()), fake_pretrained, x, y)
    assert start["test_loss"] == pytest.approx(loss) and start["test_accuracy"] == pytest.approx(accuracy)

    scratch = lab.post("/api/training/jobs", json=QUICK).json()
    assert scratch["pretrained_params"] == []
    # with batch norm the convolutions have no bias: the weights and the classifier are copied, BN starts fresh
    with_bn = lab.post("/api/training/jobs", json={**QUICK, "pretrained": True, "batch_norm": True}).json()
    assert with_bn["pretrained_params"] == ["conv1.weight", "conv2.weight", "fc.weight", "fc.bias"]
    state = manager.get(with_bn["id"])
    assert np.array_equal(state.initial_params["conv2.weight"], fake_pretrained["conv2.weight"])
    assert np.array_equal(state.initial_params["bn1.weight"], np.ones(8, dtype=np.float32))


def test_pretrained_weights_missing_is_503(client, make_manager):
    def missing(model_id):
        raise FileNotFoundError(f"the pre-trained weights of {model_id} are not installed")

    manager = make_manager(pretrained_source=missing)
    client.app.dependency_overrides[get_job_manager] = lambda: manager
    response = client.post("/api/training/jobs", json={**QUICK, "pretrained": True})
    assert response.status_code == 503 and "digits_classic are not installed" in response.json()["detail"]
    assert manager.jobs() == []


def test_a_diverging_run_fails_with_a_message(client, make_manager):
    """A NaN loss stops the job with the engine's advice instead of streaming garbage."""
    def poisoned(split, limit):
        x, y = load_mnist(split, limit=limit)
        x = x.copy()
        x[5] = np.nan
        return x, y

    manager = make_manager(data_loader=poisoned)
    client.app.dependency_overrides[get_job_manager] = lambda: manager
    job_id = client.post("/api/training/jobs", json=QUICK).json()["id"]
    events = read_events(client, job_id)
    end = events[-1][2]
    assert end["status"] == "failed" and "the loss became nan" in end["error"]
    assert client.post(f"/api/training/jobs/{job_id}/model").status_code == 409


# --- the result as a model ------------------------------------------------------------------------


def test_a_finished_network_opens_as_a_model(lab, manager):
    job_id = lab.post("/api/training/jobs", json=QUICK).json()["id"]
    wait_finished(manager, job_id)
    response = lab.post(f"/api/training/jobs/{job_id}/model")
    assert response.status_code == 200, response.text
    model_id = response.json()["model_id"]
    assert model_id == f"trained-{job_id}" and response.json()["explorer_url"].endswith(f"?model={model_id}")
    assert lab.post(f"/api/training/jobs/{job_id}/model").json()["model_id"] == model_id  # idempotent
    assert lab.get(f"/api/training/jobs/{job_id}").json()["model_id"] == model_id

    listed = {m["id"]: m for m in lab.get("/api/models").json()["models"]}
    assert listed[model_id]["builtin"] is False and listed[model_id]["num_classes"] == 10
    detail = lab.get(f"/api/models/{model_id}").json()
    assert detail["labels"] == [str(d) for d in range(10)] and detail["cam_layer"] == "relu2"
    # its predictions are the trained weights' predictions
    x, _ = load_mnist("test", limit=1)
    buffer = io.BytesIO()
    np.save(buffer, x)
    predicted = lab.post(f"/api/models/{model_id}/predict", content=buffer.getvalue(),
                         headers={"content-type": "application/x-npy"})
    assert predicted.status_code == 200, predicted.text
    job = manager.get(job_id)
    logits = job.graph.forward(x, job.params).output[0]
    assert predicted.json()["classes"][0]["index"] == int(np.argmax(logits))


def test_only_a_finished_job_opens_as_a_model(lab, manager):
    job_id = lab.post("/api/training/jobs", json=LONG).json()["id"]
    running = lab.post(f"/api/training/jobs/{job_id}/model")
    assert running.status_code == 409 and "wait for it to finish" in running.json()["detail"]
    lab.delete(f"/api/training/jobs/{job_id}")
    wait_finished(manager, job_id, timeout=20)
    cancelled = lab.post(f"/api/training/jobs/{job_id}/model")
    assert cancelled.status_code == 409 and "is cancelled" in cancelled.json()["detail"]


# --- owners (issue 11) -----------------------------------------------------------------------------

ADMIN = "lecturer-secret-0123456789"


@pytest.fixture
def owners_lab(lab, settings):
    """``owners_lab(**setting_changes)``: the lab's client as Alice, and a second browser (Bob) on the same app;
    the lecturer token is ADMIN."""
    from fastapi.testclient import TestClient

    others: list[TestClient] = []

    def make(**changes):
        changed = settings.model_copy(update={"admin_token": ADMIN, **changes})
        lab.app.state.settings = changed  # the routes read the app's settings
        others.append(TestClient(lab.app, raise_server_exceptions=False))
        return lab, others[-1]

    yield make
    for other in others:
        other.close()


def test_a_job_is_stopped_and_listed_by_its_owner_only(owners_lab, manager):
    alice, bob = owners_lab()
    started = alice.post("/api/training/jobs", json=LONG)
    assert started.status_code == 201
    job = started.json()
    assert job["owned"] is True and job["owner_token"] == alice.cookies["cnn_vis_owner"]
    assert [j["id"] for j in alice.get("/api/training/jobs").json()["jobs"]] == [job["id"]]
    assert alice.get("/api/training/jobs").json()["jobs"][0]["owned"] is True
    listed = bob.get("/api/training/jobs").json()
    assert listed["jobs"] == [] and listed["running"] == 1  # the server's load is no secret
    for method, path in [("DELETE", f"/api/training/jobs/{job['id']}")]:
        refused = bob.request(method, path)
        assert refused.status_code == 403, (method, path)
        assert "started by someone else" in refused.json()["detail"]
        assert "X-Admin-Token" in refused.json()["detail"]
    assert manager.get(job["id"]).status == "running"
    seen = bob.get(f"/api/training/jobs/{job['id']}")  # a link to a run can be shared: reading is open
    assert seen.status_code == 200 and seen.json()["owned"] is False
    unknown = bob.get("/api/training/jobs/nope")  # the 404 lists only bob's own jobs
    assert unknown.status_code == 404 and job["id"] not in unknown.json()["detail"]
    assert job["id"] in alice.get("/api/training/jobs/nope").json()["detail"]

    lecturer = {"X-Admin-Token": ADMIN}
    assert [j["id"] for j in bob.get("/api/training/jobs", headers=lecturer).json()["jobs"]] == [job["id"]]
    assert bob.delete(f"/api/training/jobs/{job['id']}", headers=lecturer).status_code == 202
    wait_finished(manager, job["id"], timeout=20)
    end = read_events(alice, job["id"])[-1]  # the stream is everyone's: it does not say whose the job is
    assert end[1] == "end" and end[2]["status"] == "cancelled" and "owned" not in end[2]
    wrong = bob.get("/api/training/jobs", headers={"X-Admin-Token": "not the lecturer token at all"})
    assert wrong.status_code == 403


def test_a_rest_client_stops_its_job_with_the_owner_token(owners_lab, manager):
    rest, _ = owners_lab()
    job = rest.post("/api/training/jobs", json=LONG).json()
    rest.cookies.clear()
    assert rest.delete(f"/api/training/jobs/{job['id']}").status_code == 403
    stopped = rest.delete(f"/api/training/jobs/{job['id']}", headers={"X-Owner-Token": job["owner_token"]})
    assert stopped.status_code == 202 and stopped.json()["owned"] is True
    wait_finished(manager, job["id"], timeout=20)


def test_one_person_may_run_so_many_jobs_at_once(owners_lab, manager):
    alice, bob = owners_lab(quota_running_jobs_per_owner=1)
    first = alice.post("/api/training/jobs", json=LONG).json()["id"]
    refused = alice.post("/api/training/jobs", json=QUICK)
    assert refused.status_code == 429
    assert "you have 1 training job running" in refused.json()["detail"] and refused.json()["limit"] == 1
    assert "DELETE /api/training/jobs/{id}" in refused.json()["detail"]
    second = bob.post("/api/training/jobs", json=LONG)  # the limit is per person: bob's slot is free
    assert second.status_code == 201, second.text
    for job_id in (first, second.json()["id"]):
        manager.cancel(job_id)
        wait_finished(manager, job_id, timeout=20)
    lecturer = {"X-Admin-Token": ADMIN}  # exempt from the per-person limit, not from the server's
    jobs = [bob.post("/api/training/jobs", json=LONG, headers=lecturer) for _ in range(3)]
    assert [j.status_code for j in jobs] == [201, 201, 429]
    assert "this server trains at most 2 at once" in jobs[2].json()["detail"]
    for job in jobs[:2]:
        manager.cancel(job.json()["id"])


def test_a_trained_model_belongs_to_the_jobs_owner(owners_lab, manager):
    alice, bob = owners_lab()
    job_id = alice.post("/api/training/jobs", json=QUICK).json()["id"]
    wait_finished(manager, job_id)
    refused = bob.post(f"/api/training/jobs/{job_id}/model")
    assert refused.status_code == 403 and "someone else" in refused.json()["detail"]
    model_id = alice.post(f"/api/training/jobs/{job_id}/model").json()["model_id"]
    mine = {m["id"]: m for m in alice.get("/api/models").json()["models"]}
    assert mine[model_id]["owned"] is True
    assert model_id not in [m["id"] for m in bob.get("/api/models").json()["models"]]
    assert bob.get(f"/api/models/{model_id}").status_code == 404
    assert bob.delete(f"/api/models/{model_id}").status_code == 403
    lecturer = {"X-Admin-Token": ADMIN}
    assert bob.post(f"/api/models/{model_id}/share", headers=lecturer).json()["shared"] is True
    assert bob.get(f"/api/models/{model_id}").status_code == 200
    assert alice.post(f"/api/training/jobs/{job_id}/model").status_code == 200  # again: still shared
    assert bob.get(f"/api/models/{model_id}").status_code == 200
    assert alice.delete(f"/api/models/{model_id}").status_code == 204


# --- the stream generator itself ------------------------------------------------------------------


def test_event_stream_ends_when_the_client_disconnects(manager):
    """A client that goes away while the job runs ends the generator (no stream waits for ever)."""
    from app.schemas.training import TrainingSettings

    job = manager.start(TrainingSettings(**LONG))
    checks = []

    async def gone() -> bool:
        checks.append(1)
        return len(checks) > 2

    async def consume() -> list[str]:
        return [chunk async for chunk in event_stream(job, gone, poll=0.01)]

    chunks = asyncio.run(asyncio.wait_for(consume(), timeout=10))
    assert job.status == "running" and len(checks) == 3
    assert not any(c.startswith("event: end") or "\nevent: end" in c for c in chunks)
    manager.cancel(job.id)


def test_event_stream_sends_heartbeats_while_quiet(manager):
    """A running job with nothing new for the client (its Last-Event-ID is ahead): keep-alives until it ends."""
    from app.schemas.training import TrainingSettings

    job = manager.start(TrainingSettings(**LONG))
    checks = []

    async def gone() -> bool:
        checks.append(1)
        return len(checks) > 3

    async def consume() -> list[str]:
        return [chunk async for chunk in event_stream(job, gone, after=10**9, poll=0.01, heartbeat=0.0)]

    chunks = asyncio.run(asyncio.wait_for(consume(), timeout=10))
    assert chunks[0].startswith("retry:") and ": keep-alive\n\n" in chunks
    manager.cancel(job.id)


def test_event_stream_past_the_end_of_a_finished_job_ends_at_once(manager):
    """Resuming a finished job at or after its last event: nothing to send, and the generator ends (it used to
    send keep-alives for ever)."""
    from app.schemas.training import TrainingSettings

    job = manager.start(TrainingSettings(**QUICK))
    job.thread.join(30)
    last = manager.get(job.id).messages[-1].seq

    async def connected() -> bool:
        return False

    async def consume(after: int) -> list[str]:
        return [chunk async for chunk in event_stream(job, connected, after=after, poll=0.01, heartbeat=0.0)]

    for after in (last, last + 1, 10**9):
        chunks = asyncio.run(asyncio.wait_for(consume(after), timeout=5))
        assert chunks == ["retry: 2000\n\n"], after
    replay = asyncio.run(asyncio.wait_for(consume(last - 1), timeout=5))
    assert replay[-1].startswith(f"id: {last}\nevent: end\n")


def test_resuming_past_the_end_over_http_is_204(lab, manager):
    """Last-Event-ID at or past a finished job's last event: 204 No Content at once (an EventSource then stops
    reconnecting); a smaller one replays the rest."""
    job_id = lab.post("/api/training/jobs", json=QUICK).json()["id"]
    wait_finished(manager, job_id)
    last = read_events(lab, job_id)[-1][0]
    for after in (last, last + 5, 2**40):
        start = time.monotonic()
        with lab.stream("GET", f"/api/training/jobs/{job_id}/events", headers={"Last-Event-ID": str(after)}) as answer:
            assert answer.status_code == 204, after  # checked before reading: the old stream never ended
            assert answer.read() == b"" and time.monotonic() - start < 2
    assert [e[1] for e in read_events(lab, job_id, headers={"Last-Event-ID": str(last - 1)})] == ["end"]


def test_fine_tuning_from_the_really_shipped_weights(client, make_manager):
    """The default source reads engine/models/weights/digits_classic.npz: epoch 0 is already a trained network."""
    from app.services.training_networks import shipped_weights
    from engine.models.digits import CLASSIC_ID, weights_path

    if not weights_path(CLASSIC_ID).is_file():
        pytest.skip("the shipped digits_classic weights are not installed")
    manager = make_manager()
    client.app.dependency_overrides[get_job_manager] = lambda: manager
    job = client.post("/api/training/jobs", json={**QUICK, "epochs": 1, "pretrained": True}).json()
    assert job["pretrained_params"] == list(shipped_weights(CLASSIC_ID))
    wait_finished(manager, job["id"])
    start = client.get(f"/api/training/jobs/{job['id']}").json()["epochs"][0]
    assert start["test_accuracy"] > 0.95 and start["test_loss"] < 0.2
