"""A background attention job's passes run in a child process (``app.services.job_process``): its answer is the
synchronous route's, its progress reaches the job, cancelling kills the child at once, and a child that dies
makes the job fail with a 503 that says so, never hang."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.config import LOOPBACK_HOSTS, Settings
from app.errors import ApiError
from app.main import create_app
from app.services.attention import AttentionRequest, attention_map, prepare_attention
from app.services.compute import ComputeSlots
from app.services.inputs import ModelInput
from app.services.job_process import compute_in_child
from app.services.models import ModelStore
from tests.api.attention_jobs import follow_job
from tests.api.conftest import TEST_HOST, npy_bytes

MODEL = "digits_classic"
X = np.random.default_rng(3).random((1, 1, 28, 28)).astype(np.float32)
NPY = {"content-type": "application/x-npy"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", preload=False, allowed_hosts=[*LOOPBACK_HOSTS, TEST_HOST])


def prepared(settings: Settings, steps: int):
    model = ModelStore(settings.data_dir).get(MODEL)
    request = AttentionRequest("integrated_gradients", 3, None, True, {"steps": steps})
    return prepare_attention(model, ModelInput("tensor", npy_bytes(X)), request, settings), request, model


def test_the_job_computes_in_a_child_and_answers_what_the_request_would(settings):
    children: set[int] = set()
    with TestClient(create_app(settings)) as client:
        created = client.post(f"/api/models/{MODEL}/attention?method=integrated_gradients&target=3&steps=128"
                              "&include_input_map=true", content=npy_bytes(X), headers=NPY)
        assert created.status_code == 202, created.text
        deadline = time.monotonic() + 30
        while client.get(created.json()["status_url"]).json()["status"] in ("queued", "running"):
            children.update(p.pid for p in multiprocessing.active_children())
            assert time.monotonic() < deadline
            time.sleep(0.01)
        result = follow_job(client, created)
    assert children, "no child process computed the job"
    assert all(not p.is_alive() for p in multiprocessing.active_children() if p.pid in children)
    got = result.json()
    _, request, model = prepared(settings, 128)
    expected = json.loads(attention_map(model, ModelInput("tensor", npy_bytes(X)), request, settings,
                                        ComputeSlots(None, 1, 5)).model_dump_json())
    for key in ("layer_map", "layer_map_normalized", "input_map"):
        np.testing.assert_allclose(np.array(got.pop(key)), np.array(expected.pop(key)), rtol=1e-5, atol=1e-6)
    got.pop("elapsed_ms"), expected.pop("elapsed_ms")
    assert got == expected


class StopError(Exception):
    pass


def test_progress_arrives_and_stopping_kills_the_child_at_once(settings):
    attention, _, _ = prepared(settings, 128)
    seen: list[tuple[int, int]] = []
    children: list[multiprocessing.Process] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        children.extend(multiprocessing.active_children())
        if len(seen) == 2:
            raise StopError

    start = time.monotonic()
    with pytest.raises(StopError):
        compute_in_child(attention, settings.data_dir, progress, lambda: None)
    assert seen[0][0] < seen[1][0] < seen[1][1] >= 128  # the path steps (and its ends)
    assert children and not any(child.is_alive() for child in children)
    assert time.monotonic() - start < 30


def test_a_check_that_raises_between_progress_reports_stops_the_child(settings):
    attention, _, _ = prepared(settings, 128)
    started = time.monotonic()
    children: list[multiprocessing.Process] = []

    def check() -> None:  # called every POLL_S while no message arrives: stop once the child is running
        children.extend(multiprocessing.active_children())
        if time.monotonic() - started > 0.3:
            raise StopError

    with pytest.raises(StopError):
        compute_in_child(attention, settings.data_dir, lambda done, total: time.sleep(0.5), check)
    assert children and not any(child.is_alive() for child in children)


def test_a_child_that_dies_fails_the_job_with_a_503_that_says_so(settings):
    attention, _, _ = prepared(settings, 128)

    def progress(done: int, total: int) -> None:
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)

    with pytest.raises(ApiError) as caught:
        compute_in_child(attention, settings.data_dir, progress, lambda: None)
    assert caught.value.status_code == 503
    assert "ended (exit code -9) without an answer" in caught.value.detail


def test_a_model_changed_while_queued_is_refused_with_409(settings):
    attention, _, model = prepared(settings, 16)
    model.version = "not-the-version-on-disk"
    with pytest.raises(ApiError) as caught:
        compute_in_child(attention, settings.data_dir, lambda done, total: None, lambda: None)
    assert caught.value.status_code == 409 and "changed while the job waited" in caught.value.detail
