"""How a worker shares the machine: one BLAS thread per pass, background work at a lower priority in a lane of its
own, memory given back when idle, and the run cache split between the workers."""

from __future__ import annotations

import itertools
import os
import threading
import time

import numpy as np
import pytest

from app.core.config import MB, Settings
from app.core.cpu import BACKGROUND_NICE, blas_threads, limit_blas_threads, run_in_background
from app.core.memory import IdleTrimmer
from app.main import create_app
from app.services.compute import ComputeSlots
from app.services.container import run_cache_share
from app.services.runs import RunStore


def test_the_app_runs_one_blas_thread_per_pass_unless_told_otherwise(tmp_path):
    limit_blas_threads(2)
    assert blas_threads() == 2
    create_app(Settings(data_dir=tmp_path, preload=False))
    assert blas_threads() == 1
    create_app(Settings(data_dir=tmp_path, preload=False, blas_threads=0))  # 0: as it was
    assert blas_threads() == 1


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priority is a POSIX feature")
def test_a_background_thread_lowers_only_its_own_priority():
    seen = {}

    def job() -> None:
        seen["applied"] = run_in_background()
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    assert seen == {"applied": True, "nice": max(before, BACKGROUND_NICE)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_background_work_never_takes_a_heavy_or_light_slot(tmp_path):
    compute = ComputeSlots(tmp_path, slots=1, wait_s=0.2, light_slots=1, background_slots=1,
                           background_wait_s=0.2)
    with compute.background():
        start = time.monotonic()
        with compute(), compute(gmacs=0.001):  # the heavy and the light lane: both free
            pass
        assert time.monotonic() - start < 0.1
        with pytest.raises(Exception) as caught, compute.background():
            pass
        assert getattr(caught.value, "status_code", None) == 503  # its own lane is full (waits, then 503)


def test_idle_for_counts_from_the_end_of_the_last_pass(tmp_path):
    compute = ComputeSlots(tmp_path, slots=1, wait_s=1)
    with compute():
        assert compute.idle_for() == 0.0
    time.sleep(0.05)
    assert 0.04 < compute.idle_for() < 5


def test_the_trimmer_gives_memory_back_once_per_idle_spell():
    idle = [10.0]
    trimmer = IdleTrimmer(lambda: idle[0], idle_s=0.05, check_s=0.01)
    trimmer.start()
    try:
        time.sleep(0.1)
        assert trimmer.trims == 0  # nothing computed since start: nothing to give back
        idle[0] = 0.0  # a pass runs
        time.sleep(0.05)
        idle[0] = 10.0  # then the worker rests
        time.sleep(0.1)
        assert trimmer.trims == 1
        time.sleep(0.1)
        assert trimmer.trims == 1  # once per spell
    finally:
        trimmer.stop()


def test_under_a_steady_load_the_trimmer_trims_every_busy_trim_s(monkeypatch):
    """A worker that never rests (a lecture) still gives back what finished passes freed, at most every
    busy_trim_s; without it, only at rest."""
    calls = []
    monkeypatch.setattr("app.core.memory.trim_memory", lambda: calls.append(time.monotonic()) or True)
    busy = IdleTrimmer(lambda: 0.0, idle_s=5, check_s=1.0, busy_trim_s=0.05).start()
    try:
        time.sleep(0.32)
    finally:
        busy.stop()
    assert 2 <= busy.busy_trims <= 7 and busy.trims == 0 and len(calls) == busy.busy_trims
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(calls))
    calls.clear()
    rest_only = IdleTrimmer(lambda: 0.0, idle_s=5, check_s=0.01).start()
    try:
        time.sleep(0.1)
    finally:
        rest_only.stop()
    assert calls == [] and rest_only.busy_trims == 0


@pytest.mark.parametrize("workers, share", [(1, 512), (2, 256), (4, 128)])
def test_the_run_cache_is_a_budget_of_the_machine_shared_by_its_workers(tmp_path, workers, share):
    assert run_cache_share(Settings(data_dir=tmp_path, run_cache_mb=512, workers=workers)) == share * MB


def test_at_rest_the_runs_nobody_uses_are_dropped_before_the_trim(tmp_path, store):
    runs = RunStore(tmp_path / "runs")
    model = store.get("tiny")
    rng = np.random.default_rng(0)
    old, _ = runs.create(model, rng.standard_normal((1, 1, 12, 12)).astype(np.float32))
    time.sleep(0.2)
    recent, _ = runs.create(model, rng.standard_normal((1, 1, 12, 12)).astype(np.float32))
    assert runs.forget_unused(idle_s=0.1) == 1  # the old one only: the recent one is being looked at
    assert runs._cached(old.run_id) is None and runs._cached(recent.run_id) is not None
    again = runs.get(old.run_id, store)  # recomputed from its stored input: the same numbers
    for node, value in old.activations.items():
        np.testing.assert_array_equal(again.activations[node], value)


def test_the_trimmer_frees_what_the_worker_keeps_first_and_survives_a_failing_hook():
    calls = []
    idle = [0.0]

    def hook():
        calls.append(time.monotonic())
        raise RuntimeError("a bug in the hook")

    trimmer = IdleTrimmer(lambda: idle[0], idle_s=0.05, check_s=0.01, before_trim=hook)
    trimmer.start()
    try:
        time.sleep(0.05)
        idle[0] = 10.0
        time.sleep(0.1)
        idle[0] = 0.0
        time.sleep(0.05)
        idle[0] = 10.0
        time.sleep(0.1)
        assert len(calls) == 2 and trimmer.trims == 2  # once per idle spell, the trim done despite the error
    finally:
        trimmer.stop()
