"""Training jobs in SQLite (``<data dir>/state.sqlite3``), shared by every worker process on the machine.

Two tables:

- ``jobs``: one row per job: id, owner (a token hash), name, settings (JSON), the network in words and its
  parameter count, status, error, progress (JSON), the model it was opened as, a cancel flag, which worker
  runs it and when that worker last said it was alive (``heartbeat``), created and finished times, and the
  id of its last event (``last_seq``);
- ``events``: each job's server-sent events ``(job_id, seq, event, data JSON)``. Only the latest ``images``
  event is kept. The job's curves are its ``epoch`` and ``batch`` events.

The database is in WAL mode (readers never wait for the writer) with ``synchronous=NORMAL``; each thread
has its own connection. Writes that must see a consistent count (admitting a job under the running-jobs
limits) run in ``BEGIN IMMEDIATE`` transactions, so two workers can never both take the last slot.
Every write that touches a running job is conditional on it still running, so a job marked interrupted
(its worker died) is never revived by a late write.

This module knows rows, not trainers: ``app.services.training_jobs`` decides what goes in them. With
``CNN_VIS_REDIS_URL``, ``app.services.redis_job_store.RedisJobStore`` keeps the same rows and events in Redis
behind the same methods.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ApiError
from app.services.storage import StorageError, storage_kind

FILENAME = "state.sqlite3"
BUSY_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT,
    name TEXT NOT NULL,
    settings TEXT NOT NULL,
    network TEXT NOT NULL,
    param_count INTEGER NOT NULL,
    pretrained_params TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    error TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    model_id TEXT,
    cancel INTEGER NOT NULL DEFAULT 0,
    worker TEXT NOT NULL DEFAULT '',
    heartbeat REAL NOT NULL,
    created REAL NOT NULL,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    last_seq INTEGER NOT NULL DEFAULT -1
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""


@dataclass
class Message:
    """One server-sent event: ``seq`` is its id (for Last-Event-ID), ``event`` its type, ``data`` its JSON."""

    seq: int
    event: str
    data: dict[str, Any]


@dataclass
class JobRow:
    """A job as stored (``settings``, ``progress`` and ``pretrained_params`` decoded from JSON)."""

    id: str
    owner: str | None
    name: str
    settings: dict[str, Any]
    network: str
    param_count: int
    pretrained_params: list[str]
    status: str
    error: str | None
    progress: dict[str, Any]
    model_id: str | None
    cancel: bool
    worker: str
    heartbeat: float
    created: float
    created_at: str
    finished_at: str | None
    last_seq: int

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> JobRow:
        values = dict(row)
        for key in ("settings", "progress", "pretrained_params"):
            values[key] = json.loads(values[key])
        values["cancel"] = bool(values["cancel"])
        return cls(**values)


class JobIdTakenError(Exception):
    """Another job has this id already (draw another)."""


@dataclass(frozen=True)
class Refusal:
    """Why a job was not admitted: ``scope`` "server" (every running job) or "owner" (the owner's)."""

    scope: str
    running: int
    limit: int


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


@contextlib.contextmanager
def store_errors(what: str) -> Iterator[None]:
    """A full, read-only, locked or damaged database as the API's 507 or 503 saying what failed."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        if "full" in text:
            raise StorageError("full", what) from exc
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            raise StorageError("read_only", what) from exc
        if "locked" in text or "busy" in text:
            raise ApiError(503, f"the training-job store is busy, so {what} failed: try again in a moment") from exc
        raise ApiError(503, f"the training-job store (state.sqlite3 in the data directory) cannot be used, so {what} "
                            "failed: ask the lecturer or admin to check the server's log") from exc
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        raise ApiError(503, f"the training-job store (state.sqlite3 in the data directory) is damaged, so {what} "
                            "failed: ask the lecturer or admin to move it aside and restart the server") from exc
    except OSError as exc:  # creating the data directory
        kind = storage_kind(exc)
        if kind is None:
            raise
        raise StorageError(kind, what) from exc


class JobStore:
    """The jobs and their events in one SQLite file; safe to use from any thread of any process."""

    def __init__(self, path: Path, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        with store_errors("opening the training-job store"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._connection()
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)

    # --- connections -----------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit: transactions are explicit)."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    @contextlib.contextmanager
    def transaction(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """A transaction on this thread's connection: ``BEGIN IMMEDIATE`` takes the write lock at once."""
        con = self._connection()
        con.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # --- reading ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRow | None:
        row = self._connection().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRow.from_sql(row) if row is not None else None

    def jobs(self) -> list[JobRow]:
        """Every job, newest first."""
        rows = self._connection().execute("SELECT * FROM jobs ORDER BY created DESC, rowid DESC").fetchall()
        return [JobRow.from_sql(row) for row in rows]

    def running(self, alive_since: float = 0.0) -> list[JobRow]:
        """Running jobs whose worker was heard from at or after ``alive_since`` (0: all running jobs)."""
        rows = self._connection().execute("SELECT * FROM jobs WHERE status = 'running' AND heartbeat >= ?",
                                          (alive_since,)).fetchall()
        return [JobRow.from_sql(row) for row in rows]

    def stale(self, alive_since: float) -> list[JobRow]:
        """Running jobs whose worker has not been heard from since ``alive_since``."""
        rows = self._connection().execute("SELECT * FROM jobs WHERE status = 'running' AND heartbeat < ?",
                                          (alive_since,)).fetchall()
        return [JobRow.from_sql(row) for row in rows]

    def messages(self, job_id: str, after: int = -1, kinds: tuple[str, ...] | None = None) -> list[Message]:
        """The job's events after ``after`` in order (only the kinds named, when given)."""
        sql, args = "SELECT seq, event, data FROM events WHERE job_id = ? AND seq > ?", [job_id, after]
        if kinds:
            sql += f" AND event IN ({', '.join('?' * len(kinds))})"
            args += kinds
        rows = self._connection().execute(sql + " ORDER BY seq", args).fetchall()
        return [Message(row["seq"], row["event"], json.loads(row["data"])) for row in rows]

    def messages_and_row(self, job_id: str, after: int) -> tuple[list[Message], JobRow | None]:
        """The events after ``after`` and the job's row, read in one snapshot (so a finished job's row and its
        ``end`` event agree)."""
        with self.transaction() as con:
            rows = con.execute("SELECT seq, event, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq",
                               (job_id, after)).fetchall()
            job = con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        messages = [Message(row["seq"], row["event"], json.loads(row["data"])) for row in rows]
        return messages, JobRow.from_sql(job) if job is not None else None

    # --- writing ---------------------------------------------------------------------------------
    def admit(self, row: JobRow, max_running: int, max_per_owner: int | None, alive_since: float) -> Refusal | None:
        """Insert ``row`` unless ``max_running`` jobs run (or ``max_per_owner`` of its owner's), counting every
        worker's running jobs heard from since ``alive_since``, atomically. Returns why it was refused, or None.
        Raises JobIdTakenError when the id is taken."""
        try:
            return self._admit(row, max_running, max_per_owner, alive_since)
        except sqlite3.IntegrityError as exc:
            raise JobIdTakenError(row.id) from exc

    def _admit(self, row: JobRow, max_running: int, max_per_owner: int | None, alive_since: float) -> Refusal | None:
        with self.transaction(immediate=True) as con:
            running = con.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running' AND heartbeat >= ?",
                                  (alive_since,)).fetchone()[0]
            if running >= max_running:
                return Refusal("server", running, max_running)
            if max_per_owner is not None and row.owner is not None:
                mine = con.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running' AND heartbeat >= ? AND "
                                   "owner = ?", (alive_since, row.owner)).fetchone()[0]
                if mine >= max_per_owner:
                    return Refusal("owner", mine, max_per_owner)
            con.execute(
                "INSERT INTO jobs (id, owner, name, settings, network, param_count, pretrained_params, status, error, "
                "progress, model_id, cancel, worker, heartbeat, created, created_at, finished_at, last_seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.owner, row.name, dumps(row.settings), row.network, row.param_count,
                 dumps(row.pretrained_params), row.status, row.error, dumps(row.progress), row.model_id,
                 int(row.cancel), row.worker, row.heartbeat, row.created, row.created_at, row.finished_at,
                 row.last_seq))
        return None

    def post(self, job_id: str, event: str, data: dict[str, Any], progress: dict[str, Any] | None = None) -> int | None:
        """Append an event to a running job (dropping its previous ``images`` event) and record its progress;
        returns the event's id, or None when the job no longer runs (cancelled elsewhere, marked interrupted)."""
        with self.transaction(immediate=True) as con:
            found = con.execute("SELECT last_seq FROM jobs WHERE id = ? AND status = 'running'", (job_id,)).fetchone()
            if found is None:
                return None
            seq = found[0] + 1
            if event == "images":
                con.execute("DELETE FROM events WHERE job_id = ? AND event = 'images'", (job_id,))
            con.execute("INSERT INTO events (job_id, seq, event, data) VALUES (?, ?, ?, ?)",
                        (job_id, seq, event, dumps(data)))
            if progress is None:
                con.execute("UPDATE jobs SET last_seq = ? WHERE id = ?", (seq, job_id))
            else:
                con.execute("UPDATE jobs SET last_seq = ?, progress = ? WHERE id = ?", (seq, dumps(progress), job_id))
        return seq

    def finish(self, job_id: str, status: str, error: str | None, end_data: Callable[[JobRow], dict[str, Any]],
               progress: dict[str, Any] | None = None, alive_before: float | None = None) -> bool:
        """End a running job: set its status, error, progress and finished time, then append its ``end`` event
        (``end_data(row)`` of the updated row). With ``alive_before``, only if its worker has not been heard
        from since then (marking a dead worker's job). Returns False when the job was not running."""
        with self.transaction(immediate=True) as con:
            condition, args = "id = ? AND status = 'running'", [job_id]
            if alive_before is not None:
                condition += " AND heartbeat < ?"
                args.append(alive_before)
            sets, values = "status = ?, error = ?, finished_at = ?", [status, error, now_iso()]
            if progress is not None:
                sets += ", progress = ?"
                values.append(dumps(progress))
            if con.execute(f"UPDATE jobs SET {sets} WHERE {condition}", values + args).rowcount == 0:
                return False
            row = JobRow.from_sql(con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
            seq = row.last_seq + 1
            con.execute("INSERT INTO events (job_id, seq, event, data) VALUES (?, ?, 'end', ?)",
                        (job_id, seq, dumps(end_data(row))))
            con.execute("UPDATE jobs SET last_seq = ? WHERE id = ?", (seq, job_id))
        return True

    def request_cancel(self, job_id: str) -> None:
        """Raise the job's cancel flag (its worker stops it within a heartbeat); a finished job is left alone."""
        with self.transaction(immediate=True) as con:
            con.execute("UPDATE jobs SET cancel = 1 WHERE id = ? AND status = 'running'", (job_id,))

    def beat(self, job_ids: list[str], now: float | None = None) -> set[str]:
        """Say the worker running ``job_ids`` is alive; returns those of them to stop (cancel flag raised, no
        longer running, or gone)."""
        if not job_ids:
            return set()
        marks = ", ".join("?" * len(job_ids))
        with self.transaction(immediate=True) as con:
            con.execute(f"UPDATE jobs SET heartbeat = ? WHERE status = 'running' AND id IN ({marks})",
                        [time.time() if now is None else now, *job_ids])
            keep = {row[0] for row in con.execute(
                f"SELECT id FROM jobs WHERE status = 'running' AND cancel = 0 AND id IN ({marks})", job_ids)}
        return set(job_ids) - keep

    def set_model(self, job_id: str, model_id: str) -> None:
        with self.transaction(immediate=True) as con:
            con.execute("UPDATE jobs SET model_id = ? WHERE id = ?", (model_id, job_id))

    def prune(self, max_kept: int) -> list[str]:
        """Delete the oldest finished jobs (and their events) beyond ``max_kept`` jobs in all; returns their ids."""
        with self.transaction(immediate=True) as con:
            total = con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
            excess = max(0, total - max_kept)
            if not excess:
                return []
            ids = [row[0] for row in con.execute(
                "SELECT id FROM jobs WHERE status != 'running' ORDER BY created, rowid LIMIT ?", (excess,))]
            for job_id in ids:
                con.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
                con.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return ids
