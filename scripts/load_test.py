"""Load test: 50 concurrent predict requests on EfficientNet-Lite0 against a real uvicorn server.

Starts ``cnn-visualiser serve`` on 127.0.0.1 (a free port), warms it up, then sends the requests all
at once and prints the latency percentiles, the error count and the server's resident memory before,
during (peak) and after. Exits non-zero on any error.

    .venv/bin/python scripts/load_test.py [--requests 50] [--concurrency 50] [--workers 1]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "efficientnet_lite0"


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


def multipart(field: str, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the uvicorn workers), in MB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Server:
    """``cnn-visualiser serve`` in a subprocess on a free port; stopped on exit."""

    def __init__(self, workers: int = 1, data_dir: str | None = None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(env or {})}
        if data_dir:
            environment["CNN_VIS_DATA_DIR"] = data_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers), "--log-level", "warning"],
            cwd=ROOT, env=environment)

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
        self.wait_ready()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--rounds", type=int, default=2, help="bursts of requests (memory must not grow between)")
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="server data dir (holds the weight cache)")
    args = parser.parse_args()

    body, content_type = multipart("image", "photo.jpg", photo_jpeg(), "image/jpeg")
    with Server(args.workers, args.data_dir) as server:
        url = f"{server.url}/api/models/{MODEL}/predict"
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
    print(f"{args.rounds} x {args.requests} predict requests on {MODEL}, {args.concurrency} at once, "
          f"{args.workers} worker(s), "
          f"640x480 JPEG, {os.cpu_count()} CPUs")
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else "") + f"; top-1 labels: {sorted(labels)}")
    print(f"latency ms: p50 {percentile(latencies, 50):.0f}, p90 {percentile(latencies, 90):.0f}, "
          f"p99 {percentile(latencies, 99):.0f}, max {max(latencies):.0f}, mean {statistics.mean(latencies):.0f}")
    print(f"throughput: {len(results) / wall:.2f} requests/s over {wall:.1f} s")
    after = ", ".join(f"{r:.0f}" for r in rss_after)
    print(f"server resident memory MB: at start {rss_start:.0f}, after warm-up {rss_before:.0f}, "
          f"peak {max(peak):.0f}, after each round {after}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
