"""On a real uvicorn server with ``--workers 2``: the compute slots are the machine's (at most ``compute_slots``
passes at once across both workers, seen in the ``compute_trace_file``), and light requests and /api/health are
answered while every heavy slot is held by another process."""

from __future__ import annotations

import io
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from app.services.slots import SlotPool
from tests.api.live_server import start_uvicorn, stop_uvicorn

DIGITS = "digits_classic"


def start_server(data_dir: Path, workers: int, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    return start_uvicorn({"CNN_VIS_DATA_DIR": str(data_dir), **env}, workers)


stop = stop_uvicorn


def post(url: str, body: bytes, content_type: str) -> tuple[int, float]:
    start = time.monotonic()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            answer.read()
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - start


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32))
    return buffer.getvalue()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of the ``(start, end)`` intervals that overlap at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda event: (event[0], event[1]))  # an end before a start at the same instant
    inside = peak = 0
    for _, step in events:
        inside += step
        peak = max(peak, inside)
    return peak


@pytest.mark.parametrize("slots", [1, 2])
def test_two_workers_run_at_most_compute_slots_passes_at_once(tmp_path, slots):
    trace = tmp_path / "trace.txt"
    process, base = start_server(tmp_path / "data", workers=2, env={
        "CNN_VIS_COMPUTE_SLOTS": str(slots), "CNN_VIS_LIGHT_WORK_GMACS": "1e-9",  # every pass is heavy work
        "CNN_VIS_COMPUTE_TRACE_FILE": str(trace)})
    try:
        batch = npy(np.random.default_rng(0).standard_normal((256, 1, 28, 28)))  # a pass of some 10-50 ms
        url = f"{base}/api/models/{DIGITS}/forward"
        with ThreadPoolExecutor(16) as executor:
            answers = list(executor.map(lambda _: post(url, batch, "application/x-npy"), range(48)))
    finally:
        stop(process)
    assert [status for status, _ in answers] == [200] * 48
    lines = [line.split() for line in trace.read_text().splitlines()]
    intervals = [(float(start), float(end)) for _, _, start, end in lines]
    workers = {pid for pid, *_ in lines}
    print(f"compute_slots={slots}: {len(intervals)} passes by {len(workers)} workers, at most "
          f"{most_at_once(intervals)} at once; passes took {np.median([e - s for s, e in intervals]) * 1000:.0f} ms "
          "(median)")
    assert len(intervals) == 48
    assert len(workers) == 2  # both workers served passes
    assert most_at_once(intervals) == slots  # never more, across both workers (and the slots were used)


def test_light_requests_and_health_are_answered_while_another_process_holds_every_heavy_slot(tmp_path):
    data_dir = tmp_path / "data"
    process, base = start_server(data_dir, workers=2, env={"CNN_VIS_COMPUTE_SLOTS": "2",
                                                           "CNN_VIS_COMPUTE_WAIT_S": "2"})
    heavy = SlotPool(data_dir.resolve() / "slots", "compute", 2)
    held = heavy.take(2, wait_s=5)  # as two heavy requests (e.g. Score-CAM on EfficientNet) would
    assert held is not None
    try:
        digit = npy(np.zeros((1, 1, 28, 28)))
        predict = f"{base}/api/models/{DIGITS}/predict"
        timings = [post(predict, digit, "application/x-npy") for _ in range(20)]
        health = []
        for _ in range(20):
            start = time.monotonic()
            urllib.request.urlopen(f"{base}/api/health", timeout=5).close()
            health.append(time.monotonic() - start)
        status, _ = post(f"{base}/api/models/{DIGITS}/forward?node=conv1", digit, "application/x-npy")
    finally:
        heavy.release(held)
        stop(process)
    latencies = sorted(t for _, t in timings)
    print(f"while every heavy slot is held: digit predict p50 {latencies[10] * 1000:.1f} ms, worst "
          f"{latencies[-1] * 1000:.1f} ms; health worst {max(health) * 1000:.1f} ms")
    assert all(status == 200 for status, _ in timings)
    assert latencies[-1] < 1.0 and max(health) < 0.2
    assert status == 200  # a digit model's forward is light too
