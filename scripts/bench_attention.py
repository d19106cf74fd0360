"""Benchmark: attention maps on EfficientNet-Lite0 at 224 x 224 beside the engine's own forward pass.

    .venv/bin/python scripts/bench_attention.py [--threads 1] [--repeats 3] [--batch-size 16] [--methods ...]

Prints the time of a plain forward pass, of Grad-CAM (one forward with caches and a backward from the score
down to the chosen layer only) and their ratio (goal: at most 2.5), then every many-pass method twice: its
passes in batches of ``--batch-size`` and one input at a time (``batch_size=1``), with the time per pass
(per input) of each. Batching must make a pass cheaper, not dearer. Forward-only methods (Score-CAM,
occlusion) run lean passes (``Graph.forward(keep=())``), whose buffers stay in cache one input at a time,
so batching them gains little; gradient methods keep every activation and gain more.

The measurement runs in a child process with the environment of ``bench_engine.py``: ``--threads`` for
OpenMP, OpenBLAS and MKL (``CNN_VIS_THREADS``, the engine's own pool, passes through), and glibc's malloc
told to keep large buffers. With one thread the figures are CPU time (``time.process_time``), which other
processes' load barely moves; with more, wall-clock time. Each figure is the fastest of ``--repeats`` runs
after a warm-up (the machine is shared: the fastest run is the least disturbed).
A benchmark prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: (method, options, passes, what a pass is)
MANY_PASS = [
    ("integrated_gradients", {"steps": 32}, 32, "forward + backward"),
    ("smoothgrad", {"samples": 16}, 16, "forward + backward"),
    ("scorecam", {"max_channels": 64}, 64, "forward"),
    ("occlusion", {"window": 56, "stride": 28}, 49, "forward"),
]


def fastest(fn, repeats: int, clock) -> float:
    """The fastest of ``repeats`` calls after one warm-up call (first-touch page faults, caches)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def run_worker(args: argparse.Namespace) -> None:
    from app.imaging import load_image_file
    from engine.attention import explain
    from engine.models.registry import load_model

    clock = time.process_time if args.threads == 1 else time.perf_counter
    bundle = load_model("efficientnet_lite0")
    graph, params = bundle.graph, bundle.params
    x = bundle.preprocessing.normalize(load_image_file(ROOT / "static/samples/cat.jpg", bundle.preprocessing))
    from engine.attention.common import effective_batch

    rows = {
        "effective_batch": effective_batch(graph, x, args.batch_size),
        "forward": fastest(lambda: graph.forward(x, params, keep_caches=False), args.repeats, clock),
        "gradcam": fastest(lambda: explain(graph, params, x, "gradcam"), args.repeats, clock),
    }
    for method, options, _, _ in MANY_PASS:
        if method not in args.methods:
            continue
        for batch in (args.batch_size, 1):
            def call(m=method, o=options, b=batch):
                return explain(graph, params, x, m, batch_size=b, **o)

            rows[f"{method}@{batch}"] = fastest(call, max(1, args.repeats - 1), clock)
    print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads (default 1: CPU-time figures)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the fastest is kept")
    parser.add_argument("--batch-size", type=int, default=16, help="passes per batch (default 16, the API's)")
    parser.add_argument("--methods", nargs="+", default=[m for m, *_ in MANY_PASS],
                        choices=[m for m, *_ in MANY_PASS])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return

    from bench_engine import child_env

    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--batch-size", str(args.batch_size), "--methods", *args.methods]
    env = child_env(args.threads, keep_openblas_env=False)
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the worker failed:\n{result.stderr[-3000:]}")
    rows = json.loads(result.stdout.strip().splitlines()[-1])

    forward, gradcam = rows["forward"], rows["gradcam"]
    clock = "CPU" if args.threads == 1 else "wall-clock"
    print(f"EfficientNet-Lite0, 224 x 224, {args.threads} thread(s), {clock} time, fastest of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'engine forward (batch 1)':<34}{forward * 1000:9.1f} ms")
    print(f"{'Grad-CAM (forward + backward)':<34}{gradcam * 1000:9.1f} ms   {gradcam / forward:5.2f} x forward"
          f"   (goal <= 2.5 x)")
    batch = args.batch_size
    print(f"\nbatch_size {batch}: the activation budget (engine.attention.common.BATCH_BYTES) runs "
          f"{rows['effective_batch']} inputs per batch")
    print(f"{'method':<22}{'passes':>7}{f'batches of {batch}':>17}{'per pass':>10}{'one at a time':>15}"
          f"{'per pass':>10}{'batched gain':>14}  a pass is")
    for method, _, passes, what in MANY_PASS:
        if f"{method}@1" not in rows:
            continue
        batched, single = rows[f"{method}@{batch}"], rows[f"{method}@1"]
        print(f"{method:<22}{passes:>7}{batched:>15.2f} s{batched / passes * 1000:>7.0f} ms{single:>13.2f} s"
              f"{single / passes * 1000:>7.0f} ms{single / batched:>13.2f}x  {what} "
              f"({batched / passes / forward:.1f} x forward per pass batched)")


if __name__ == "__main__":
    main()
