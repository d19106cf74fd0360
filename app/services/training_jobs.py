"""Training jobs: the engine's Trainer in background threads, bounded across workers, cancellable from any
worker, streamed as events from a shared store.

Where a job lives: its row and its events are in SQLite (``app.services.job_store``, ``<data dir>/state.sqlite3``),
so every worker process lists it, reads it, streams its events and cancels it; its Trainer runs in a thread of
the worker that started it, which writes the progress and the events (``batch``, ``epoch``, ``images``, ``end``;
only the latest ``images`` is kept) there. A job that finishes training writes its weights to
``<data dir>/training/<id>/weights.npz`` before it is marked ``done``, so any worker can open it as a model.

Limits: at most ``max_running`` jobs run at once and at most ``max_per_owner`` of one owner's (a token hash,
``app.services.owners``), counted in the store over every worker, atomically. The oldest finished jobs go when
more than ``max_kept`` are kept; finished jobs survive a restart.

Liveness: each worker's heartbeat thread marks its running jobs alive every ``BEAT_SECONDS`` and reads their
cancel flags (so a DELETE answered by another worker stops the job within a beat). A running job whose worker
has not been heard from for ``STALE_SECONDS`` is marked ``failed`` ("interrupted") by whichever worker next
looks at it; at start-up, a worker also marks at once the running jobs of workers on its machine whose process
is gone. A clean shutdown cancels the worker's jobs (status ``cancelled``).

Several machines (``CNN_VIS_REDIS_URL``): ``app.services.training_queue.QueuedJobManager`` keeps the same rows in
Redis and runs each job in an RQ worker (``cnn-visualiser worker``) instead of a thread of the web worker; it
reuses this class through the hooks ``_new_row_worker``, ``_launch``, ``_keep_weights``, ``trained_params`` and
``wait_for_events``.

Everything NumPy runs in the job's thread. The pictures (first-layer filters, one sample's feature maps)
are rendered there while the Trainer is paused at a progress event, so they read consistent weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

from app.core.cpu import run_in_background
from app.errors import ApiError, not_found
from app.schemas.training import RECURRENT, BatchPoint, EpochPoint, JobProgress, TrainingJob, TrainingSettings
from app.services.job_store import FILENAME, JobIdTakenError, JobRow, JobStore, Message, store_errors
from app.services.overlay import png_data_url
from app.services.storage import StorageError, writing
from app.services.training_networks import (
    GATE_NAMES,
    LabNetwork,
    PretrainedSource,
    build_network,
    shipped_weights,
    transfer,
)
from engine.datasets.mnist import load_mnist
from engine.errors import WeightsError
from engine.graph import Graph
from engine.layers.softmax import softmax_forward
from engine.models.bundle import ModelBundle
from engine.models.digits import DATA_SOURCE, LABELS, PREPROCESSING
from engine.models.weights import read_weights, save_weights
from engine.training import Progress, TrainConfig, Trainer, evaluate

__all__ = ["JobManager", "Message", "TrainingJobState"]

log = logging.getLogger("cnn_visualiser.training")

BATCH_POINT_SECONDS = 0.1  # at most ~10 training-curve points a second (and the last batch of every epoch)
IMAGES_SECONDS = 0.75  # pictures at most this often (and after every epoch)
EPOCH0_TRAIN_SAMPLES = 1000  # epoch 0's training loss is measured on this many training digits
BEAT_SECONDS = 0.5  # a worker marks its running jobs alive (and reads their cancel flags) this often
STALE_SECONDS = 30.0  # a running job not marked alive for this long is "interrupted" (its worker died)
INTERRUPTED = ("interrupted: the server process training it stopped (a restart or a crash) before it "
               "finished; start it again")


def finite(value: float | None) -> float | None:
    """``value``, or None when it is missing, NaN or infinite (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def diverging(w: np.ndarray, scale: float) -> np.ndarray:
    """``w: (H, W)`` -> ``(H, W, 3)`` uint8: negative blue, zero white, positive red, ``|w| = scale`` saturated."""
    t = np.clip(w / scale if scale > 0 else np.zeros_like(w), -1, 1)
    rgb = np.empty((*w.shape, 3), dtype=np.float32)
    rgb[..., 0] = np.where(t < 0, 1 + t, 1)
    rgb[..., 1] = 1 - np.abs(t)
    rgb[..., 2] = np.where(t > 0, 1 - t, 1)
    return (rgb * 255).round().astype(np.uint8)


def grey(a: np.ndarray) -> np.ndarray:
    """``a: (H, W)`` -> uint8 with its own minimum black and maximum white (all black when constant)."""
    low, high = float(a.min()), float(a.max())
    if high <= low:
        return np.zeros(a.shape, dtype=np.uint8)
    return ((a - low) / (high - low) * 255).round().astype(np.uint8)


def filter_images(weight: np.ndarray) -> list[str]:
    """First-layer filters ``weight: (C_out, C_in, k, k)`` -> one PNG per output channel (the mean over C_in),
    on one diverging scale for the whole layer so that their strengths compare."""
    maps = weight.mean(axis=1)
    scale = float(np.abs(maps).max())
    return [png_data_url(diverging(m, scale)) for m in maps]


def gate_weight_images(weight_ih: np.ndarray, gates: int) -> list[str]:
    """A recurrent layer's input weights ``weight_ih: (G·H, F)``, gates stacked -> one PNG per gate, ``(H, F)``:
    row j is what hidden unit j's gate adds up from the F pixels of a row. One diverging scale for them all."""
    blocks = np.split(weight_ih, gates)
    scale = float(np.abs(weight_ih).max())
    return [png_data_url(diverging(block, scale)) for block in blocks]


CONV_TEXT = {
    "filter_title": "First-layer filters",
    "filter_caption": "Red: positive weights, blue: negative, white: zero. Random at first; edge and stroke "
                      "detectors once trained.",
    "feature_title": "One test digit and its first-layer feature maps",
}
RECURRENT_TEXT = {
    "filter_title": "Input weights of each gate",
    "filter_caption": "One picture per gate: row j is what hidden unit j weighs in each of a row's 28 pixels. Red: "
                      "positive, blue: negative, white: zero. Random at first; strokes at some positions once "
                      "trained.",
    "feature_title": "One test digit and its memory, row by row",
}


def network_pictures(network: LabNetwork, graph: Graph, params: dict[str, np.ndarray],
                     x: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """What the page shows of the network now, for one digit ``x: (1, 1, 28, 28)``, and its logits ``(10,)``.

    A CNN: its first convolution's filters and the digit's first-layer feature maps (own min–max, grey). A
    recurrent network: its first layer's input weights per gate, and the digit's states after each row, one
    picture each (28 rows × H units, red positive, blue negative; the hidden state on the fixed scale ±1 of its
    tanh, the LSTM's cell state on its own), with the attention's weight of each row where there is one."""
    if network.recurrent is None:
        assert network.first_conv is not None and network.feature_node is not None
        trace = graph.forward(x, params, training=False, keep_caches=False, keep=[network.feature_node])
        maps = trace.activations[network.feature_node][0]
        weight = params[f"{network.first_conv}.weight"]
        return {"layout": "conv", **CONV_TEXT,
                "filter_layer": network.first_conv, "filters": filter_images(weight),
                "filter_labels": [f"filter {i}" for i in range(len(weight))],
                "feature_layer": network.feature_node, "feature_maps": [png_data_url(grey(m)) for m in maps],
                "feature_labels": [f"channel {i}" for i in range(len(maps))]}, trace.output[0]
    trace = graph.forward(x, params, training=False)  # caches kept: they hold every row's states
    node = network.recurrent
    states = graph.by_id[node].op.recorded(trace.caches[node])
    gates = network.gates
    pictures = [diverging(states["h_l0"][0], 1.0)]
    labels = ["hidden state h after each row (rows: the digit's rows; columns: the units)"]
    if "c_l0" in states:
        cell = states["c_l0"][0]
        pictures.append(diverging(cell, float(np.abs(cell).max())))
        labels.append("cell state c after each row (the LSTM's memory)")
    if network.attention is not None:
        weights = graph.by_id[network.attention].op.recorded(trace.caches[network.attention])["weights"][0]
        pictures.append((weights / weights.max() * 255).round().astype(np.uint8)[:, None])  # black: no weight
        labels.append("attention: each row's weight (white: the largest)")
    return {"layout": "recurrent", **RECURRENT_TEXT,
            "filter_layer": node, "filters": gate_weight_images(params[f"{node}.weight_ih_l0"], len(gates)),
            "filter_labels": [f"{gate}: {GATE_NAMES[gate]}" for gate in gates],
            "feature_layer": node, "feature_maps": [png_data_url(p) for p in pictures],
            "feature_labels": labels}, trace.output[0]


def network_of(settings: TrainingSettings) -> LabNetwork:
    """The network ``settings`` train (deterministic: every worker builds the same one)."""
    return build_network(settings.network, settings.depth, settings.batch_norm, settings.skip_connections,
                         settings.dropout, settings.dropout_p, settings.num_layers)


def worker_id() -> str:
    """This process, as the jobs' rows name it: host, pid and a random part (a pid can be reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def process_gone(worker: str) -> bool:
    """True when ``worker`` (from :func:`worker_id`) ran on this machine in another process that has ended."""
    host, _, rest = worker.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. EPERM: it exists, as another user
        return False
    return False


def job_summary(row: JobRow, epochs: list[EpochPoint] | None = None,
                batches: list[BatchPoint] | None = None) -> TrainingJob:
    """The API's view of a stored job (``owned`` False: it depends on who asks)."""
    return TrainingJob(
        id=row.id, name=row.name, status=row.status, settings=TrainingSettings(**row.settings), network=row.network,
        param_count=row.param_count, pretrained_params=list(row.pretrained_params), created_at=row.created_at,
        progress=JobProgress(**row.progress), epochs=epochs or [], batches=batches or [], error=row.error,
        model_id=row.model_id, events_url=f"/api/training/jobs/{row.id}/events")


def end_data(row: JobRow) -> dict[str, Any]:
    """The ``end`` event's data: the final summary without the curves (sent already) or ``owned`` (the stream
    is everyone's: it cannot say whose the job is)."""
    return job_summary(row).model_dump(exclude={"batches", "epochs", "owned"})


@dataclass
class LocalRun:
    """This worker's part of a job it trains: the network, the Trainer and its thread (gone with the process).

    ``progress`` is written by the job's thread only; it reaches the store with each event."""

    settings: TrainingSettings
    network: LabNetwork
    graph: Graph
    initial_params: dict[str, np.ndarray]
    progress: dict[str, Any]
    thread: threading.Thread | None = None
    trainer: Trainer | None = None
    params: dict[str, np.ndarray] | None = None  # the trained weights, once finished
    done: bool = False  # the thread has ended
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Stop before the next batch (thread-safe)."""
        self.cancel_requested.set()
        trainer = self.trainer
        if trainer is not None:
            trainer.cancel()


class TrainingJobState:
    """One job as the store had it when read (a snapshot), with this worker's run of it when it trains here."""

    def __init__(self, row: JobRow, manager: JobManager, run: LocalRun | None = None) -> None:
        self.row = row
        self.manager = manager
        self.run = run

    id = property(lambda self: self.row.id)
    name = property(lambda self: self.row.name)
    owner = property(lambda self: self.row.owner)
    status = property(lambda self: self.row.status)
    error = property(lambda self: self.row.error)
    created_at = property(lambda self: self.row.created_at)
    model_id = property(lambda self: self.row.model_id)
    pretrained_params = property(lambda self: self.row.pretrained_params)

    @property
    def finished(self) -> bool:
        return self.row.finished

    @property
    def settings(self) -> TrainingSettings:
        return TrainingSettings(**self.row.settings)

    @property
    def thread(self) -> threading.Thread | None:
        """The training thread, when this worker trains (or trained) the job."""
        return self.run.thread if self.run is not None else None

    @property
    def network(self) -> LabNetwork:
        return self.run.network if self.run is not None else network_of(self.settings)

    @property
    def graph(self) -> Graph:
        return self.run.graph if self.run is not None else Graph(self.network.spec)

    @property
    def initial_params(self) -> dict[str, np.ndarray] | None:
        """The weights training started from (known to the worker that trains it only)."""
        return self.run.initial_params if self.run is not None else None

    @property
    def params(self) -> dict[str, np.ndarray] | None:
        """The trained weights once done (from ``<data dir>/training/<id>/weights.npz`` on other workers)."""
        if self.run is not None and self.run.params is not None:
            return self.run.params
        return self.manager.trained_params(self.id) if self.status == "done" else None

    @property
    def messages(self) -> list[Message]:
        """Every event kept, in order."""
        return self.manager.messages_after(self.id, -1)[0]

    def messages_after(self, seq: int) -> tuple[list[Message], bool]:
        """The events after ``seq`` and whether the job has finished (read together)."""
        return self.manager.messages_after(self.id, seq)

    def summary(self) -> TrainingJob:
        curves = self.manager.curves(self.id)
        epochs = [EpochPoint(**m.data) for m in curves if m.event == "epoch"]
        batches = [BatchPoint(**{k: m.data[k] for k in BatchPoint.model_fields}) for m in curves
                   if m.event == "batch"]
        return job_summary(self.row, epochs, batches)


def default_name(s: TrainingSettings) -> str:
    first = {"classic": "classic", "deep": f"deep {s.depth}", "lstm": "LSTM", "gru_attention": "GRU + attention"}
    parts = [first[s.network] + (f" × {s.num_layers}" if s.network in RECURRENT and s.num_layers > 1 else "")]
    parts += [label for label, on in (("BN", s.batch_norm), ("skip", s.skip_connections), ("dropout", s.dropout),
                                      ("L2", s.l2), ("pre-trained", s.pretrained)) if on]
    parts.append(f"{'Adam' if s.optimizer == 'adam' else 'SGD'} lr {s.lr:g}")
    return ", ".join(parts)


class JobManager:
    """Starts, tracks, cancels and forgets training jobs; see the module docstring.

    ``data_dir``: where ``state.sqlite3`` and the trained weights live (None: a private temporary directory,
    removed at :meth:`shutdown`; for tests and scripts). A data directory that cannot be written does not
    stop the server: each training request then answers 503/507 saying why. ``store``: another store with
    ``JobStore``'s methods (Redis: ``app.services.training_queue``) instead of ``<data dir>/state.sqlite3``."""

    def __init__(self, max_running: int = 2, max_kept: int = 50,
                 pretrained_source: PretrainedSource = shipped_weights,
                 data_loader: Callable[[str, int], tuple[np.ndarray, np.ndarray]] | None = None,
                 data_dir: Path | None = None, stale_seconds: float = STALE_SECONDS,
                 beat_seconds: float = BEAT_SECONDS, store: Any = None) -> None:
        self.max_running = max_running
        self.max_kept = max_kept
        self.pretrained_source = pretrained_source
        self.data_loader = data_loader or (lambda split, limit: load_mnist(split, limit=limit))
        self._temporary_dir = None if data_dir is not None else Path(tempfile.mkdtemp(prefix="cnn-vis-jobs-"))
        self.data_dir = Path(data_dir) if data_dir is not None else self._temporary_dir
        self.stale_seconds = stale_seconds
        self.beat_seconds = beat_seconds
        self.worker = worker_id()
        self._store: JobStore | None = store
        self._runs: dict[str, LocalRun] = {}  # the jobs this worker trains or trained
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None
        self._closed = threading.Event()
        try:
            self._interrupt_dead_workers()
        except Exception as exc:  # e.g. a read-only data directory: the rest of the app still serves
            log.warning("the training-job store cannot be opened now (%s); training requests will say why", exc)

    @property
    def store(self) -> JobStore:
        """The job store, opened on first use (503/507 when the data directory refuses it)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = JobStore(self.data_dir / FILENAME)
        return self._store

    def weights_path(self, job_id: str) -> Path:
        return self.data_dir / "training" / job_id / "weights.npz"

    # --- requests ------------------------------------------------------------------------------
    def _prepare(self, settings: TrainingSettings) -> tuple[LabNetwork, Graph, dict[str, np.ndarray], list[str]]:
        """The network ``settings`` train, its graph, the weights training starts from and the names of those
        copied from the shipped pre-trained ones (422 on bad settings; deterministic: every process builds the
        same)."""
        try:
            network = network_of(settings)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from exc
        graph = Graph(network.spec)
        params = graph.init_params(settings.seed)
        copied: list[str] = []
        if settings.pretrained:
            if network.pretrained_from is None:
                raise ApiError(422, f"pretrained needs network 'classic', 'lstm' or 'gru_attention': no pre-trained "
                                    f"weights are shipped for the {network.family} network")
            try:
                source = self.pretrained_source(network.pretrained_from)
            except FileNotFoundError as exc:
                raise ApiError(503, str(exc)) from exc
            params, copied = transfer(graph, params, source)
            if not copied:
                raise ApiError(422, f"no layer of this network matches the shipped {network.pretrained_from} "
                                    "weights: turn pretrained off")
        return network, graph, params, copied

    def _new_row_worker(self) -> str:
        """Who a new job's row says runs it: this process (it starts the thread)."""
        return self.worker

    def start(self, settings: TrainingSettings, owner: str | None = None,
              max_per_owner: int | None = None) -> TrainingJobState:
        """Validate, then start a job in a background thread (422 on bad settings, 429 over a limit).

        ``owner``: whose job it is (a token hash); ``max_per_owner``: how many of their jobs may run at once
        (None: no per-owner limit, e.g. for the lecturer). Both limits count every worker's jobs."""
        network, graph, params, copied = self._prepare(settings)
        progress = {"epochs": settings.epochs, "steps": settings.epochs * -(-settings.train_size //
                                                                           settings.batch_size)}
        run = LocalRun(settings, network, graph, params, dict(progress))
        with store_errors("starting the training job"):
            self._interrupt_stale()
            for _ in range(5):  # an id another worker took meanwhile: draw again
                now = time.time()
                row = JobRow(id=secrets.token_hex(4), owner=owner, name=settings.name or default_name(settings),
                             settings=settings.model_dump(mode="json"), network=network.description,
                             param_count=graph.param_count(), pretrained_params=copied, status="running", error=None,
                             progress=progress, model_id=None, cancel=False, worker=self._new_row_worker(),
                             heartbeat=now,
                             created=now, created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                             finished_at=None, last_seq=-1)
                try:
                    refusal = self.store.admit(row, self.max_running, max_per_owner, now - self.stale_seconds)
                    break
                except JobIdTakenError:
                    continue
            else:
                raise ApiError(503, "could not find a free job id: try again")
        if refusal is not None and refusal.scope == "server":
            raise ApiError(429, f"{refusal.running} training jobs are running and this server trains at most "
                                f"{refusal.limit} at once: wait for one to finish or cancel one "
                                "(DELETE /api/training/jobs/{id})", running=refusal.running, limit=refusal.limit)
        if refusal is not None:
            mine = refusal.running
            raise ApiError(429, f"you have {mine} training job{'s' if mine != 1 else ''} running, the most one "
                                f"person may run at once ({refusal.limit}): wait for it to finish or stop it "
                                "(the Stop button, or DELETE /api/training/jobs/{id})",
                           running=mine, limit=refusal.limit)
        local = self._launch(row, run)
        self._forget_old()
        return TrainingJobState(row, self, local)

    def _launch(self, row: JobRow, run: LocalRun) -> LocalRun | None:
        """Start training an admitted job: here, in a thread of this process. Returns the run when it is local."""
        run.thread = threading.Thread(target=self._run, args=(row.id, run), name=f"training-{row.id}", daemon=True)
        with self._lock:
            self._runs[row.id] = run
        run.thread.start()
        self._ensure_monitor()
        return run

    def get(self, job_id: str) -> TrainingJobState:
        """The job as stored now, from whichever worker started it (404 naming the known ids)."""
        with store_errors("reading the training job"):
            row = self.store.get(job_id)
            if row is None:
                raise not_found("training job", job_id, [r.id for r in self.store.jobs()])
            row = self._check_alive(row)
        with self._lock:
            run = self._runs.get(job_id)
        return TrainingJobState(row, self, run)

    def jobs(self) -> list[TrainingJobState]:
        """Every worker's jobs, newest first."""
        with store_errors("listing the training jobs"):
            self._interrupt_stale()
            rows = self.store.jobs()
        with self._lock:
            runs = dict(self._runs)
        return [TrainingJobState(row, self, runs.get(row.id)) for row in rows]

    def running(self) -> int:
        """Jobs training now, on every worker."""
        with store_errors("counting the training jobs"):
            self._interrupt_stale()
            return len(self.store.running())

    def cancel(self, job_id: str) -> TrainingJobState:
        """Ask a running job to stop before its next batch, whichever worker trains it (a finished job is left
        as it is). The worker that trains it stops it at once when it is this one, else within a heartbeat."""
        self.get(job_id)
        with store_errors("stopping the training job"):
            self.store.request_cancel(job_id)
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None:
            run.stop()
        return self.get(job_id)

    def set_model(self, job_id: str, model_id: str) -> None:
        """Record that the job's network was opened as model ``model_id``."""
        with store_errors("recording the job's model"):
            self.store.set_model(job_id, model_id)

    def messages_after(self, job_id: str, seq: int) -> tuple[list[Message], bool]:
        """The job's events after ``seq`` and whether it has finished, read in one snapshot (a job whose worker
        died is marked interrupted first, so its stream ends)."""
        with store_errors("reading the job's events"):
            messages, row = self.store.messages_and_row(job_id, seq)
            if row is not None and not row.finished and row.heartbeat < time.time() - self.stale_seconds:
                self._check_alive(row)
                messages, row = self.store.messages_and_row(job_id, seq)
        return messages, row is None or row.finished

    async def wait_for_events(self, job_id: str, after: int, poll: float) -> None:
        """Wait until the job may have events after ``after``: here, ``poll`` seconds (the store is polled);
        Redis wakes up as soon as one is written."""
        await asyncio.sleep(poll)

    def curves(self, job_id: str) -> list[Message]:
        """The job's ``epoch`` and ``batch`` events, in order."""
        with store_errors("reading the job's curves"):
            return self.store.messages(job_id, kinds=("epoch", "batch"))

    def trained_params(self, job_id: str) -> dict[str, np.ndarray] | None:
        """The weights a finished job saved (None when they are missing or unreadable)."""
        try:
            return read_weights(self.weights_path(job_id))
        except (OSError, WeightsError):
            return None

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel this worker's jobs and wait for their threads and the heartbeat to end (tests; server shutdown)."""
        with self._lock:
            runs = list(self._runs.items())
        for job_id, run in runs:
            if not run.done:
                run.stop()
                with contextlib.suppress(Exception):
                    self.store.request_cancel(job_id)
        for _, run in runs:
            if run.thread is not None:
                run.thread.join(timeout)
        self._closed.set()
        with self._lock:
            monitor = self._monitor
        if monitor is not None:
            monitor.join(timeout)
        if self._store is not None:
            self._store.close()
        if self._temporary_dir is not None:
            shutil.rmtree(self._temporary_dir, ignore_errors=True)

    # --- liveness ------------------------------------------------------------------------------
    def _check_alive(self, row: JobRow) -> JobRow:
        """``row``, or the row after marking it interrupted when its worker has not been heard from for too long."""
        alive_since = time.time() - self.stale_seconds
        if row.finished or row.heartbeat >= alive_since:
            return row
        if self.store.finish(row.id, "failed", INTERRUPTED, end_data, alive_before=alive_since):
            log.warning("training job %s was interrupted: its worker (%s) stopped", row.id, row.worker)
        return self.store.get(row.id) or row

    def _interrupt_stale(self) -> None:
        for row in self.store.stale(time.time() - self.stale_seconds):
            self._check_alive(row)

    def _interrupt_dead_workers(self) -> None:
        """At start-up: mark at once the running jobs of workers on this machine whose process has ended."""
        for row in self.store.running():
            if process_gone(row.worker) and self.store.finish(row.id, "failed", INTERRUPTED, end_data):
                log.warning("training job %s was interrupted: its worker (%s) is gone", row.id, row.worker)

    def _ensure_monitor(self) -> None:
        with self._lock:
            if self._monitor is None and not self._closed.is_set():
                self._monitor = threading.Thread(target=self._beat, name="jobs-heartbeat", daemon=True)
                self._monitor.start()

    def _beat(self) -> None:
        """While this worker trains: mark its jobs alive, and stop those cancelled elsewhere (or no longer running)."""
        while True:
            with self._lock:
                ids = [job_id for job_id, run in self._runs.items() if not run.done]
                if not ids or self._closed.is_set():
                    self._monitor = None
                    return
            try:
                stop = self.store.beat(ids)
            except Exception as exc:  # a busy or failing store: try again at the next beat
                log.warning("could not mark training jobs alive: %s", exc)
                stop = set()
            for job_id in stop:
                with self._lock:
                    run = self._runs.get(job_id)
                if run is not None:
                    run.stop()
            self._closed.wait(self.beat_seconds)

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond ``max_kept`` (every worker's), with their saved weights."""
        try:
            with store_errors("forgetting old training jobs"):
                removed = self.store.prune(self.max_kept)
        except Exception as exc:
            log.warning("could not forget old training jobs: %s", exc)
            return
        for job_id in removed:
            with self._lock:
                self._runs.pop(job_id, None)
            shutil.rmtree(self.data_dir / "training" / job_id, ignore_errors=True)

    # --- the job's thread ---------------------------------------------------------------------
    def _post(self, job_id: str, run: LocalRun, event: str, data: dict[str, Any]) -> None:
        """Record an event and the progress; a job that no longer runs in the store (cancelled by another worker
        and already marked, or interrupted) is stopped."""
        if self.store.post(job_id, event, data, dict(run.progress)) is None:
            run.stop()

    def _run(self, job_id: str, run: LocalRun) -> None:
        run_in_background()  # people waiting on a request get the cores first
        status, error = "done", None
        try:
            s = run.settings
            train = self.data_loader("train", s.train_size)
            test = self.data_loader("test", s.test_size)
            config = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, optimizer=s.optimizer, lr=s.lr,
                                 momentum=0.9, weight_decay=s.weight_decay if s.l2 else 0.0, seed=s.seed)
            trainer = Trainer(run.graph, train, test, config, params=run.initial_params)
            run.trainer = trainer
            if run.cancel_requested.is_set():
                trainer.cancel()
            sample = test[0][:1], int(test[1][0])
            self._before_training(job_id, run, trainer, train, test, sample)
            last_point = last_images = time.perf_counter()
            for event in trainer.run():
                now = time.perf_counter()
                if event.kind == "batch":
                    self._record_progress(run, event)
                    if event.batch == event.batches or now - last_point >= BATCH_POINT_SECONDS:
                        last_point = now
                        self._record_batch(job_id, run, event)
                    if now - last_images >= IMAGES_SECONDS:
                        last_images = now
                        self._record_images(job_id, run, trainer, sample, event)
                elif event.kind == "epoch":
                    self._record_epoch(job_id, run, event)
                    last_images = now
                    self._record_images(job_id, run, trainer, sample, event)
                elif event.kind == "cancelled":
                    self._record_progress(run, event)
                    status = "cancelled"
            if status == "done":
                assert trainer.params is not None
                self._keep_weights(job_id, trainer.params)
                run.params = trainer.params
        except FloatingPointError as exc:
            status, error = "failed", str(exc)
        except StorageError as exc:  # the data directory refused the weights (full, read-only)
            status, error = "failed", exc.message
        except (sqlite3.Error, OSError, redis.exceptions.RedisError) as exc:
            log.exception("training job %s could not record its progress", job_id)
            status, error = "failed", (f"training stopped: its progress could not be recorded ({exc}); ask the "
                                       "lecturer or admin to check the server's data directory")
        except Exception as exc:  # a bug: say so on the page, and log it
            log.exception("training job %s failed", job_id)
            status, error = "failed", (f"training stopped with an internal error ({type(exc).__name__}); this is a "
                                       "bug in cnn-visualiser, please report it (the server log has the details)")
        finally:
            run.trainer = None
            try:
                self.store.finish(job_id, status, error, end_data, progress=dict(run.progress))
            except Exception:  # the row stays "running" until its heartbeat goes stale, then reads "interrupted"
                log.exception("training job %s could not record its end", job_id)
            run.done = True

    def _keep_weights(self, job_id: str, params: dict[str, np.ndarray]) -> None:
        """Write the trained weights where every worker finds them, atomically (all or nothing)."""
        path = self.weights_path(job_id)
        with writing("keeping the trained network's weights"):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".weights-{secrets.token_hex(4)}.npz")
            try:
                save_weights(partial, params)
                os.replace(partial, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()

    def _before_training(self, job_id: str, run: LocalRun, trainer: Trainer, train: tuple[np.ndarray, np.ndarray],
                         test: tuple[np.ndarray, np.ndarray], sample: tuple[np.ndarray, int]) -> None:
        """Epoch 0: the untrained (or pre-trained) network's loss and accuracy, and its pictures."""
        assert trainer.params is not None
        loss, accuracy = evaluate(run.graph, trainer.params, train[0][:EPOCH0_TRAIN_SAMPLES],
                                  train[1][:EPOCH0_TRAIN_SAMPLES])
        test_loss, test_accuracy = evaluate(run.graph, trainer.params, *test)
        point = EpochPoint(epoch=0, loss=finite(loss), accuracy=accuracy, test_loss=finite(test_loss),
                           test_accuracy=test_accuracy, elapsed=0.0)
        self._post(job_id, run, "epoch", point.model_dump())
        self._record_images(job_id, run, trainer, sample, None)

    @staticmethod
    def _record_progress(run: LocalRun, event: Progress) -> None:
        run.progress.update(epoch=event.epoch, step=event.step, elapsed=event.elapsed, eta=event.eta)

    def _record_batch(self, job_id: str, run: LocalRun, event: Progress) -> None:
        if event.loss is None or event.accuracy is None:
            return
        point = BatchPoint(step=event.step, x=event.epoch - 1 + event.batch / event.batches, loss=event.loss,
                           accuracy=event.accuracy)
        self._post(job_id, run, "batch", {**point.model_dump(), "epoch": event.epoch, "batch": event.batch,
                                          "batches": event.batches, "lr": event.lr, **run.progress})

    def _record_epoch(self, job_id: str, run: LocalRun, event: Progress) -> None:
        point = EpochPoint(epoch=event.epoch, loss=finite(event.loss), accuracy=event.accuracy,
                           test_loss=finite(event.test_loss), test_accuracy=event.test_accuracy, elapsed=event.elapsed)
        run.progress.update(epoch=event.epoch, step=event.step, elapsed=event.elapsed, eta=event.eta)
        self._post(job_id, run, "epoch", point.model_dump())

    def _record_images(self, job_id: str, run: LocalRun, trainer: Trainer, sample: tuple[np.ndarray, int],
                       event: Progress | None) -> None:
        """The pictures of the weights as they are now (the Trainer is paused) and one digit's prediction."""
        params = trainer.params
        assert params is not None
        x, label = sample
        pictures, logits = network_pictures(run.network, run.graph, params, x)
        probabilities = softmax_forward(logits.astype(np.float64)[None])[0][0]
        self._post(job_id, run, "images", {
            "step": event.step if event else 0,
            "x": (event.epoch - 1 + event.batch / event.batches) if event and event.epoch else 0.0,
            **pictures,
            "sample": {"image": png_data_url(grey(x[0, 0])), "label": label,
                       "predicted": int(probabilities.argmax()),
                       "probabilities": [round(p, 4) if (p := finite(q)) is not None else None
                                         for q in probabilities]},
        })

    # --- the finished network as a model -------------------------------------------------------
    def bundle_of(self, job: TrainingJobState) -> ModelBundle:
        """The trained network as a model bundle (409 unless the job finished training and its weights are kept)."""
        if job.status != "done":
            raise ApiError(409, f"training job {job.id} is {job.status}: only a job that finished training can be "
                                "opened as a model" + (" (wait for it to finish)" if job.status == "running" else
                                                       "; start a new job"))
        params = job.params
        if params is None:
            raise ApiError(409, f"the trained weights of training job {job.id} are gone from the server's data "
                                "directory (training/<id>/weights.npz), so it cannot be opened as a model: train it "
                                "again (same settings and seed give the same network)")
        s = job.settings
        network = job.network
        return ModelBundle(
            id=f"trained-{job.id}", name=f"Trained in the lab: {job.name}", task="digit classification",
            graph=job.graph, params=params, labels=list(LABELS), preprocessing=PREPROCESSING,
            source=f"trained in the training lab (job {job.id}, {s.epochs} epochs on {s.train_size} digits, "
                   f"seed {s.seed}); data: {DATA_SOURCE}",
            description=network.description, cam_layer=network.cam_layer, extra={"training_job": job.id})
