"""Runs shared by a machine's workers through one mapped file each: what one worker computes, another maps (no
second forward pass), with the same numbers; the files stay within their budget; a damaged, missing or
other-version file is never used. (Two real workers: tests/api/test_runs_workers.py.)"""

from __future__ import annotations

import os

import numpy as np
import pytest

from app.services.runs import RunStore
from app.services.shared_runs import SHM, SharedRuns


def tiny_input(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 1, 12, 12)).astype(np.float32)


def counting(counter: list[int]):
    """A compute-slot stand-in that counts the forward passes."""
    from contextlib import contextmanager

    @contextmanager
    def compute(gmacs=None):
        counter.append(1)
        yield

    return compute


def test_a_file_round_trips_every_dtype_shape_and_empty_array(tmp_path):
    shared = SharedRuns(tmp_path, max_bytes=1 << 20)
    arrays = {"input": np.arange(7, dtype=np.float32).reshape(1, 7), "ints": np.arange(5, dtype=np.int64),
              "empty": np.zeros((1, 0, 3), np.float32), "odd": np.ones((3, 5, 1), np.float16) * 2}
    written = shared.publish("a" * 32, "tiny", "v1", 1.5, arrays)
    read = shared.open("a" * 32)
    for run in (written, read):
        assert run is not None and (run.model_id, run.version, run.elapsed_ms) == ("tiny", "v1", 1.5)
        assert list(run.activations) == list(arrays)
        for name, value in arrays.items():
            assert run.activations[name].dtype == value.dtype and run.activations[name].shape == value.shape
            np.testing.assert_array_equal(run.activations[name], value)
        with pytest.raises(ValueError):
            run.activations["input"][0, 0] = 1.0  # read-only: a worker cannot change another's numbers


def test_a_second_worker_maps_the_run_instead_of_computing_it(tmp_path, store):
    model = store.get("tiny")
    passes: list[int] = []
    shared = SharedRuns(tmp_path / "shared", max_bytes=1 << 24)
    one = RunStore(tmp_path / "runs", compute=counting(passes), shared=shared)
    two = RunStore(tmp_path / "runs", compute=counting(passes), shared=shared)
    run, _ = one.create(model, tiny_input())
    again = two.get(run.run_id, store)
    assert len(passes) == 1  # one forward pass on the machine
    for node, value in run.activations.items():
        np.testing.assert_array_equal(again.activations[node], value)
    alone = RunStore(tmp_path / "runs", compute=counting(passes))  # the control: without sharing it computes
    alone.get(run.run_id, store)
    assert len(passes) == 2


def test_damaged_missing_and_other_version_files_are_not_used(tmp_path, store):
    model = store.get("tiny")
    passes: list[int] = []
    shared = SharedRuns(tmp_path / "shared", max_bytes=1 << 24)
    one = RunStore(tmp_path / "runs", compute=counting(passes), shared=shared)
    run, _ = one.create(model, tiny_input())
    path = shared.path(run.run_id)
    damaged = path.with_suffix(".tmp")
    damaged.write_bytes(b"not a run file")
    os.replace(damaged, path)  # as the store writes: a new file (a mapped file is never changed in place)
    assert shared.open(run.run_id) is None
    assert shared.open("f" * 32) is None
    shared.publish(run.run_id, model.id, "another-version", 1.0, run.activations)
    fresh = RunStore(tmp_path / "runs", compute=counting(passes), shared=shared)
    fresh.get(run.run_id, store)
    assert len(passes) == 2  # computed again, not taken from a file of another version


def test_the_files_stay_within_their_budget_oldest_used_first(tmp_path):
    arrays = {"input": np.zeros(1000, np.float32)}  # 4,000 bytes of data per file
    shared = SharedRuns(tmp_path, max_bytes=13_000)  # room for three files of ~4.1 kB
    for index, name in enumerate("abc"):
        shared.publish(name * 32, "m", "v", 0.0, arrays)
        os.utime(shared.path(name * 32), (index, index))  # a, then b, then c: distinct times
    assert shared.open("a" * 32) is not None  # a is used again: now the newest
    shared.publish("d" * 32, "m", "v", 0.0, arrays)
    left = sorted(path.name[0] for path in tmp_path.glob("*.run"))
    assert left == ["a", "c", "d"]  # b, the least recently used, went


def test_at_rest_the_files_nobody_opened_are_removed(tmp_path, store):
    """In /dev/shm the files are memory no process gives back: a resting worker removes the ones no worker opened
    for idle_s seconds (before, 2 workers held 496 MiB a minute after a lecture against 240 before it)."""
    model = store.get("tiny")
    passes: list[int] = []
    shared = SharedRuns(tmp_path / "shared", max_bytes=1 << 24)
    worker = RunStore(tmp_path / "runs", compute=counting(passes), shared=shared)
    old, _ = worker.create(model, tiny_input(1))
    recent, _ = worker.create(model, tiny_input(2))
    os.utime(shared.path(old.run_id), (1, 1))  # opened long ago
    assert worker.forget_unused(idle_s=60) == 0  # both runs were used just now: this worker keeps them
    assert not shared.path(old.run_id).exists() and shared.path(recent.run_id).exists()
    np.testing.assert_array_equal(old.activations["input"], tiny_input(1))  # still mapped: still readable
    other = RunStore(tmp_path / "runs", compute=counting(passes), shared=shared)
    again = other.get(old.run_id, store)  # another worker recomputes it from the stored input
    assert len(passes) == 3
    np.testing.assert_array_equal(again.activations["input"], old.activations["input"])


def test_a_run_served_from_a_workers_cache_keeps_its_file(tmp_path, store, monkeypatch):
    """A worker serving a shared run from its own cache opens no file: it marks the file as used (at most once a
    second), so a resting worker does not remove a run another one is still showing."""
    monkeypatch.setattr("app.services.runs.SHARED_TOUCH_S", 0.0)
    model = store.get("tiny")
    shared = SharedRuns(tmp_path / "shared", max_bytes=1 << 24)
    serving = RunStore(tmp_path / "runs", compute=counting([]), shared=shared)
    resting = RunStore(tmp_path / "runs", compute=counting([]), shared=shared)
    run, _ = serving.create(model, tiny_input())
    os.utime(shared.path(run.run_id), (1, 1))
    serving.get(run.run_id, store)  # a PNG fetch, from the cache
    resting.forget_unused(idle_s=60)
    assert shared.path(run.run_id).exists()


def test_the_machine_shares_runs_in_memory_when_dev_shm_has_room(tmp_path):
    shared = SharedRuns.for_data_dir(tmp_path, max_bytes=1 << 20)
    if SHM.is_dir():
        assert shared.directory.parent == SHM and oct(shared.directory.stat().st_mode & 0o777) == "0o700"
        assert SharedRuns.for_data_dir(tmp_path, 1 << 20).directory == shared.directory  # every worker: one folder
        shared.directory.rmdir()
    huge = SharedRuns.for_data_dir(tmp_path, max_bytes=1 << 60)  # no room: the data directory instead
    assert huge.directory == tmp_path / "runs" / "shared"
