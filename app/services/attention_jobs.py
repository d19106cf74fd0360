"""Attention maps computed in the background: heavy requests answer 202 at once and run in a thread of the worker
that took them, while their state lives in files that every worker reads.

A job is a directory ``<data dir>/attention-jobs/<id>/``:

- ``status.json``: ``id``, ``status`` (``queued``, ``running``, ``done``, ``failed``, ``cancelled``), ``model_id``,
  ``method``, ``done``/``total`` passes, ``seq`` (grows with every write: the events' ids), ``error`` and
  ``error_status`` for a failed job, the owner's token hash, times, and the ``pid`` and ``host`` running it;
- ``result.json``: the answer the synchronous route gives (``AttentionResponse``, PNGs as data URLs), once done;
- ``cancel``: present once someone asked to stop it; the job stops before its next batch of passes.

Every write is a whole file replaced atomically (``os.replace``), so a reader in another worker sees the old or
the new state, never half of one. Starting a job takes an exclusive lock on ``attention-jobs/.lock`` to count the
jobs running on the machine (all workers) and to remove old ones: finished jobs beyond ``kept`` (oldest first)
or older than ``ttl_s``. A job whose worker process is gone (same host, dead pid) or whose thread ended without
recording its end reads as failed.

With ``CNN_VIS_REDIS_URL``, ``app.services.redis_attention_jobs.RedisAttentionJobs`` keeps the same state in Redis
and runs the jobs in RQ workers, behind the same methods.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from app.core.cpu import run_in_background
from app.errors import ApiError, not_found
from app.services.attention import PreparedAttention, compute_attention
from app.services.errors import UnusableRequestError
from app.services.job_process import compute_in_child
from app.services.storage import StorageError, writing
from engine.errors import EngineError, UnknownNodeError

try:
    import fcntl
except ImportError:  # not on POSIX: the count is per process only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("cnn_visualiser.attention_jobs")

JOBS_DIR = "attention-jobs"
STATUS_FILE = "status.json"
RESULT_FILE = "result.json"
CANCEL_FILE = "cancel"
LOCK_FILE = ".lock"
ACTIVE = frozenset({"queued", "running"})
FINISHED = frozenset({"done", "failed", "cancelled"})
#: progress is written at most this often (and always at the end): a digit model's passes take microseconds
PROGRESS_INTERVAL_S = 0.2
JOB_ID = re.compile(r"[0-9a-f]{16}")
THREAD_PREFIX = "attention-job-"


class JobCancelledError(Exception):
    """Raised between two batches of passes when the job's ``cancel`` file exists."""


def error_of(exc: BaseException) -> tuple[int, str]:
    """The status and message the synchronous route would have answered for ``exc`` (app/errors.py's mapping)."""
    if isinstance(exc, ApiError):
        return exc.status_code, exc.detail
    if isinstance(exc, StorageError):
        return exc.status_code, exc.message
    if isinstance(exc, UnknownNodeError):
        return 404, str(exc)
    if isinstance(exc, UnusableRequestError):
        return 422, exc.message
    if isinstance(exc, EngineError):
        return 422, str(exc)
    if isinstance(exc, MemoryError):
        return 413, "the request needs more memory than this server has: send a smaller input or batch"
    log.error("attention job failed", exc_info=exc)
    return 500, f"internal error ({type(exc).__name__}); this is a bug in cnn-visualiser, please report it"


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data, allow_nan=False), encoding="utf-8")
    os.replace(temporary, path)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AttentionJobs:
    """The attention jobs of a data directory: start, read, cancel; bounded and cleaned up across workers."""

    def __init__(self, data_dir: Path, max_running: int, per_owner: int, kept: int, ttl_s: float,
                 reloadable: Callable[[str], bool] | None = None) -> None:
        """``reloadable(model_id)``: whether a child process can load the model (then the job's passes run in one,
        ``app.services.job_process``); None: every job computes in its thread."""
        self.data_dir = Path(data_dir)
        self.reloadable = reloadable
        self.root = self.data_dir / JOBS_DIR
        self.max_running = max_running
        self.per_owner = per_owner
        self.kept = kept
        self.ttl_s = ttl_s
        self.host = socket.gethostname()

    # --- reading -------------------------------------------------------------------------------------------

    def directory(self, job_id: str) -> Path:
        """The job's directory (404 for an id that is not one this server hands out, or that does not exist)."""
        if JOB_ID.fullmatch(job_id) is None or not (self.root / job_id / STATUS_FILE).is_file():
            raise not_found("attention job", job_id)
        return self.root / job_id

    def read(self, job_id: str) -> dict[str, Any]:
        """The job's state as its files say, a vanished runner read as failed."""
        status = self._load(self.directory(job_id))
        if status is None:
            raise not_found("attention job", job_id)
        return status

    async def read_for_stream(self, job_id: str) -> dict[str, Any]:
        """:meth:`read` for the event stream (small local files: read in the event loop, as it always was)."""
        return self.read(job_id)

    def result(self, job_id: str) -> bytes:
        """The finished job's answer, as the JSON the synchronous route returns; otherwise the error to answer:
        409 while it runs or once cancelled, the job's own status and message once it failed."""
        status = self.read(job_id)
        if status["status"] == "done":
            try:
                return (self.root / job_id / RESULT_FILE).read_bytes()
            except FileNotFoundError:
                raise not_found("attention job", job_id) from None
        if status["status"] == "failed":
            raise ApiError(status.get("error_status") or 500, status.get("error") or "the job failed")
        if status["status"] == "cancelled":
            raise ApiError(409, f"attention job '{job_id}' was cancelled before it finished: send the request "
                                "again for a new job")
        progress = f"{status['done']} of {status['total']} passes" if status.get("total") else "starting"
        raise ApiError(409, f"attention job '{job_id}' is still {status['status']} ({progress}): follow "
                            f"/api/attention/jobs/{job_id}/events, or ask again once it is done",
                       status=status["status"], done=status["done"], total=status.get("total"))

    def _load(self, directory: Path) -> dict[str, Any] | None:
        try:
            status = json.loads((directory / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if status.get("status") in ACTIVE and not self._runner_alive(status):
            status.update(status="failed", error_status=503, seq=status.get("seq", 0) + 1,
                          error="the server process computing this job stopped (restarted, killed, or its data "
                                "directory refused a write) before it finished: send the request again")
        return status

    def _runner_alive(self, status: dict[str, Any]) -> bool:
        if status.get("host") != self.host:
            return True  # another machine's: nothing here can tell
        pid = int(status.get("pid", 0))
        if pid == os.getpid():
            name = THREAD_PREFIX + str(status.get("id"))
            return any(thread.name == name for thread in threading.enumerate())
        return pid > 0 and _process_alive(pid)

    # --- starting and stopping -----------------------------------------------------------------------------

    def start(self, attention: PreparedAttention, compute: Callable[[], AbstractContextManager[None]],
              owner: str | None, owner_limit: int | None) -> dict[str, Any]:
        """Record a new job and start its thread; 429 when the machine runs ``max_running`` jobs already, or
        the owner ``owner_limit`` (None: the lecturer, not limited)."""
        job_id = secrets.token_hex(8)
        now = time.time()
        status: dict[str, Any] = {
            "id": job_id, "status": "queued", "model_id": attention.model.id, "method": attention.request.method,
            "owner": owner, "created_at": now, "started_at": None, "finished_at": None, "done": 0, "total": None,
            "seq": 0, "error": None, "error_status": None, "pid": os.getpid(), "host": self.host,
            "estimated_gmacs": round(attention.estimated_macs / 1e9, 6),
        }
        with writing("starting the attention job"), self._locked():
            active = self._clean(now)
            if len(active) >= self.max_running:
                raise ApiError(429, f"{len(active)} attention jobs are running on this server, as many as it "
                                    "allows at once: wait for one to finish (or stop yours), then send the request "
                                    "again", retry_after_s=5)
            mine = [s for s in active if owner is not None and s.get("owner") == owner]
            if owner_limit is not None and len(mine) >= owner_limit:
                raise ApiError(429, f"you have {len(mine)} attention jobs running, as many as one person may: wait "
                                    "for one to finish or stop it (DELETE /api/attention/jobs/<id>)",
                               retry_after_s=5)
            directory = self.root / job_id
            directory.mkdir(parents=True)
            write_json(directory / STATUS_FILE, status)
            # started under the lock: a clean-up never sees the job recorded without its thread
            threading.Thread(target=self._run, args=(directory, dict(status), attention, compute),
                             name=THREAD_PREFIX + job_id, daemon=True).start()
        return status

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the job to stop before its next batch of passes (any worker may ask; nothing happens to a
        finished job). Returns its state."""
        directory = self.directory(job_id)
        status = self.read(job_id)
        if status["status"] in ACTIVE:
            with writing("cancelling the attention job"):
                (directory / CANCEL_FILE).touch()
        return status

    @contextlib.contextmanager
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

    def _clean(self, now: float) -> list[dict[str, Any]]:
        """Remove finished jobs beyond ``kept`` or older than ``ttl_s`` (and unreadable leftovers older than it);
        return the active jobs. Called with the lock held."""
        active, finished = [], []
        for directory in self.root.iterdir():
            if not directory.is_dir() or JOB_ID.fullmatch(directory.name) is None:
                continue
            status = self._load(directory)
            if status is None:
                with contextlib.suppress(OSError):
                    if now - directory.stat().st_mtime > self.ttl_s:
                        shutil.rmtree(directory, ignore_errors=True)
                continue
            (active if status["status"] in ACTIVE else finished).append(status)
        finished.sort(key=lambda s: s.get("finished_at") or s.get("created_at") or 0, reverse=True)
        for rank, status in enumerate(finished):
            if rank >= self.kept or now - (status.get("finished_at") or status.get("created_at") or now) > self.ttl_s:
                shutil.rmtree(self.root / status["id"], ignore_errors=True)
        return active

    # --- running -------------------------------------------------------------------------------------------

    def _run(self, directory: Path, status: dict[str, Any], attention: PreparedAttention,
             compute: Callable[[], AbstractContextManager[None]]) -> None:
        """The job's thread (at a lower CPU priority): compute, recording progress; then the result, or why there
        is none."""
        run_in_background()
        last_write = [0.0]

        def save(**changes: Any) -> None:
            status.update(changes, seq=status["seq"] + 1)
            with writing("recording the attention job's progress"):
                write_json(directory / STATUS_FILE, status)
            last_write[0] = time.monotonic()

        def check() -> None:
            if (directory / CANCEL_FILE).exists():
                raise JobCancelledError

        def progress(done: int, total: int) -> None:
            check()
            status.update(done=done, total=total)
            if done >= total or time.monotonic() - last_write[0] >= PROGRESS_INTERVAL_S:
                save()

        try:
            check()
            if self.reloadable is not None and self.reloadable(attention.model.id):  # never share our interpreter
                with compute(gmacs=attention.estimated_macs / 1e9):  # type: ignore[call-arg]
                    check()
                    save(status="running", started_at=time.time())
                    answer = compute_in_child(attention, self.data_dir, progress, check)
            else:
                save(status="running", started_at=time.time())
                answer = compute_attention(attention, compute, progress).model_dump_json()
            with writing("storing the attention map"):
                temporary = directory / f".{RESULT_FILE}.tmp"
                temporary.write_text(answer, encoding="utf-8")
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
        try:
            save(finished_at=time.time(), **changes)
        except (OSError, StorageError):  # readers see the thread gone and report the job failed
            log.warning("could not record the end of an attention job", exc_info=True)
