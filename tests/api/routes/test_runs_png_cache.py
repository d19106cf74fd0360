"""GET /api/runs/{run_id}/nodes/{node_id}.png: each PNG is encoded once per run, kept within the run store's
memory budget, and encoded once however many identical requests arrive together."""

from __future__ import annotations

import json
import threading
import time

import numpy as np

from app.services import runs as runs_module
from app.services.runs import RunStore
from app.services.tiles import render_png
from tests.api.conftest import npy_bytes

NPY = {"content-type": "application/x-npy"}


def tiny_input(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 1, 12, 12)).astype(np.float32)


def test_a_png_is_encoded_once_per_run_node_and_scale(client):
    response = client.post("/api/models/tiny/activations", content=npy_bytes(tiny_input()), headers=NPY)
    run_id = response.json()["run_id"]
    url = f"/api/runs/{run_id}/nodes/conv1.png"
    first, first_layer = client.get(url), client.get(f"{url}?scale=layer")
    run = client.app.state.services.runs._cached(run_id)
    original = run.activations["conv1"]
    run.activations["conv1"] = -original  # a PNG made again from these would differ
    again, again_layer = client.get(url), client.get(f"{url}?scale=layer")
    run.activations["conv1"] = original
    assert again.status_code == 200 and again.content == first.content
    assert again_layer.content == first_layer.content != first.content
    for one, other in ((first, again), (first_layer, again_layer)):
        assert one.headers["x-tile-layout"] == other.headers["x-tile-layout"]
        assert other.headers["cache-control"] == "public, max-age=86400, immutable"
    layout = json.loads(again.headers["x-tile-layout"])
    assert layout["tiles"] == 4 and layout["scale"] == "channel" and "ranges" not in layout
    assert json.loads(again_layer.headers["x-tile-layout"])["scale"] == "layer"
    unknown = client.get(f"/api/runs/{run_id}/nodes/conv9.png")
    assert unknown.status_code == 404 and "conv1" in unknown.json()["detail"]


def test_kept_pngs_count_in_the_memory_budget(store, tmp_path):
    model = store.get("tiny")
    probe = RunStore(tmp_path / "probe")
    run_bytes = probe.create(model, tiny_input())[0].nbytes
    png_bytes = len(render_png(probe.create(model, tiny_input())[0].activations["conv1"][0])[0])
    # room for two runs, not for two runs and a PNG: keeping the PNG of the newer run drops the older run
    runs = RunStore(tmp_path / "runs", max_bytes=2 * run_bytes + png_bytes // 2)
    older, _ = runs.create(model, tiny_input(1))
    newer, _ = runs.create(model, tiny_input(2))
    assert runs.cached_count() == 2
    png, _ = runs.node_png(newer, "conv1")
    assert newer.nbytes == run_bytes + len(png) and newer.pngs
    assert runs._cached(older.run_id) is None and runs.cached_count() == 1
    # a PNG that would take a run past the whole budget is sent but not kept
    tight = RunStore(tmp_path / "tight", max_bytes=run_bytes + 10)
    run, _ = tight.create(model, tiny_input(3))
    png, layout = tight.node_png(run, "conv1")
    assert png.startswith(b"\x89PNG") and json.loads(layout)["tiles"] == 4
    assert not run.pngs and run.nbytes == run_bytes


def test_identical_requests_arriving_together_encode_once(store, tmp_path, monkeypatch):
    calls = []

    def slow_render(activation, scale="channel", per_tile=None, time_axis=None):
        calls.append(scale)
        time.sleep(0.3)  # the others arrive while this one encodes
        return render_png(activation, scale, per_tile, time_axis)

    monkeypatch.setattr(runs_module, "render_png", slow_render)
    runs = RunStore(tmp_path / "runs")
    run, _ = runs.create(store.get("tiny"), tiny_input())
    results: list[tuple[bytes, str]] = []
    threads = [threading.Thread(target=lambda: results.append(runs.node_png(run, "relu1"))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 6 and len(set(results)) == 1
    assert calls == ["channel"]
    assert not runs._flights._locks  # nothing left behind
