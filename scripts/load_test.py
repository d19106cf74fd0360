"""Load tests against a real server: a predict burst, a lecture hall, a class opening the explorer, and
training jobs on several workers.

Each mode starts its own server (``cnn-visualiser serve`` on 127.0.0.1, a free port), warms it up, runs, and
prints figures. ``--malloc-env bench`` gives it the benchmarks' glibc malloc environment
(``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``, as ``scripts/bench_engine.py`` uses); the lecture and
explorer modes otherwise measure the server as users start it.

``--mode burst`` (the default): 50 concurrent predict requests on EfficientNet-Lite0, in ``--rounds``
bursts; latency percentiles, errors and the server's resident memory before, during (peak) and after.
Exits non-zero on any error.

``--mode lecture``: ``--clients`` (50) students for ``--seconds`` (60) against
``cnn-visualiser serve --workers N`` (as users start it, in its default environment), once per value of
``--workers`` (default 1 then 2).
Each client, without pausing, repeats a task drawn from the mix: predict 35% (half on the digit network,
half on EfficientNet-Lite0), activations on EfficientNet then ``--pngs`` (20) of its feature-map PNGs 35%,
Grad-CAM 20%, Score-CAM or Integrated Gradients 10%. A separate prober asks ``/api/health`` every 0.5 s.
Prints per kind p50/p95/p99, errors by status, throughput, ``/api/health`` worst, the digit predictions' p95
while a Score-CAM or Integrated Gradients request was running, the EfficientNet predictions' p50, and the
resident memory of all server processes (RSS summed over the uvicorn parent and its children, from /proc):
before the load, its peak, and ``--settle`` (60) seconds after the load ends.

``--mode explorer``: ``--students`` (200) each open the explorer once, starting at random moments within
``--seconds`` (60): upload their own photo (POST activations on EfficientNet-Lite0), then fetch the maps of
the first screen (the first ``--maps`` (12) nodes' PNGs, ``--parallel-fetches`` (6) at a time, as a browser
does). Prints p50/p95 time to first maps and the server's CPU seconds per session (utime + stime of every
server process from /proc/<pid>/stat over the run, divided by the sessions).

    .venv/bin/python scripts/load_test.py [--requests 50] [--concurrency 50] [--workers 1]
    .venv/bin/python scripts/load_test.py --mode lecture [--clients 50] [--seconds 60] [--workers 1 2]
    .venv/bin/python scripts/load_test.py --mode explorer [--students 200] [--seconds 60]
    .venv/bin/python scripts/load_test.py --mode training [--workers 2] [--jobs 2] [--tries 10]

``--mode training``: starts ``--jobs`` long training jobs on a server of ``--workers`` (2) processes, then asks
for each job's status, its event stream and the job list ``--tries`` times, each on a new connection (so any
worker may answer), and cancels it; prints how many were answered right (goal: all). Exits non-zero otherwise.

Short runs: ``--mode lecture --clients 10 --seconds 20 --settle 20``. The figures compare with the goals
of issue 12, printed beside them; the lecture and explorer modes measure and exit 0 whatever the figures
(non-zero only when the server cannot start or warm up).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "efficientnet_lite0"
DIGIT_MODEL = "digits_classic"
MIB = 1024 * 1024
#: glibc's malloc keeps large buffers (as in bench_engine.py): the burst mode's servers, and the others' with
#: ``--malloc-env bench``; the lecture and explorer modes otherwise run the server as users do (its own settings)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "268435456", "MALLOC_TRIM_THRESHOLD_": "536870912"}


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment every server of a lecture or explorer run gets (the same for 1 and 2 workers)."""
    return dict(MALLOC_ENV) if args.malloc_env == "bench" else {}


def env_text(env: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in env.items()) or "the server's default environment"
HEAVY_KINDS = ("scorecam", "integrated_gradients")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo_jpeg(width: int = 640, height: int = 480) -> bytes:
    """The cat sample (or a synthetic picture when it is missing) as a width × height JPEG."""
    from PIL import Image

    sample = ROOT / "static" / "samples" / "cat.jpg"
    if sample.exists():
        image = Image.open(sample).convert("RGB").resize((width, height))
    else:
        import numpy as np

        y, x = np.mgrid[0:height, 0:width]
        pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
        image = Image.fromarray(pixels.astype("uint8"))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def photo_variants(count: int, seed: int, width: int = 640, height: int = 480) -> list[bytes]:
    """``count`` different width × height JPEGs: random crops of the sample photos, each with its own noise, so
    that no two students send the same picture (the server caches runs by their input)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = ("cat.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg")
    samples = [Image.open(ROOT / "static" / "samples" / n).convert("RGB")
               for n in names if (ROOT / "static" / "samples" / n).exists()]
    if not samples:
        samples = [Image.open(io.BytesIO(photo_jpeg(width, height)))]
    variants = []
    for i in range(count):
        image = samples[i % len(samples)]
        w, h = image.size
        cw, ch = int(w * rng.uniform(0.7, 1.0)), int(h * rng.uniform(0.7, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        pixels = np.asarray(image.crop((left, top, left + cw, top + ch)).resize((width, height)), dtype=np.int16)
        pixels = np.clip(pixels + rng.integers(-3, 4, pixels.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        variants.append(buffer.getvalue())
    return variants


def digit_png() -> bytes:
    """A handwritten digit sample (a 28 × 28 PNG)."""
    return (ROOT / "static" / "samples" / "digit-7.png").read_bytes()


def multipart(field: str, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def server_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (the uvicorn parent, its workers and helpers), from /proc."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the uvicorn workers), in MiB."""
    total = 0
    for p in server_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def memory_mb(pid: int) -> float:
    """The physical memory of a process and its descendants, in MiB, each page counted once: the sum of their
    proportional set sizes (a page that two workers or a job child share counts half in each; summed resident
    sizes count it twice), plus the shared-run files in ``/dev/shm`` that no process maps at the moment (memory,
    though in no process)."""
    total_kb, mapped, directories = 0, set(), set()
    for p in server_pids(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
            for line in Path(f"/proc/{p}/maps").read_text().splitlines():
                path = line.split(maxsplit=5)[5] if line.count(" ") >= 5 else ""
                if path.startswith("/dev/shm/cnn-visualiser-"):
                    mapped.add(path.removesuffix(" (deleted)"))
                    directories.add(str(Path(path).parent))
        except (OSError, IndexError):
            pass
    unmapped = 0
    for directory in directories:
        for file in Path(directory).glob("*.run"):
            if str(file) not in mapped:
                with contextlib.suppress(OSError):
                    unmapped += file.stat().st_size
    return total_kb / 1024 + unmapped / 2**20


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live descendants so far, in seconds."""
    ticks = 0
    for p in server_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, IndexError, ValueError):
            pass
    return ticks / CLOCK_TICKS


class Server:
    """``cnn-visualiser serve`` in a subprocess on a free port, as users start it; stopped on exit."""

    def __init__(self, workers: int = 1, data_dir: str | None = None, env: dict[str, str] | None = None,
                 quiet: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, **(env or {})}
        if data_dir:
            environment["CNN_VIS_DATA_DIR"] = data_dir
        output = subprocess.DEVNULL if quiet else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers), "--log-level", "warning"], cwd=ROOT, env=environment, stdout=output,
            stderr=output)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/api/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError("the server did not answer /api/health in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def predict(url: str, body: bytes, content_type: str, timeout: float = 300) -> tuple[float, int, str]:
    """One request: (seconds, HTTP status, top label or error detail)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read())
            return time.perf_counter() - start, response.status, data["classes"][0]["label"]
    except urllib.error.HTTPError as error:
        return time.perf_counter() - start, error.code, error.read().decode(errors="replace")[:200]
    except Exception as error:  # connection reset, timeout: counted as errors
        return time.perf_counter() - start, 0, repr(error)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# --- requests and their records ------------------------------------------------------------------------


@dataclass
class Record:
    """One HTTP request: its kind, when it started and ended (``time.monotonic``), its status (0: no answer)."""

    kind: str
    start: float
    end: float
    status: int
    detail: str = ""

    @property
    def seconds(self) -> float:
        return self.end - self.start


def call(kind: str, url: str, body: bytes | None = None, content_type: str | None = None,
         timeout: float = 300) -> tuple[Record, bytes]:
    """One request (POST when there is a body): its record and the response body (empty on an error)."""
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
            return Record(kind, start, time.monotonic(), response.status), data
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:200]
        return Record(kind, start, time.monotonic(), error.code, detail), b""
    except Exception as error:  # connection reset, timeout: no answer
        return Record(kind, start, time.monotonic(), 0, repr(error)[:200]), b""


def summarise_kinds(records: list[Record]) -> list[str]:
    """Per kind: count, errors and p50/p95/p99/max latency in ms (every request, whatever its status)."""
    by_kind: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_kind[r.kind].append(r)
    lines = [f"  {'kind':<26}{'count':>6}{'errors':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"]
    for kind in sorted(by_kind):
        ms = [r.seconds * 1000 for r in by_kind[kind]]
        errors = sum(r.status != 200 for r in by_kind[kind])
        lines.append(f"  {kind:<26}{len(ms):>6}{errors:>7}{percentile(ms, 50):>9.0f}{percentile(ms, 95):>9.0f}"
                     f"{percentile(ms, 99):>9.0f}{max(ms):>9.0f}")
    return lines


def errors_by_status(records: list[Record]) -> str:
    """``none``, or per status (0: no answer) its count and the first detail."""
    bad = [r for r in records if r.status != 200]
    if not bad:
        return "none"
    counts = Counter(r.status for r in bad)
    first = {}
    for r in bad:
        first.setdefault(r.status, f"{r.kind}: {r.detail}")
    return "; ".join(f"{status or 'no answer'} x{n} (first: {first[status]})" for status, n in sorted(counts.items()))


class Sampler:
    """Calls ``sample()`` in a thread until stopped, ``interval`` seconds apart (less the time a sample took)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class MemoryWatch(Sampler):
    """Samples the server's memory (all its processes) every ``interval`` seconds in a thread: the summed resident
    sizes (``rss_mb``) and the memory counted once (``memory_mb``)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(interval)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.once: list[tuple[float, float]] = []

    def sample(self) -> None:
        now = time.monotonic()
        self.samples.append((now, rss_mb(self.pid)))
        self.once.append((now, memory_mb(self.pid)))

    def peak(self, since: float, until: float) -> float:
        return max((mb for t, mb in self.samples if since <= t <= until), default=rss_mb(self.pid))

    def peak_once(self, since: float, until: float) -> float:
        return max((mb for t, mb in self.once if since <= t <= until), default=memory_mb(self.pid))


class HealthProbe(Sampler):
    """Asks ``/api/health`` every ``interval`` seconds (waiting for each answer) and keeps the records."""

    def __init__(self, url: str, interval: float = 0.5, timeout: float = 300) -> None:
        super().__init__(interval)
        self.url, self.timeout = url + "/api/health", timeout
        self.records: list[Record] = []

    def sample(self) -> None:
        self.records.append(call("health", self.url, timeout=self.timeout)[0])


def warm_up(url: str, workers: int, image_model: str, digit_model: str, photo: bytes, timeout: float) -> None:
    """Load both models in every worker (on a first run this converts the EfficientNet weights): a few concurrent
    predictions each, more than there are workers so that every worker gets some."""
    photo_body = multipart("image", "photo.jpg", photo, "image/jpeg")
    digit_body = multipart("image", "digit.png", digit_png(), "image/png")
    jobs = [(f"{url}/api/models/{image_model}/predict", *photo_body),
            (f"{url}/api/models/{digit_model}/predict", *digit_body)] * (2 * workers)
    with ThreadPoolExecutor(len(jobs)) as pool:
        records = list(pool.map(lambda job: call("warm-up", *job, timeout=timeout)[0], jobs))
    failed = [r for r in records if r.status != 200]
    if failed:
        raise RuntimeError(f"warm-up failed: {failed[0].status} {failed[0].detail}")


def goal(met: bool) -> str:
    return "met" if met else "NOT met"


def load_average() -> str:
    """The machine's 1-minute load average (other work on a shared machine moves every figure)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


# --- the lecture hall ----------------------------------------------------------------------------------


@dataclass
class Lecture:
    """What the lecture-hall clients send: models, pictures and the task mix."""

    url: str
    image_model: str
    digit_model: str
    photos: list[bytes]
    digit: bytes
    pngs: int
    timeout: float

    #: (task, weight): predict 35% (digits and EfficientNet), explore 35%, Grad-CAM 20%, heavy 10%
    MIX = (("predict_digits", 17.5), ("predict_image", 17.5), ("explore", 35.0), ("gradcam", 20.0),
           ("scorecam", 5.0), ("integrated_gradients", 5.0))

    def photo(self, rng: random.Random) -> tuple[bytes, str]:
        return multipart("image", "photo.jpg", rng.choice(self.photos), "image/jpeg")

    def task(self, name: str, rng: random.Random) -> list[Record]:
        """Run one task of the mix; the records of its requests."""
        models = f"{self.url}/api/models"
        if name == "predict_digits":
            body = multipart("image", "digit.png", self.digit, "image/png")
            return [call(f"predict {self.digit_model}", f"{models}/{self.digit_model}/predict", *body,
                         timeout=self.timeout)[0]]
        if name == "predict_image":
            return [call(f"predict {self.image_model}", f"{models}/{self.image_model}/predict", *self.photo(rng),
                         timeout=self.timeout)[0]]
        if name == "explore":
            record, data = call("activations", f"{models}/{self.image_model}/activations", *self.photo(rng),
                                timeout=self.timeout)
            records = [record]
            if record.status == 200:
                for node in json.loads(data)["nodes"][:self.pngs]:
                    records.append(call("feature-map png", self.url + node["png_url"], timeout=self.timeout)[0])
            return records
        record, data = call(name, f"{models}/{self.image_model}/attention?method={name}", *self.photo(rng),
                            timeout=self.timeout)
        if record.status != 202:
            return [record]
        return [follow_job(record, json.loads(data), self.url, self.timeout)]


def follow_job(accepted: Record, job: dict, url: str, timeout: float) -> Record:
    """A background attention job (202) followed to its result: one record from the POST to the result."""
    deadline = accepted.start + timeout
    while time.monotonic() < deadline:
        status, data = call(accepted.kind, url + job["status_url"], timeout=timeout)
        if status.status != 200:
            return Record(accepted.kind, accepted.start, status.end, status.status, status.detail)
        if json.loads(data)["status"] not in ("queued", "running"):
            result, _ = call(accepted.kind, url + job["result_url"], timeout=timeout)
            return Record(accepted.kind, accepted.start, result.end, result.status, result.detail)
        time.sleep(0.5)
    return Record(accepted.kind, accepted.start, time.monotonic(), 0, "the job did not finish in time")


def run_lecture(args: argparse.Namespace, workers: int) -> int:
    photos = photo_variants(64, args.seed)
    env = server_env(args)
    with Server(workers, args.data_dir, env, quiet=args.quiet_server) as server:
        pid = server.process.pid
        rss_ready = rss_mb(pid)
        try:
            warm_up(server.url, workers, args.image_model, args.digit_model, photos[0], args.timeout)
        except RuntimeError as error:
            print(error)
            return 1
        lecture = Lecture(server.url, args.image_model, args.digit_model, photos, digit_png(), args.pngs,
                          args.timeout)
        memory = MemoryWatch(pid).start()
        time.sleep(0.5)
        rss_before = rss_mb(pid)
        once_before = memory_mb(pid)
        load_before = load_average()
        names, weights = zip(*Lecture.MIX, strict=True)
        records: list[Record] = []
        lock = threading.Lock()
        start = time.monotonic()
        deadline = start + args.seconds

        def client(index: int) -> None:
            rng = random.Random(args.seed * 1000 + index)
            while time.monotonic() < deadline:
                done = lecture.task(rng.choices(names, weights)[0], rng)
                with lock:
                    records.extend(done)

        probe = HealthProbe(server.url, args.probe_interval, args.timeout).start()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, range(args.clients)))
        end = time.monotonic()
        load_after = load_average()
        probe.stop()
        cpu = cpu_seconds(pid)
        time.sleep(args.settle)
        settled = time.monotonic()
        memory.stop()
        rss_settled = rss_mb(pid)
        once_settled = memory_mb(pid)
        rss_half = min(memory.samples, key=lambda s: abs(s[0] - (end + args.settle / 2)))[1]
        peak = memory.peak(start, end)
        peak_once = memory.peak_once(start, end)

    wall = end - start
    digit_kind, image_kind = f"predict {args.digit_model}", f"predict {args.image_model}"
    heavy = [r for r in records if r.kind in HEAVY_KINDS]
    digits = [r for r in records if r.kind == digit_kind]
    digits_during_heavy = [r.seconds * 1000 for r in digits if any(h.start < r.end and h.end > r.start
                                                                    for h in heavy)]
    image_predicts = [r.seconds * 1000 for r in records if r.kind == image_kind]
    health = [r.seconds * 1000 for r in probe.records]
    server_errors = sum(r.status >= 500 or r.status == 0 for r in records + probe.records)
    ok = sum(r.status == 200 for r in records)
    print(f"\n== lecture hall: {args.clients} clients for {args.seconds:.0f} s, {workers} worker(s), "
          f"{os.cpu_count()} CPUs (load average {load_before} before, {load_after} at the end); models "
          f"{args.image_model} and {args.digit_model}; {env_text(server_env(args))}")
    print(f"mix: predict 35% (half {args.digit_model}, half {args.image_model}), activations + {args.pngs} PNGs 35%, "
          f"gradcam 20%, scorecam or integrated_gradients 10%; the last requests ended {end - deadline:.1f} s "
          f"after the {args.seconds:.0f} s")
    print("latency per kind (every request, whatever its status):")
    print("\n".join(summarise_kinds(records)))
    print(f"errors by status: {errors_by_status(records)}")
    in_window = [r for r in records if r.end <= deadline]
    window_ok = sum(r.status == 200 for r in in_window)
    print(f"throughput: {len(in_window) / args.seconds:.2f} requests/s answered within the {args.seconds:.0f} s "
          f"({window_ok / args.seconds:.2f} ok/s); with the requests in flight at the end: "
          f"{len(records) / wall:.2f} requests/s ({ok / wall:.2f} ok/s), {len(records)} requests in {wall:.1f} s")
    print(f"/api/health every {args.probe_interval} s: {len(health)} probes, worst {max(health):.0f} ms, "
          f"p50 {percentile(health, 50):.0f} ms; errors: {errors_by_status(probe.records)}")
    if digits_during_heavy:
        digit_p95 = percentile(digits_during_heavy, 95)
        print(f"{args.digit_model} predict while scorecam or integrated_gradients ran: "
              f"{len(digits_during_heavy)} requests, p95 {digit_p95:.0f} ms")
    else:
        digit_p95 = float("nan")
        print(f"{args.digit_model} predict while scorecam or integrated_gradients ran: none (no overlap)")
    image_p50 = percentile(image_predicts, 50) if image_predicts else float("nan")
    print(f"{args.image_model} predict p50: {image_p50:.0f} ms ({len(image_predicts)} requests)")
    print(f"resident memory of all server processes, MiB: ready {rss_ready:.0f}, before the load {rss_before:.0f}, "
          f"peak {peak:.0f}, {args.settle / 2:.0f} s after the load {rss_half:.0f}, "
          f"{args.settle:.0f} s after {rss_settled:.0f} (settled at +{settled - end:.0f} s)")
    print(f"memory of all server processes, each page counted once (proportional set sizes, plus run files in "
          f"/dev/shm nobody maps), MiB: before the load {once_before:.0f}, peak {peak_once:.0f}, {args.settle:.0f} s "
          f"after {once_settled:.0f}")
    print(f"server CPU seconds over the whole run (warm-up included): {cpu:.1f}")
    print(f"goals (issue 12): no 5xx {goal(server_errors == 0)}; health worst <= 200 ms {goal(max(health) <= 200)}; "
          f"digit p95 during heavy <= 1 s {goal(digit_p95 <= 1000)}; {args.image_model} p50 <= 3 s "
          f"{goal(image_p50 <= 3000)}; peak (counted once) <= 1.5 GiB {goal(peak_once <= 1536)}; back within 25% "
          f"of the pre-load level {goal(once_settled <= 1.25 * once_before)}")
    print(f"RESULT lecture workers={workers} throughput={len(in_window) / args.seconds:.3f} "
          f"throughput_all={len(records) / wall:.3f} errors={len(records) - ok} "
          f"health_worst_ms={max(health):.0f} peak_mib={peak:.0f} peak_once_mib={peak_once:.0f} "
          f"image_p50_ms={image_p50:.0f}", flush=True)
    # all the requests over the time they took: requests that all finish just after the window (as when
    # every pass shares the cores) would make the in-window figure near zero
    args.throughputs[workers] = len(records) / wall
    return 0


# --- a class opens the explorer ------------------------------------------------------------------------


def run_explorer(args: argparse.Namespace, workers: int) -> int:
    rng = random.Random(args.seed)
    photos = photo_variants(args.students + 1, args.seed)
    offsets = sorted(rng.uniform(0, args.seconds) for _ in range(args.students))
    env = server_env(args)
    with Server(workers, args.data_dir, env, quiet=args.quiet_server) as server:
        pid = server.process.pid
        try:
            warm_up(server.url, workers, args.image_model, args.digit_model, photos[-1], args.timeout)
        except RuntimeError as error:
            print(error)
            return 1
        time.sleep(0.5)
        memory = MemoryWatch(pid).start()
        rss_before = rss_mb(pid)
        cpu_before = cpu_seconds(pid)
        load_before = load_average()
        records: list[Record] = []
        sessions: list[tuple[float, float, bool]] = []  # (to the activations, to the first maps, all ok)
        lock = threading.Lock()
        start = time.monotonic()

        def student(index: int) -> None:
            time.sleep(max(0.0, start + offsets[index] - time.monotonic()))
            begin = time.monotonic()
            body = multipart("image", f"photo-{index}.jpg", photos[index], "image/jpeg")
            record, data = call("activations", f"{server.url}/api/models/{args.image_model}/activations", *body,
                                timeout=args.timeout)
            done = [record]
            if record.status == 200:
                urls = [server.url + node["png_url"] for node in json.loads(data)["nodes"][:args.maps]]
                with ThreadPoolExecutor(args.parallel_fetches) as fetches:
                    done += list(fetches.map(lambda u: call("feature-map png", u, timeout=args.timeout)[0], urls))
            finished = max(r.end for r in done)
            with lock:
                records.extend(done)
                sessions.append((record.end - begin, finished - begin, all(r.status == 200 for r in done)))

        with ThreadPoolExecutor(args.students) as pool:
            list(pool.map(student, range(args.students)))
        end = time.monotonic()
        load_after = load_average()
        cpu = cpu_seconds(pid) - cpu_before
        memory.stop()
        peak = memory.peak(start, end)

    wall = end - start
    complete = [s for s in sessions if s[2]]
    to_maps = [s[1] for s in complete] or [float("nan")]
    to_run = [s[0] for s in complete] or [float("nan")]
    print(f"\n== explorer: {args.students} students open the explorer within {args.seconds:.0f} s, {workers} "
          f"worker(s), {os.cpu_count()} CPUs (load average {load_before} before, {load_after} at the end); "
          f"{args.image_model}, activations + the first {args.maps} nodes' PNGs "
          f"({args.parallel_fetches} at a time); {env_text(server_env(args))}")
    print(f"sessions: {len(complete)} complete of {len(sessions)}; all done {wall:.1f} s after the first began")
    print(f"time to first maps: p50 {percentile(to_maps, 50):.2f} s, p95 {percentile(to_maps, 95):.2f} s, "
          f"max {max(to_maps):.2f} s (activations alone: p50 {percentile(to_run, 50):.2f} s, "
          f"p95 {percentile(to_run, 95):.2f} s)")
    print("latency per kind:")
    print("\n".join(summarise_kinds(records)))
    print(f"errors by status: {errors_by_status(records)}")
    print(f"server CPU: {cpu:.1f} s over the run, {cpu / max(1, len(sessions)):.3f} s per session")
    print(f"resident memory of all server processes, MiB: before {rss_before:.0f}, peak {peak:.0f}")
    print(f"RESULT explorer workers={workers} sessions={len(complete)} p50_s={percentile(to_maps, 50):.3f} "
          f"p95_s={percentile(to_maps, 95):.3f} cpu_per_session_s={cpu / max(1, len(sessions)):.4f}", flush=True)
    return 0


# --- the predict burst (the original mode) ----------------------------------------------------------------


def run_burst(args: argparse.Namespace, workers: int) -> int:
    body, content_type = multipart("image", "photo.jpg", photo_jpeg(), "image/jpeg")
    with Server(workers, args.data_dir, MALLOC_ENV, quiet=args.quiet_server) as server:
        url = f"{server.url}/api/models/{args.image_model}/predict"
        rss_start = rss_mb(server.process.pid)
        warm = predict(url, body, content_type)  # loads (and on a first run converts) the model
        if warm[1] != 200:
            print(f"warm-up failed: {warm}")
            return 1
        rss_before = rss_mb(server.process.pid)
        peak = [rss_before]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak.append(rss_mb(server.process.pid))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        results, rss_after, wall = [], [], 0.0
        for _ in range(args.rounds):
            start = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results += list(pool.map(lambda _: predict(url, body, content_type), range(args.requests)))
            wall += time.perf_counter() - start
            rss_after.append(rss_mb(server.process.pid))
        done.set()
        watcher.join()

    latencies = [r[0] * 1000 for r in results]
    errors = [r for r in results if r[1] != 200]
    labels = {r[2] for r in results if r[1] == 200}
    print(f"{args.rounds} x {args.requests} predict requests on {args.image_model}, {args.concurrency} at once, "
          f"{workers} worker(s), "
          f"640x480 JPEG, {os.cpu_count()} CPUs")
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else "") + f"; top-1 labels: {sorted(labels)}")
    print(f"latency ms: p50 {percentile(latencies, 50):.0f}, p90 {percentile(latencies, 90):.0f}, "
          f"p99 {percentile(latencies, 99):.0f}, max {max(latencies):.0f}, mean {statistics.mean(latencies):.0f}")
    print(f"throughput: {len(results) / wall:.2f} requests/s over {wall:.1f} s")
    after = ", ".join(f"{r:.0f}" for r in rss_after)
    print(f"server resident memory MB: at start {rss_start:.0f}, after warm-up {rss_before:.0f}, "
          f"peak {max(peak):.0f}, after each round {after}")
    return 1 if errors else 0

TRAINING_JOB = {"train_size": 8000, "test_size": 100, "epochs": 20, "batch_size": 16}


def training_call(url: str, method: str = "GET", body: dict | None = None, owner: str = "",
                  first_event: bool = False) -> tuple[int, bytes]:
    """One request on a new connection (so every try may reach another worker): its status and body (for an
    event stream, only up to its first event)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"X-Owner-Token": owner, **({"Content-Type": "application/json"} if data else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if first_event:
                return response.status, next((line for line in response if line.startswith(b"event: ")), b"")
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def run_training(args: argparse.Namespace, workers: int) -> int:
    """Training jobs on a server of ``workers`` processes: every status, events, list and cancel request on a
    new connection, ``--tries`` times per job; prints how many each worker answered right."""
    owner = "load-test-owner-" + uuid.uuid4().hex
    answered: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    with Server(workers, args.data_dir, server_env(args), quiet=args.quiet_server) as server:
        jobs = []
        for _ in range(args.jobs):
            status, data = training_call(f"{server.url}/api/training/jobs", "POST", TRAINING_JOB, owner)
            if status not in (200, 201, 202):
                print(f"could not start a training job: {status} {data[:200]!r}")
                return 1
            jobs.append(json.loads(data)["id"])
        for job_id in jobs:
            base = f"{server.url}/api/training/jobs/{job_id}"
            listing = f"{server.url}/api/training/jobs"
            for _ in range(args.tries):
                checks = {
                    "status": training_call(base, owner=owner)[0] == 200,
                    "events": training_call(base + "/events", owner=owner, first_event=True)[0] == 200,
                    "listed": job_id in {job["id"] for job in
                                         json.loads(training_call(listing, owner=owner)[1])["jobs"]},
                }
                for kind, ok in checks.items():
                    asked[kind] += 1
                    answered[kind] += ok
            asked["cancel"] += 1
            answered["cancel"] += training_call(base, "DELETE", owner=owner)[0] == 202
        print(f"\n== training jobs, {workers} worker(s): {args.jobs} jobs, {args.tries} tries each ==")
        for kind in ("status", "events", "listed", "cancel"):
            print(f"  {kind:<8} answered {answered[kind]}/{asked[kind]} ({100 * answered[kind] / asked[kind]:.0f}%)")
    everything = all(answered[kind] == asked[kind] for kind in asked)
    print(f"goal (issue 12): every request answered by whichever worker gets it: {goal(everything)}")
    return 0 if everything else 1


MODES: dict[str, Callable[[argparse.Namespace, int], int]] = {
    "burst": run_burst, "lecture": run_lecture, "explorer": run_explorer, "training": run_training}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default="burst",
                        help="burst: concurrent predicts (default); lecture: the lecture-hall mix; "
                             "explorer: a class opening the explorer")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="uvicorn worker processes; several values: one run each "
                             "(default: 1 2 for the lecture, 1 otherwise)")
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="server data dir (holds the weight cache)")
    parser.add_argument("--image-model", default=MODEL, help=f"the photo model (default {MODEL})")
    parser.add_argument("--digit-model", default=DIGIT_MODEL, help=f"the digit model (default {DIGIT_MODEL})")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a client waits for an answer")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--quiet-server", action="store_true", help="drop the server's own output")
    parser.add_argument("--malloc-env", choices=["default", "bench"], default="default",
                        help="lecture and explorer: run the server in its default environment (as users do), or "
                             "with the benchmarks' glibc malloc thresholds")
    burst = parser.add_argument_group("burst")
    burst.add_argument("--requests", type=int, default=50)
    burst.add_argument("--concurrency", type=int, default=50)
    burst.add_argument("--rounds", type=int, default=2, help="bursts of requests (memory must not grow between)")
    timed = parser.add_argument_group("lecture and explorer")
    timed.add_argument("--seconds", type=float, default=60,
                       help="lecture: how long the clients send; explorer: the window the students start in")
    lecture = parser.add_argument_group("lecture")
    lecture.add_argument("--clients", type=int, default=50, help="students sending at once")
    lecture.add_argument("--pngs", type=int, default=20, help="feature-map PNGs fetched after each activations")
    lecture.add_argument("--probe-interval", type=float, default=0.5, help="seconds between /api/health probes")
    lecture.add_argument("--settle", type=float, default=60,
                         help="seconds to watch the memory after the load ends")
    explorer = parser.add_argument_group("explorer")
    explorer.add_argument("--students", type=int, default=200, help="sessions, each opening the explorer once")
    explorer.add_argument("--maps", type=int, default=12, help="nodes whose PNGs make the first screen")
    explorer.add_argument("--parallel-fetches", type=int, default=6, help="PNGs a session fetches at once")
    training = parser.add_argument_group("training")
    training.add_argument("--jobs", type=int, default=2, help="training jobs started")
    training.add_argument("--tries", type=int, default=10, help="requests of each kind per job")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workers = args.workers or ([1, 2] if args.mode == "lecture" else [2] if args.mode == "training" else [1])
    args.throughputs = {}
    status = 0
    for count in workers:
        status = max(status, MODES[args.mode](args, count))
    if len(args.throughputs) > 1:
        fewest, most = min(args.throughputs), max(args.throughputs)
        print(f"\ngoal (issue 12): throughput (with the requests in flight at the end) with {most} workers >= "
              f"with {fewest}: "
              f"{args.throughputs[most]:.2f} vs {args.throughputs[fewest]:.2f} requests/s, "
              f"{goal(args.throughputs[most] >= args.throughputs[fewest])}")
    return status


if __name__ == "__main__":
    sys.exit(main())
