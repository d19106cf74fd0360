"""Compute slots and the decode budget are the machine's, not a worker's: lock files every process shares, two
lanes (a light request never waits behind heavy ones), /api/health never waits, decoding is bounded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.deps import get_model_store
from app.core.config import MB, Settings
from app.errors import ApiError
from app.main import create_app
from app.services.compute import DECODE_UNIT_BYTES, ComputeSlots, DecodeBudget, slots_dir
from app.services.models import ModelStore
from app.services.slots import SlotPool
from tests.api.conftest import png_bytes
from tests.app.test_decode_cost import png

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def holding(pool: SlotPool, n: int | None = None) -> Iterator[list[int]]:
    """Every slot of ``pool`` (or ``n`` of them) held, as another worker would hold them."""
    held = pool.take(pool.count if n is None else n, wait_s=5)
    assert held is not None
    try:
        yield held
    finally:
        pool.release(held)


# --- the slot pool -----------------------------------------------------------------------------------------

def test_threads_never_hold_more_slots_than_there_are(tmp_path):
    pool = SlotPool(tmp_path, "compute", 2)
    inside, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        held = pool.take(1, wait_s=10)
        assert held is not None
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.02)
        with lock:
            inside[0] -= 1
        pool.release(held)

    with ThreadPoolExecutor(8) as executor:
        for future in [executor.submit(work) for _ in range(24)]:
            future.result()
    assert peak[0] == 2
    assert pool.free() == 2


def test_a_slot_held_by_another_process_blocks_and_its_death_frees_it(tmp_path):
    pool = SlotPool(tmp_path, "compute", 1)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from app.services.slots import SlotPool
        held = SlotPool(Path({str(tmp_path)!r}), "compute", 1).take(1, wait_s=5)
        print("held" if held else "none", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        assert pool.take(1, wait_s=0.3) is None  # the other process's lock blocks this one
        assert time.monotonic() - start >= 0.3
        assert pool.free() == 0
    finally:
        holder.kill()  # a crashed worker: its locks vanish with it
        holder.wait()
    held = pool.take(1, wait_s=2)
    assert held is not None
    pool.release(held)


def test_several_slots_are_taken_all_or_none(tmp_path):
    pool = SlotPool(tmp_path, "decode", 4)
    with holding(pool, 3):
        assert pool.try_take(2) is None
        assert pool.free() == 1  # the failed attempt gave back the one it had taken
        one = pool.try_take(1)
        assert one is not None
        pool.release(one)


def test_a_waiter_gets_a_slot_as_soon_as_this_process_frees_it(tmp_path):
    pool = SlotPool(tmp_path, "compute", 1)
    held = pool.take(1, wait_s=1)
    threading.Timer(0.2, pool.release, args=(held,)).start()
    start = time.monotonic()
    again = pool.take(1, wait_s=5)
    waited = time.monotonic() - start
    assert again is not None and 0.15 < waited < 0.5
    pool.release(again)


# --- lanes -------------------------------------------------------------------------------------------------

def test_light_work_is_served_while_every_heavy_slot_is_held(tmp_path):
    compute = ComputeSlots(tmp_path, slots=2, wait_s=0.3, light_slots=1, light_gmacs=0.05)
    other_worker = SlotPool(tmp_path, "compute", 2)  # the same files, opened by "another worker"
    with holding(other_worker):
        start = time.monotonic()
        with compute(gmacs=0.002):  # a digit model's forward pass
            pass
        assert time.monotonic() - start < 0.1
        with pytest.raises(ApiError) as busy, compute(gmacs=0.4):  # EfficientNet's: waits, then 503
            pass
        assert busy.value.status_code == 503 and "compute slot" in busy.value.detail
        with pytest.raises(ApiError), compute():  # no amount: the heavy lane
            pass


def test_two_apps_on_one_data_dir_share_the_slots(settings):
    """Two workers of one deployment (same data directory) hold at most compute_slots passes between them."""
    first, second = ComputeSlots.from_settings(settings), ComputeSlots.from_settings(settings)
    third = ComputeSlots(slots_dir(settings), 2, wait_s=0.2)
    with first(), second(), pytest.raises(ApiError), third():  # compute_slots=2 in the tests' settings
        pass


# --- the app: lanes, health, decoding ---------------------------------------------------------------------

def make_client(settings: Settings, store: ModelStore):
    app = create_app(settings)
    app.dependency_overrides[get_model_store] = lambda: store
    return TestClient(app, raise_server_exceptions=False)


def test_a_digit_prediction_is_answered_while_every_heavy_slot_is_held(settings, store):
    """The tiny test model's pass is light work: it does not wait for the heavy slots another worker holds."""
    with make_client(settings, store) as client, holding(SlotPool(slots_dir(settings), "compute",
                                                                  settings.compute_slots)):
        start = time.monotonic()
        answer = client.post("/api/models/tiny/predict", files={"image": ("a.png", png_bytes(), "image/png")})
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - start < 2
        answer = client.post("/api/models/tiny/activations", files={"image": ("a.png", png_bytes(), "image/png")})
        assert answer.status_code == 200, answer.text


def test_heavy_work_waits_for_the_heavy_slots_then_503(settings, store):
    settings = settings.model_copy(update={"light_work_gmacs": 1e-9, "compute_wait_s": 0.5})  # everything heavy
    with make_client(settings, store) as client, holding(SlotPool(slots_dir(settings), "compute",
                                                                  settings.compute_slots)):
        answer = client.post("/api/models/tiny/predict", files={"image": ("a.png", png_bytes(), "image/png")})
    assert answer.status_code == 503
    assert "compute slot" in answer.json()["detail"]


def test_health_answers_at_once_while_every_slot_and_thread_is_taken(settings, store):
    """Requests queueing for a slot hold every thread of the pool; /api/health needs none."""
    settings = settings.model_copy(update={"thread_pool_size": 2, "compute_wait_s": 20})
    directory = slots_dir(settings)
    heavy, light = SlotPool(directory, "compute", settings.compute_slots), SlotPool(directory, "light", 1)
    with make_client(settings, store) as client, ThreadPoolExecutor(4) as executor:
        held = [heavy.take(heavy.count, wait_s=1), light.take(1, wait_s=1)]  # as other workers would
        waiting = [executor.submit(client.post, "/api/models/tiny/predict",
                                   files={"image": ("a.png", png_bytes(), "image/png")}) for _ in range(4)]
        time.sleep(0.5)  # the first two hold both threads of the pool, waiting for a slot
        assert not any(future.done() for future in waiting)
        times = []
        for _ in range(5):
            start = time.monotonic()
            answer = client.get("/api/health")
            times.append(time.monotonic() - start)
            assert answer.status_code == 200 and answer.json()["status"] == "ok"
        print(f"health while every slot and pool thread is taken: worst {max(times) * 1000:.1f} ms")
        heavy.release(held[0])
        light.release(held[1])
        statuses = [future.result().status_code for future in waiting]
    assert max(times) < 0.5
    assert statuses == [200] * 4  # served once the slots came free


def test_an_image_too_large_to_decode_is_refused_with_413_naming_estimate_and_limit(settings, store):
    settings = settings.model_copy(update={"max_decode_mb": 8})
    with make_client(settings, store) as client:
        big = png("I;16", 1500, 1500)  # 2.25 Mpixels: under the pixel limit, about 14 MiB to decode
        answer = client.post("/api/models/tiny/predict", files={"image": ("big.png", big, "image/png")})
        assert answer.status_code == 413, answer.text
        detail = answer.json()["detail"]
        assert "1500 × 1500 pixels of mode I;16" in detail and "14 MiB" in detail and "limit is 8 MiB" in detail
        assert "8 bits" in detail  # what would work
        small = png("I;16", 500, 500)
        assert client.post("/api/models/tiny/predict",
                           files={"image": ("s.png", small, "image/png")}).status_code == 200


def test_decoding_waits_for_the_machine_wide_budget_then_503(settings, store):
    settings = settings.model_copy(update={"decode_budget_mb": 16, "decode_wait_s": 0.5})
    with make_client(settings, store) as client:
        with holding(SlotPool(slots_dir(settings), "decode", 16 * MB // DECODE_UNIT_BYTES)):
            big = png("RGB", 1200, 1000)  # about 5 MiB decoded: counted
            start = time.monotonic()
            answer = client.post("/api/models/tiny/predict", files={"image": ("b.png", big, "image/png")})
            assert answer.status_code == 503, answer.text
            assert time.monotonic() - start >= 0.5
            assert "decoding other images" in answer.json()["detail"]
            small = png_bytes(64, 64)  # a small image takes nothing from the budget
            assert client.post("/api/models/tiny/predict",
                               files={"image": ("s.png", small, "image/png")}).status_code == 200
        answer = client.post("/api/models/tiny/predict", files={"image": ("b.png", big, "image/png")})
        assert answer.status_code == 200


def test_the_decode_budget_lets_only_what_fits_decode_at_once(tmp_path):
    budget = DecodeBudget(tmp_path, budget_bytes=32 * MB, limit_bytes=32 * MB, wait_s=5)
    inside, peak, lock = [0], [0], threading.Lock()

    def decode() -> None:
        with budget(20 * MB):  # 3 of the 4 units: two cannot decode at once
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    with ThreadPoolExecutor(4) as executor:
        for future in [executor.submit(decode) for _ in range(6)]:
            future.result()
    assert peak[0] == 1
    assert budget.units_for(1 * MB) == 0 and budget.units_for(20 * MB) == 3 and budget.units_for(10**12) == 4
    assert DecodeBudget(tmp_path, 32 * MB, 64 * MB, 1).limit_bytes == 32 * MB  # never above the whole budget


def test_slots_fall_back_to_the_temp_dir_when_the_data_dir_cannot_hold_them(settings):
    """A read-only data directory (tests/api/test_storage_real_fs.py starts a real one) must not stop the server:
    here ``slots`` is a file, so the directory cannot be made; workers of one data dir still share the fallback."""
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "slots").write_text("not a directory")
    first, second = ComputeSlots.from_settings(settings), ComputeSlots.from_settings(settings)
    assert first.heavy.directory == second.heavy.directory != settings.data_dir / "slots"
    with first(), second(), pytest.raises(ApiError), ComputeSlots(first.heavy.directory, 2, wait_s=0.2)():
        pass


def test_without_any_lock_file_each_worker_still_bounds_its_own_passes(settings, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("app.services.slots.os.open", refuse)  # os.open everywhere: no lock file can be made
    compute = ComputeSlots.from_settings(settings)
    assert compute.heavy.directory is None and compute.decoding.pool.directory is None
    compute.wait_s = 0.2
    with compute(), compute(), pytest.raises(ApiError), compute():
        pass
    assert compute.heavy.free() == 2
