"""Analysis jobs: the long computations of what a network learned (top examples over the shipped digits, feature
visualisation, t-SNE projections, linear probes), run in the background and kept as a cache on disk.

A task is identified by what it computes: its ``kind``, the model's id and ``version`` (the weights' fingerprint)
and its parameters (``key``). The job's id is a hash of those, so asking twice for the same thing finds the same
job: while it runs, the second request follows it; once it is done, the answer is at once (the cache). A job is a
directory ``<data dir>/analysis-jobs/<id>/``:

- ``status.json``: ``id``, ``kind``, ``model_id``, ``status`` (``queued``, ``running``, ``done``, ``failed``,
  ``cancelled``), ``done``/``total`` steps, ``seq`` (grows with every write: the events' ids), ``preview`` (the
  file last written as a preview), ``error`` and ``error_status`` for a failed job, the owner's token hash, times,
  and the ``pid`` and ``host`` running it;
- ``result.json``: the task's answer, once done; ``files/``: what the answer links to (PNGs, ``.npy``);
- ``cancel``: present once someone asked to stop it; the task stops at its next progress call.

Every write is a whole file replaced atomically, so a reader in another worker sees the old or the new state. As
for attention jobs (``app.services.attention_jobs``, whose helpers this module shares), starting a job takes an
exclusive lock on ``analysis-jobs/.lock`` to count the jobs running on the machine (all workers) and to remove old
ones: finished jobs beyond ``kept`` (the least recently used first), failed and cancelled ones after ``ttl_s``. A
failed or cancelled job is started afresh when asked for again. A job whose worker process is gone reads as failed.

The jobs run in a thread of the worker that took the request, at a lower CPU priority, inside a slot of the
machine's background lane (``ComputeSlots.background``), so they never take a slot from interactive requests.
With ``CNN_VIS_REDIS_URL`` they still live in the data directory of the machine that ran them (docs/learned.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.core.cpu import run_in_background
from app.errors import ApiError, not_found
from app.services.attention_jobs import ACTIVE, JobCancelledError, _process_alive, error_of, write_json
from app.services.storage import StorageError, writing

try:
    import fcntl
except ImportError:  # not on POSIX: the count is per process only
    fcntl = None  # type: ignore[assignment]

__all__ = ["AnalysisJobs", "AnalysisTask", "JobCancelledError", "JobContext", "task_id"]

JOBS_DIR = "analysis-jobs"
STATUS_FILE = "status.json"
RESULT_FILE = "result.json"
FILES_DIR = "files"
CANCEL_FILE = "cancel"
LOCK_FILE = ".lock"
JOBS_URL = "/api/jobs"
#: progress is written at most this often (and always at the end, and with every preview)
PROGRESS_INTERVAL_S = 0.2
JOB_ID = re.compile(r"[0-9a-f]{16}")
FILE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
THREAD_PREFIX = "analysis-job-"
MEDIA_TYPES = {".png": "image/png", ".npy": "application/octet-stream", ".json": "application/json"}


def task_id(kind: str, model_id: str, version: str, key: Mapping[str, Any]) -> str:
    """The job id of a task: 16 hex digits of the SHA-256 of what it computes (equal tasks, equal ids)."""
    text = json.dumps({"kind": kind, "model_id": model_id, "version": version, "key": dict(key)},
                      sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AnalysisTask:
    """What to compute. ``run(ctx)`` computes it (in a background thread) and returns the JSON-able result;
    ``key`` holds the parameters that, with ``kind``, ``model_id`` and ``version``, decide the result."""

    kind: str
    model_id: str
    version: str
    key: Mapping[str, Any]
    run: Callable[[JobContext], dict[str, Any]] = field(compare=False, repr=False)

    @property
    def id(self) -> str:
        return task_id(self.kind, self.model_id, self.version, self.key)


class JobContext:
    """What a running task may do: report progress (and learn that it was cancelled), and write the files its
    result links to."""

    def __init__(self, job_id: str, directory: Path, report: Callable[[int, int, str | None, bool], None],
                 cancelled: Callable[[], bool]) -> None:
        self.job_id = job_id
        self.directory = directory / FILES_DIR
        self._report = report
        self._cancelled = cancelled

    def progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` steps; raises ``JobCancelledError`` once someone cancelled the job."""
        if self._cancelled():
            raise JobCancelledError
        self._report(int(done), int(total), None, False)

    def check_cancelled(self) -> None:
        """Raise ``JobCancelledError`` once someone cancelled the job."""
        if self._cancelled():
            raise JobCancelledError

    def write_file(self, name: str, data: bytes) -> str:
        """Store ``data`` as ``name`` (atomically); returns its URL."""
        if FILE_NAME.fullmatch(name) is None:
            raise ValueError(f"file name {name!r} must match {FILE_NAME.pattern}")
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{name}.tmp"
        with writing("storing an analysis job's file"):
            temporary.write_bytes(data)
            os.replace(temporary, self.directory / name)
        return self.file_url(name)

    def write_npy(self, name: str, array: np.ndarray) -> str:
        """Store ``array`` as a ``.npy`` file ``name``; returns its URL."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        return self.write_file(name, buffer.getvalue())

    def preview(self, name: str, data: bytes) -> str:
        """:meth:`write_file`, then a progress event that carries the file's URL (``preview_url``): a picture of
        the work so far (the image improving as a feature visualisation runs)."""
        url = self.write_file(name, data)
        self._report(-1, -1, name, True)
        return url

    def file_url(self, name: str) -> str:
        return f"{JOBS_URL}/{self.job_id}/files/{name}"


class AnalysisJobs:
    """The analysis jobs of a data directory: submit (or find), read, cancel; bounded and cleaned up across the
    workers of the machine."""

    def __init__(self, data_dir: Path, max_running: int, kept: int, ttl_s: float) -> None:
        self.root = Path(data_dir) / JOBS_DIR
        self.max_running = max_running
        self.kept = kept
        self.ttl_s = ttl_s
        self.host = socket.gethostname()

    # --- reading -------------------------------------------------------------------------------------------

    def directory(self, job_id: str) -> Path:
        """The job's directory (404 for an id that is not one this server hands out, or that does not exist)."""
        if JOB_ID.fullmatch(job_id) is None or not (self.root / job_id / STATUS_FILE).is_file():
            raise not_found("analysis job", job_id)
        return self.root / job_id

    def read(self, job_id: str) -> dict[str, Any]:
        """The job's state as its files say (with its URLs), a vanished runner read as failed."""
        status = self._load(self.directory(job_id))
        if status is None:
            raise not_found("analysis job", job_id)
        return status

    async def read_for_stream(self, job_id: str) -> dict[str, Any]:
        """:meth:`read`, for the event stream (small local files: read in the event loop)."""
        return self.read(job_id)

    def cached_result(self, task: AnalysisTask) -> dict[str, Any] | None:
        """The result of an identical task that is done, else None."""
        directory = self.root / task.id
        status = self._load(directory) if (directory / STATUS_FILE).is_file() else None
        if status is None or status["status"] != "done":
            return None
        try:
            result = json.loads((directory / RESULT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        self._touch(directory)
        return result

    def result(self, job_id: str) -> bytes:
        """The finished job's answer as JSON; otherwise the error to answer: 409 while it runs or once cancelled,
        the job's own status and message once it failed."""
        status = self.read(job_id)
        if status["status"] == "done":
            try:
                data = (self.root / job_id / RESULT_FILE).read_bytes()
            except FileNotFoundError:
                raise not_found("analysis job", job_id) from None
            self._touch(self.root / job_id)
            return data
        if status["status"] == "failed":
            raise ApiError(status.get("error_status") or 500, status.get("error") or "the job failed")
        if status["status"] == "cancelled":
            raise ApiError(409, f"analysis job '{job_id}' was cancelled before it finished: send the request again "
                                "for a new job")
        progress = f"{status['done']} of {status['total']} steps" if status.get("total") else "starting"
        raise ApiError(409, f"analysis job '{job_id}' is still {status['status']} ({progress}): follow "
                            f"{JOBS_URL}/{job_id}/events, or ask again once it is done",
                       status=status["status"], done=status["done"], total=status.get("total"))

    def file(self, job_id: str, name: str) -> Path:
        """A file the job wrote (404 when there is no such file)."""
        directory = self.directory(job_id)
        path = directory / FILES_DIR / name
        if FILE_NAME.fullmatch(name) is None or not path.is_file():
            raise ApiError(404, f"analysis job '{job_id}' has no file '{name}': the job's result and its events "
                                "list the files it wrote")
        return path

    def file_bytes(self, job_id: str, name: str) -> bytes:
        """The bytes of a file the job wrote, read through one open file (a preview replaced meanwhile is read
        whole, old or new); 404 when there is no such file."""
        path = self.file(job_id, name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ApiError(404, f"analysis job '{job_id}' has no file '{name}' any more (removed meanwhile): send "
                                "the request again") from None

    def _load(self, directory: Path) -> dict[str, Any] | None:
        try:
            status = json.loads((directory / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if status.get("status") in ACTIVE and not self._runner_alive(status):
            status.update(status="failed", error_status=503, seq=status.get("seq", 0) + 1,
                          error="the server process computing this job stopped (restarted, killed, or its data "
                                "directory refused a write) before it finished: send the request again")
        return with_urls(status)

    def _runner_alive(self, status: dict[str, Any]) -> bool:
        if status.get("host") != self.host:
            return True  # another machine's: nothing here can tell
        pid = int(status.get("pid", 0))
        if pid == os.getpid():
            name = THREAD_PREFIX + str(status.get("id"))
            return any(thread.name == name for thread in threading.enumerate())
        return pid > 0 and _process_alive(pid)

    @staticmethod
    def _touch(directory: Path) -> None:
        """Mark a job as used now: the clean-up removes the least recently used finished jobs first."""
        with suppress(OSError):
            os.utime(directory / STATUS_FILE)

    # --- starting and stopping -----------------------------------------------------------------------------

    def submit(self, task: AnalysisTask, compute: Callable[[], AbstractContextManager[None]],
               owner: str | None = None) -> dict[str, Any]:
        """The job computing ``task``: the finished one when an identical task is done (the cache), the running
        one when it is running, else a new one started in a thread (``compute()`` is held while it computes).
        429 when the machine runs ``max_running`` jobs already."""
        job_id = task.id
        directory = self.root / job_id
        now = time.time()
        with writing("starting the analysis job"), self._locked():
            existing = self._load(directory) if (directory / STATUS_FILE).is_file() else None
            if existing is not None and existing["status"] == "done" and (directory / RESULT_FILE).is_file():
                self._touch(directory)
                return existing
            if existing is not None and existing["status"] in ACTIVE:
                return existing
            active = self._clean(now, keep=job_id)
            if len(active) >= self.max_running:
                raise ApiError(429, f"{len(active)} analysis jobs are running on this server, as many as it allows "
                                    "at once: wait for one to finish, then send the request again", retry_after_s=5)
            shutil.rmtree(directory, ignore_errors=True)  # a failed or cancelled attempt: start afresh
            directory.mkdir(parents=True)
            status: dict[str, Any] = {
                "id": job_id, "kind": task.kind, "model_id": task.model_id, "status": "queued", "owner": owner,
                "created_at": now, "started_at": None, "finished_at": None, "done": 0, "total": None, "seq": 0,
                "preview": None, "error": None, "error_status": None, "pid": os.getpid(), "host": self.host,
            }
            write_json(directory / STATUS_FILE, status)
            # started under the lock: a clean-up never sees the job recorded without its thread
            threading.Thread(target=self._run, args=(directory, dict(status), task, compute),
                             name=THREAD_PREFIX + job_id, daemon=True).start()
        return with_urls(status)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the job to stop at its next progress call (any worker may ask; a finished job is left as it is)."""
        directory = self.directory(job_id)
        status = self.read(job_id)
        if status["status"] in ACTIVE:
            with writing("cancelling the analysis job"):
                (directory / CANCEL_FILE).touch()
        return status

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield
            return
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _clean(self, now: float, keep: str) -> list[dict[str, Any]]:
        """Remove finished jobs beyond ``kept`` (least recently used first), failed and cancelled ones older than
        ``ttl_s``, and unreadable leftovers older than it; return the active jobs. Called with the lock held."""
        active: list[dict[str, Any]] = []
        done: list[tuple[float, Path]] = []
        for directory in self.root.iterdir():
            if not directory.is_dir() or JOB_ID.fullmatch(directory.name) is None or directory.name == keep:
                continue
            status = self._load(directory)
            try:
                used = (directory / STATUS_FILE).stat().st_mtime if status is not None else directory.stat().st_mtime
            except OSError:
                continue
            if status is None or (status["status"] not in ACTIVE and status["status"] != "done"):
                if now - used > self.ttl_s:
                    shutil.rmtree(directory, ignore_errors=True)
            elif status["status"] in ACTIVE:
                active.append(status)
            else:
                done.append((used, directory))
        done.sort(reverse=True)
        for _, directory in done[max(0, self.kept - 1):]:  # room for the job about to start
            shutil.rmtree(directory, ignore_errors=True)
        return active

    # --- running -------------------------------------------------------------------------------------------

    def _run(self, directory: Path, status: dict[str, Any], task: AnalysisTask,
             compute: Callable[[], AbstractContextManager[None]]) -> None:
        """The job's thread (at a lower CPU priority): compute, recording progress; then the result, or why there
        is none."""
        run_in_background()
        last_write = [0.0]

        def save(**changes: Any) -> None:
            status.update(changes, seq=status["seq"] + 1)
            with writing("recording the analysis job's progress"):
                write_json(directory / STATUS_FILE, status)
            last_write[0] = time.monotonic()

        def cancelled() -> bool:
            return (directory / CANCEL_FILE).exists()

        def report(done: int, total: int, preview: str | None, force: bool) -> None:
            if done >= 0:
                status.update(done=done, total=total)
            if preview is not None:
                status["preview"] = preview
            if force or (total > 0 and done >= total) or time.monotonic() - last_write[0] >= PROGRESS_INTERVAL_S:
                save()

        try:
            if cancelled():
                raise JobCancelledError
            with compute():
                if cancelled():
                    raise JobCancelledError
                save(status="running", started_at=time.time())
                result = task.run(JobContext(status["id"], directory, report, cancelled))
            with writing("storing the analysis job's result"):
                temporary = directory / f".{RESULT_FILE}.tmp"
                temporary.write_text(json.dumps(result, allow_nan=False), encoding="utf-8")
                os.replace(temporary, directory / RESULT_FILE)
            total = status["total"] or 1
            save(status="done", done=total, total=total, finished_at=time.time())
        except JobCancelledError:
            self._end(save, status="cancelled")
        except Exception as exc:  # every failure is recorded for whoever reads the job
            code, detail = error_of(exc)
            self._end(save, status="failed", error=detail, error_status=code)

    @staticmethod
    def _end(save: Callable[..., None], **changes: Any) -> None:
        with suppress(OSError, StorageError):  # unrecorded: readers see the thread gone and report the job failed
            save(finished_at=time.time(), **changes)


def with_urls(status: dict[str, Any]) -> dict[str, Any]:
    """``status`` with the job's URLs (and its preview's, when it wrote one)."""
    base = f"{JOBS_URL}/{status['id']}"
    preview = status.get("preview")
    return {**status, "status_url": base, "events_url": f"{base}/events", "result_url": f"{base}/result",
            "preview_url": f"{base}/files/{preview}" if preview else None}


def media_type(name: str) -> str:
    """The content type a job's file is served with."""
    return MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream")
