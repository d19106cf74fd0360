"""Training jobs: the engine's Trainer in background threads, bounded, cancellable, streamed as events.

A :class:`JobManager` starts at most ``max_running`` jobs at once (one more is refused with 429) and keeps
finished jobs in memory until the process ends (the oldest finished ones go when more than ``max_kept``
are kept). Each job records an append-only list of :class:`Message` s, which the events endpoint
streams (``batch``, ``epoch``, ``images``, ``end``); only the latest ``images`` message is kept.

Everything NumPy runs in the job's thread. The pictures (first-layer filters, one sample's feature maps)
are rendered there while the Trainer is paused at a progress event, so they read consistent weights.
Jobs and their trained networks belong to one server process: with several workers, a job is only
visible to the worker that started it. Each job records its owner (a token hash, ``app.services.owners``);
at most ``max_per_owner`` of one owner's jobs run at once.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.errors import ApiError, not_found
from app.schemas.training import BatchPoint, EpochPoint, JobProgress, TrainingJob, TrainingSettings
from app.services.overlay import png_data_url
from app.services.training_networks import LabNetwork, PretrainedSource, build_network, shipped_weights, transfer
from engine.datasets.mnist import load_mnist
from engine.graph import Graph
from engine.layers.softmax import softmax_forward
from engine.models.bundle import ModelBundle
from engine.models.digits import DATA_SOURCE, LABELS, PREPROCESSING
from engine.training import Progress, TrainConfig, Trainer, evaluate

log = logging.getLogger("cnn_visualiser.training")

BATCH_POINT_SECONDS = 0.1  # at most ~10 training-curve points a second (and the last batch of every epoch)
IMAGES_SECONDS = 0.75  # pictures at most this often (and after every epoch)
EPOCH0_TRAIN_SAMPLES = 1000  # epoch 0's training loss is measured on this many training digits


@dataclass
class Message:
    """One server-sent event: ``seq`` is its id (for Last-Event-ID), ``event`` its type, ``data`` its JSON."""

    seq: int
    event: str
    data: dict[str, Any]


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


@dataclass
class TrainingJobState:
    """One job. Fields written by its thread are read by request threads under ``lock``."""

    id: str
    name: str
    settings: TrainingSettings
    network: LabNetwork
    graph: Graph
    initial_params: dict[str, np.ndarray]
    pretrained_params: list[str]
    created_at: str
    owner: str | None = None  # the token hash of whoever started it
    status: str = "running"
    error: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    epochs: list[EpochPoint] = field(default_factory=list)
    batches: list[BatchPoint] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    params: dict[str, np.ndarray] | None = None  # the trained weights, once finished
    model_id: str | None = None
    thread: threading.Thread | None = None
    trainer: Trainer | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: itertools.count = field(default_factory=itertools.count)

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def post(self, event: str, data: dict[str, Any]) -> None:
        """Append a message for the event streams (the previous ``images`` message is dropped)."""
        with self.lock:
            if event == "images":
                self.messages = [m for m in self.messages if m.event != "images"]
            self.messages.append(Message(next(self._seq), event, data))

    def messages_after(self, seq: int) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.seq > seq]

    def summary(self) -> TrainingJob:
        with self.lock:
            return TrainingJob(
                id=self.id, name=self.name, status=self.status, settings=self.settings,
                network=self.network.description, param_count=self.graph.param_count(),
                pretrained_params=list(self.pretrained_params), created_at=self.created_at,
                progress=JobProgress(**self.progress), epochs=list(self.epochs), batches=list(self.batches),
                error=self.error, model_id=self.model_id, events_url=f"/api/training/jobs/{self.id}/events")


def default_name(s: TrainingSettings) -> str:
    parts = [s.network if s.network == "classic" else f"deep {s.depth}"]
    parts += [label for label, on in (("BN", s.batch_norm), ("skip", s.skip_connections), ("dropout", s.dropout),
                                      ("L2", s.l2), ("pre-trained", s.pretrained)) if on]
    parts.append(f"{'Adam' if s.optimizer == 'adam' else 'SGD'} lr {s.lr:g}")
    return ", ".join(parts)


class JobManager:
    """Starts, tracks, cancels and forgets training jobs; see the module docstring."""

    def __init__(self, max_running: int = 2, max_kept: int = 50,
                 pretrained_source: PretrainedSource = shipped_weights,
                 data_loader: Callable[[str, int], tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.max_running = max_running
        self.max_kept = max_kept
        self.pretrained_source = pretrained_source
        self.data_loader = data_loader or (lambda split, limit: load_mnist(split, limit=limit))
        self._jobs: dict[str, TrainingJobState] = {}
        self._lock = threading.Lock()

    # --- requests ------------------------------------------------------------------------------
    def start(self, settings: TrainingSettings, owner: str | None = None,
              max_per_owner: int | None = None) -> TrainingJobState:
        """Validate, then start a job in a background thread (422 on bad settings, 429 over a limit).

        ``owner``: whose job it is (a token hash); ``max_per_owner``: how many of their jobs may run at once
        (None: no per-owner limit, e.g. for the lecturer)."""
        try:
            network = build_network(settings.network, settings.depth, settings.batch_norm,
                                    settings.skip_connections, settings.dropout, settings.dropout_p)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from exc
        graph = Graph(network.spec)
        params = graph.init_params(settings.seed)
        copied: list[str] = []
        if settings.pretrained:
            if network.pretrained_from is None:
                raise ApiError(422, "pretrained needs network 'classic': pre-trained weights are shipped for the "
                                    "classic network only")
            try:
                source = self.pretrained_source(network.pretrained_from)
            except FileNotFoundError as exc:
                raise ApiError(503, str(exc)) from exc
            params, copied = transfer(graph, params, source)
            if not copied:
                raise ApiError(422, f"no layer of this network matches the shipped {network.pretrained_from} "
                                    "weights: turn pretrained off")
        with self._lock:
            running = sum(1 for j in self._jobs.values() if not j.finished)
            if running >= self.max_running:
                raise ApiError(429, f"{running} training jobs are running and this server trains at most "
                                    f"{self.max_running} at once: wait for one to finish or cancel one "
                                    "(DELETE /api/training/jobs/{id})", running=running, limit=self.max_running)
            mine = sum(1 for j in self._jobs.values() if not j.finished and owner is not None and j.owner == owner)
            if max_per_owner is not None and mine >= max_per_owner:
                raise ApiError(429, f"you have {mine} training job{'s' if mine != 1 else ''} running, the most one "
                                    f"person may run at once ({max_per_owner}): wait for it to finish or stop it "
                                    "(the Stop button, or DELETE /api/training/jobs/{id})",
                               running=mine, limit=max_per_owner)
            job = TrainingJobState(
                id=secrets.token_hex(4), name=settings.name or default_name(settings), settings=settings,
                network=network, graph=graph, initial_params=params, pretrained_params=copied,
                created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), owner=owner,
                progress={"epochs": settings.epochs, "steps": settings.epochs * -(-settings.train_size //
                                                                                    settings.batch_size)})
            self._jobs[job.id] = job
            self._forget_old()
            job.thread = threading.Thread(target=self._run, args=(job,), name=f"training-{job.id}", daemon=True)
            job.thread.start()
        return job

    def get(self, job_id: str) -> TrainingJobState:
        with self._lock:
            job = self._jobs.get(job_id)
            known = list(self._jobs)
        if job is None:
            raise not_found("training job", job_id, known)
        return job

    def jobs(self) -> list[TrainingJobState]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._jobs.values()))

    def running(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if not j.finished)

    def cancel(self, job_id: str) -> TrainingJobState:
        """Ask a running job to stop before its next batch (a finished job is left as it is)."""
        job = self.get(job_id)
        job.cancel_requested.set()
        trainer = job.trainer
        if trainer is not None:
            trainer.cancel()
        return job

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel every job and wait for the threads to end (tests; server shutdown)."""
        for job in self.jobs():
            self.cancel(job.id)
        for job in self.jobs():
            if job.thread is not None:
                job.thread.join(timeout)

    def _forget_old(self) -> None:
        """Called under ``_lock``: drop the oldest finished jobs beyond ``max_kept``."""
        finished = [j.id for j in self._jobs.values() if j.finished]
        for job_id in finished[:max(0, len(self._jobs) - self.max_kept)]:
            del self._jobs[job_id]

    # --- the job's thread ---------------------------------------------------------------------
    def _run(self, job: TrainingJobState) -> None:
        status, error = "done", None
        try:
            s = job.settings
            train = self.data_loader("train", s.train_size)
            test = self.data_loader("test", s.test_size)
            config = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, optimizer=s.optimizer, lr=s.lr,
                                 momentum=0.9, weight_decay=s.weight_decay if s.l2 else 0.0, seed=s.seed)
            trainer = Trainer(job.graph, train, test, config, params=job.initial_params)
            job.trainer = trainer
            if job.cancel_requested.is_set():
                trainer.cancel()
            sample = test[0][:1], int(test[1][0])
            self._before_training(job, trainer, train, test, sample)
            last_point = last_images = time.perf_counter()
            for event in trainer.run():
                now = time.perf_counter()
                if event.kind == "batch":
                    self._record_progress(job, event)
                    if event.batch == event.batches or now - last_point >= BATCH_POINT_SECONDS:
                        last_point = now
                        self._record_batch(job, event)
                    if now - last_images >= IMAGES_SECONDS:
                        last_images = now
                        self._record_images(job, trainer, sample, event)
                elif event.kind == "epoch":
                    self._record_epoch(job, event)
                    last_images = now
                    self._record_images(job, trainer, sample, event)
                elif event.kind == "cancelled":
                    self._record_progress(job, event)
                    status = "cancelled"
            if status == "done":
                job.params = trainer.params
        except FloatingPointError as exc:
            status, error = "failed", str(exc)
        except Exception as exc:  # a bug: say so on the page, and log it
            log.exception("training job %s failed", job.id)
            status, error = "failed", (f"training stopped with an internal error ({type(exc).__name__}); this is a "
                                       "bug in cnn-visualiser, please report it (the server log has the details)")
        finally:
            with job.lock:
                job.status, job.error = status, error
                job.trainer = None
            # "owned" depends on who reads the stream: the summary cannot know, so it is left out
            job.post("end", job.summary().model_dump(exclude={"batches", "epochs", "owned"}))

    def _before_training(self, job: TrainingJobState, trainer: Trainer, train: tuple[np.ndarray, np.ndarray],
                         test: tuple[np.ndarray, np.ndarray], sample: tuple[np.ndarray, int]) -> None:
        """Epoch 0: the untrained (or pre-trained) network's loss and accuracy, and its pictures."""
        assert trainer.params is not None
        loss, accuracy = evaluate(job.graph, trainer.params, train[0][:EPOCH0_TRAIN_SAMPLES],
                                  train[1][:EPOCH0_TRAIN_SAMPLES])
        test_loss, test_accuracy = evaluate(job.graph, trainer.params, *test)
        point = EpochPoint(epoch=0, loss=finite(loss), accuracy=accuracy, test_loss=finite(test_loss),
                           test_accuracy=test_accuracy, elapsed=0.0)
        with job.lock:
            job.epochs.append(point)
        job.post("epoch", point.model_dump())
        self._record_images(job, trainer, sample, None)

    def _record_progress(self, job: TrainingJobState, event: Progress) -> None:
        with job.lock:
            job.progress.update(epoch=event.epoch, step=event.step, elapsed=event.elapsed, eta=event.eta)

    def _record_batch(self, job: TrainingJobState, event: Progress) -> None:
        if event.loss is None or event.accuracy is None:
            return
        point = BatchPoint(step=event.step, x=event.epoch - 1 + event.batch / event.batches, loss=event.loss,
                           accuracy=event.accuracy)
        with job.lock:
            job.batches.append(point)
            progress = dict(job.progress)
        job.post("batch", {**point.model_dump(), "epoch": event.epoch, "batch": event.batch,
                           "batches": event.batches, "lr": event.lr, **progress})

    def _record_epoch(self, job: TrainingJobState, event: Progress) -> None:
        point = EpochPoint(epoch=event.epoch, loss=finite(event.loss), accuracy=event.accuracy,
                           test_loss=finite(event.test_loss), test_accuracy=event.test_accuracy, elapsed=event.elapsed)
        with job.lock:
            job.epochs.append(point)
            job.progress.update(epoch=event.epoch, step=event.step, elapsed=event.elapsed, eta=event.eta)
        job.post("epoch", point.model_dump())

    def _record_images(self, job: TrainingJobState, trainer: Trainer, sample: tuple[np.ndarray, int],
                       event: Progress | None) -> None:
        """Filters and feature maps of the weights as they are now (the Trainer is paused)."""
        params = trainer.params
        assert params is not None
        network = job.network
        x, label = sample
        trace = job.graph.forward(x, params, training=False, keep_caches=False, keep=[network.feature_node])
        logits = trace.activations[job.graph.output_id][0].astype(np.float64)
        probabilities = softmax_forward(logits[None])[0][0]
        maps = trace.activations[network.feature_node][0]
        job.post("images", {
            "step": event.step if event else 0,
            "x": (event.epoch - 1 + event.batch / event.batches) if event and event.epoch else 0.0,
            "filter_layer": network.first_conv,
            "filters": filter_images(params[f"{network.first_conv}.weight"]),
            "feature_layer": network.feature_node,
            "feature_maps": [png_data_url(grey(m)) for m in maps],
            "sample": {"image": png_data_url(grey(x[0, 0])), "label": label,
                       "predicted": int(probabilities.argmax()),
                       "probabilities": [round(p, 4) if (p := finite(q)) is not None else None
                                         for q in probabilities]},
        })

    # --- the finished network as a model -------------------------------------------------------
    def bundle_of(self, job: TrainingJobState) -> ModelBundle:
        """The trained network as a model bundle (409 unless the job finished training)."""
        if job.status != "done" or job.params is None:
            raise ApiError(409, f"training job {job.id} is {job.status}: only a job that finished training can be "
                                "opened as a model" + (" (wait for it to finish)" if job.status == "running" else
                                                       "; start a new job"))
        s = job.settings
        return ModelBundle(
            id=f"trained-{job.id}", name=f"Trained in the lab: {job.name}", task="digit classification",
            graph=job.graph, params=job.params, labels=list(LABELS), preprocessing=PREPROCESSING,
            source=f"trained in the training lab (job {job.id}, {s.epochs} epochs on {s.train_size} digits, "
                   f"seed {s.seed}); data: {DATA_SOURCE}; kept in memory until the server restarts",
            description=job.network.description, cam_layer=job.network.cam_layer,
            extra={"training_job": job.id})
