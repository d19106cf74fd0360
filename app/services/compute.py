"""Bounds shared by every worker on the machine: compute slots in two lanes, and a budget for decoding images.

Each pass holds every activation of the model (about 80 MB for EfficientNet-Lite0 at 224×224), and a
decoded upload can take hundreds of MB, so without bounds memory would grow with the load. The bounds
are lock files under ``<data_dir>/slots/`` (``app.services.slots``): every worker process of the
deployment (``--workers N``) shares them, and a worker that dies gives its slots back with its file
descriptors.

- **Three lanes.** Work under ``light_gmacs`` (billions of multiply-accumulates: a digit model's forward
  pass) runs in the *light* lane (``light_slots`` slots); everything else, and ``with compute():`` without
  an amount, in the *heavy* lane (``slots`` slots). Background jobs (many-pass attention maps) take the
  *background* lane (``background_slots``, through ``with compute.background():``) and run at a lower CPU
  priority (``app.core.cpu.run_in_background``). A 5 ms digit prediction never queues behind a 20 s
  Score-CAM on EfficientNet, and a photo's prediction never waits for a background job's passes: the lanes
  do not share slots.
- **Importing.** ``with compute.importing():`` holds the machine's one *import* slot while a big ONNX upload is
  imported: an import holds about three copies of the model's weights at its peak (VGG-16: 1.7 GiB,
  ``scripts/bench_model_upload.py``), so a class uploading at the same moment imports one model at a time.
- **Decoding.** ``with compute.decoding(nbytes):`` holds ``nbytes`` (estimated from the image header by
  ``app.imaging.decode_cost``) of ``decode_budget`` bytes while an image is decoded; one image may take
  at most ``decoding.limit_bytes`` (more: 413, before decoding). Images under ``FREE_DECODE_BYTES`` are
  not counted (they cannot add up to much, and cheap requests should never wait for the budget).

- **Shorter work first.** Waiters of a lane are served in order across every worker (``app.services.slots``), and
  in the heavy lane a pass of ``g`` GMACs queues as if it had arrived ``g × QUEUE_S_PER_GMAC`` seconds later (at
  most ``MAX_QUEUE_HANDICAP_S``; work of unknown size takes the most). A photo's prediction (0.4 GMACs on
  EfficientNet-Lite0) then goes before the Grad-CAMs (a forward and a backward pass) that arrived up to a few
  seconds before it, as shortest-job-first scheduling would, and no work waits forever: after its handicap, it
  is first come, first served.

A request that waits longer than ``wait_s`` for a compute slot (``decode_wait_s`` for the decode budget)
gets a 503.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.core.config import MB, Settings
from app.errors import ApiError
from app.services.slots import SlotPool
from engine.attention.budget import graph_macs
from engine.graph import Graph

#: the decode budget is counted in units of this many bytes (one lock file each)
DECODE_UNIT_BYTES = 8 * MB
#: decodings estimated under this take nothing from the budget (about a 700 × 700 RGB image)
FREE_DECODE_BYTES = 2 * MB
#: a background job waits this long for a background slot (the jobs before it run meanwhile; then 503)
BACKGROUND_WAIT_S = 900.0
LIGHT, HEAVY, BACKGROUND, IMPORT = "light", "heavy", "background", "import"
#: in the heavy lane, a pass queues as if it had arrived this many seconds later per GMAC of its work ...
QUEUE_S_PER_GMAC = 30.0
#: ... and at most this much later (also the handicap of work of unknown size)
MAX_QUEUE_HANDICAP_S = 60.0

log = logging.getLogger("cnn_visualiser.compute")


def slots_dir(settings: Settings) -> Path:
    """Where the lock files of a deployment live: ``<data_dir>/slots``, shared by every worker with the same data
    directory; when it cannot be written (a read-only data directory), :func:`fallback_slots_dir`."""
    preferred = Path(settings.data_dir).resolve() / "slots"
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    return fallback_slots_dir(settings)


def fallback_slots_dir(settings: Settings) -> Path:
    """A directory in the system's temporary directory named after the data directory: still shared by every
    worker with that data directory."""
    name = hashlib.sha256(str(Path(settings.data_dir).resolve()).encode()).hexdigest()[:16]
    fallback = Path(tempfile.gettempdir()) / f"cnn-visualiser-slots-{name}"
    fallback.mkdir(mode=0o700, exist_ok=True)
    return fallback


class DecodeBudget:
    """``budget_bytes`` of decoded images at once on the machine; ``with budget(nbytes): ...`` holds ``nbytes``.

    ``limit_bytes`` is the most one image may take (``app.imaging.check_decode_cost`` refuses more with a 413).
    """

    def __init__(self, directory: Path | None, budget_bytes: int, limit_bytes: int, wait_s: float) -> None:
        self.units = max(1, budget_bytes // DECODE_UNIT_BYTES)
        self.budget_bytes = self.units * DECODE_UNIT_BYTES
        self.limit_bytes = min(limit_bytes, self.budget_bytes)  # an image above the whole budget could never run
        self.wait_s = wait_s
        self.pool = SlotPool(directory, "decode", self.units)

    def units_for(self, nbytes: int) -> int:
        """The budget units decoding ``nbytes`` holds (0 for small images)."""
        if nbytes < FREE_DECODE_BYTES:
            return 0
        return min(self.units, math.ceil(nbytes / DECODE_UNIT_BYTES))

    @contextmanager
    def __call__(self, nbytes: int) -> Iterator[None]:
        units = self.units_for(nbytes)
        if units == 0:
            yield
            return
        held = self.pool.take(units, self.wait_s)
        if held is None:
            raise ApiError(503, f"the server is busy decoding other images (this one needs about "
                                f"{nbytes / MB:,.0f} MiB of the {self.budget_bytes / MB:,.0f} MiB it decodes at once, "
                                f"and they stayed taken for {self.wait_s:.0f} s): retry shortly, or send a smaller "
                                "image")
        try:
            yield
        finally:
            self.pool.release(held)


class ComputeSlots:
    """At most ``slots`` heavy, ``light_slots`` light and ``background_slots`` background passes at once on the
    machine (every worker process that shares ``directory``); ``with compute(gmacs=...): ...`` holds a slot of
    the lane the work belongs to while the block runs (no amount: the heavy lane), ``with compute.background():``
    one of the background lane. Waiting longer than ``wait_s``: 503.

    It also knows when this process last computed (:meth:`idle_for`), so memory can be given back when the
    load ends (``app.core.memory.IdleTrimmer``)."""

    def __init__(self, directory: Path | None, slots: int, wait_s: float, light_slots: int = 1,
                 light_gmacs: float = 0.05, decoding: DecodeBudget | None = None,
                 trace_file: Path | None = None, background_slots: int = 1,
                 background_wait_s: float = BACKGROUND_WAIT_S) -> None:
        self.slots = slots
        self.trace_file = trace_file
        self.light_slots = light_slots
        self.light_gmacs = light_gmacs
        self.background_slots = background_slots
        self.wait_s = wait_s
        self.background_wait_s = background_wait_s  # jobs queue for their lane longer than requests do
        self.heavy = SlotPool(directory, "compute", slots)
        self.light = SlotPool(directory, "light", light_slots)
        self.background_pool = SlotPool(directory, "background", background_slots)
        self.import_pool = SlotPool(directory, "import", 1)
        self.decoding = decoding or DecodeBudget(directory, 512 * MB, 256 * MB, wait_s)
        self._activity = threading.Lock()
        self._active = 0  # slots held in this process
        self._last_end = time.monotonic()

    @classmethod
    def from_settings(cls, settings: Settings) -> ComputeSlots:
        """The machine-wide bounds ``settings`` give, under ``<data_dir>/slots``."""
        directory = None
        try:
            directory = slots_dir(settings)
            return cls._build(directory, settings)
        except OSError as exc:  # a full disk cannot hold the lock files
            problem = exc
        try:
            fallback = fallback_slots_dir(settings)
            compute = cls._build(fallback, settings)
            log.warning("cannot make the compute slots' lock files in %s (%s): using %s", directory, problem, fallback)
            return compute
        except OSError as exc:
            log.warning("cannot make the compute slots' lock files (%s; %s): each worker bounds only its own passes",
                        problem, exc)
            return cls._build(None, settings)

    @classmethod
    def _build(cls, directory: Path | None, settings: Settings) -> ComputeSlots:
        decoding = DecodeBudget(directory, settings.decode_budget_mb * MB, settings.max_decode_mb * MB,
                                settings.decode_wait_s)
        return cls(directory, settings.compute_slots, settings.compute_wait_s, settings.light_compute_slots,
                   settings.light_work_gmacs, decoding, settings.compute_trace_file,
                   settings.background_compute_slots)

    def lane(self, gmacs: float | None) -> str:
        """``"light"`` for work known to be under ``light_gmacs``, else ``"heavy"``."""
        return LIGHT if gmacs is not None and gmacs < self.light_gmacs else HEAVY

    @contextmanager
    def __call__(self, gmacs: float | None = None) -> Iterator[None]:
        lane = self.lane(gmacs)
        # never a handicap that could outlast the wait a request is allowed (a 503 for work of unknown size)
        priority = None if lane == LIGHT else time.monotonic() + min(queue_handicap(gmacs), self.wait_s / 2)
        with self._holding(lane, self.light if lane == LIGHT else self.heavy, priority=priority):
            yield

    @contextmanager
    def background(self, gmacs: float | None = None) -> Iterator[None]:
        """A slot of the background lane, for work nobody is waiting on (``gmacs`` is accepted and ignored, so
        this can stand where ``compute`` does)."""
        with self._holding(BACKGROUND, self.background_pool, self.background_wait_s):
            yield

    @contextmanager
    def importing(self) -> Iterator[None]:
        """The machine's one import slot, for importing a big uploaded model (waiting up to ``wait_s``: 503)."""
        with self._holding(IMPORT, self.import_pool, busy="another big model was being imported"):
            yield

    def idle_for(self) -> float:
        """Seconds since this process last held a slot (0 while it holds one)."""
        with self._activity:
            return 0.0 if self._active else time.monotonic() - self._last_end

    @contextmanager
    def _holding(self, lane: str, pool: SlotPool, wait_s: float | None = None,
                 busy: str = "every compute slot was taken", priority: float | None = None) -> Iterator[None]:
        wait_s = self.wait_s if wait_s is None else wait_s
        held = pool.take(1, wait_s, priority)
        if held is None:
            raise ApiError(503, f"the server is busy ({busy} for {wait_s:.0f} s): retry shortly")
        with self._activity:
            self._active += 1
        start = time.monotonic()
        try:
            yield
        finally:
            end = time.monotonic()  # before the release: the traced interval lies within the slot's holding
            pool.release(held)
            with self._activity:
                self._active -= 1
                self._last_end = end
            if self.trace_file is not None:
                self._trace(lane, start, end)

    def _trace(self, lane: str, start: float, end: float) -> None:
        """One line per slot held (``compute_trace_file``): appended in one write, so workers do not interleave."""
        with open(self.trace_file, "a", encoding="utf-8") as file:
            file.write(f"{os.getpid()} {lane} {start:.6f} {end:.6f}\n")


def queue_handicap(gmacs: float | None) -> float:
    """Seconds a heavy pass of ``gmacs`` queues behind later arrivals (see the module docstring)."""
    if gmacs is None:
        return MAX_QUEUE_HANDICAP_S
    return min(MAX_QUEUE_HANDICAP_S, max(0.0, gmacs) * QUEUE_S_PER_GMAC)


def forward_gmacs(graph: Graph, batch: int = 1) -> float:
    """The work of a forward pass of ``batch`` inputs through ``graph``, in billions of multiply-accumulates
    (what ``with compute(gmacs=...)`` takes to choose the lane)."""
    return graph_macs(graph) * batch / 1e9


@contextmanager
def unbounded(gmacs: float | None = None) -> Iterator[None]:
    """No bound at all (a RunStore built without compute slots, in tests and scripts)."""
    yield
