"""The app's settings and long-lived parts: what create_app() is given is what its routes use."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.deps import get_model_store
from app.main import create_app
from app.services.models import ModelStore
from app.services.runs import RunStore
from tests.api.conftest import npy_bytes, tiny_bundle

NPY = {"Content-Type": "application/x-npy"}


def client_for(settings, store=None) -> TestClient:
    app = create_app(settings)
    if store is not None:
        app.dependency_overrides[get_model_store] = lambda: store
    return TestClient(app, raise_server_exceptions=False)


def test_the_routes_use_the_settings_create_app_was_given(settings, store):
    """create_app(Settings(max_tensor_elements=...)) was ignored by the routes, which read the environment's."""
    strict = settings.model_copy(update={"max_tensor_elements": 10})
    x = npy_bytes(np.zeros((1, 1, 12, 12), np.float32))  # 144 elements: fine by default, too many here
    with client_for(strict, store) as client:
        refused = client.post("/api/models/tiny/forward", content=x, headers=NPY)
        assert refused.status_code == 413, refused.text
        assert "10" in refused.json()["detail"]
    with client_for(settings, store) as client:
        assert client.post("/api/models/tiny/forward", content=x, headers=NPY).status_code == 200


def test_two_apps_in_one_process_share_no_store_cache_or_slots(settings, tmp_path):
    small = settings.model_copy(update={"run_cache_size": 1, "compute_slots": 1})
    with client_for(settings) as a, client_for(small) as b:
        first, second = a.app.state.services, b.app.state.services
        assert first.runs is not second.runs and first.models is not second.models
        assert first.compute is not second.compute and first.training is not second.training
        # one app's limits stay its own (the shared run store's limits were rewritten by every request)
        assert (first.runs.max_runs, second.runs.max_runs) == (settings.run_cache_size, 1)
        assert (first.compute.slots, second.compute.slots) == (settings.compute_slots, 1)


def test_identical_concurrent_runs_are_computed_once(tmp_path):
    """Ten requests for the same run at once: one forward pass, and all ten get the same run."""
    passes = []
    gate = threading.Event()

    @contextmanager
    def slow_compute(gmacs=None):
        passes.append(1)
        gate.wait(5)  # hold the first pass until every thread has asked
        yield

    store = RunStore(tmp_path / "runs", compute=slow_compute)
    model = ModelStore(tmp_path, builtins={"tiny": tiny_bundle}).get("tiny")
    x = np.random.default_rng(0).standard_normal((1, *model.graph.input_shape)).astype(np.float32)
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.create(model, x))) for _ in range(10)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(results) == 10 and len(passes) == 1
    assert len({id(run) for run, _ in results}) == 1


def test_a_failed_pass_is_not_kept_and_the_next_request_computes_again(tmp_path):
    calls = []

    @contextmanager
    def failing_once(gmacs=None):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("busy")
        yield

    store = RunStore(tmp_path / "runs", compute=failing_once)
    model = ModelStore(tmp_path, builtins={"tiny": tiny_bundle}).get("tiny")
    x = np.zeros((1, *model.graph.input_shape), np.float32)
    with pytest.raises(RuntimeError):
        store.create(model, x)
    run, cached = store.create(model, x)
    assert not cached and len(calls) == 2 and run.activations


def test_what_nothing_used_is_gone(settings, store):
    with client_for(settings, store) as client:
        paths = client.get("/openapi.json").json()["paths"]
        assert "/api/training/jobs/{job_id}/cancel" not in paths  # DELETE /api/training/jobs/{id} does it
        assert "delete" in paths["/api/training/jobs/{job_id}"]
        assert client.get("/docs/oauth2-redirect").status_code == 404  # no OAuth2 in this API
