"""Time the engine's forward pass against PyTorch's on the same networks, weights and input.

    .venv/bin/python scripts/bench_engine.py [--threads 1] [--runs 9] [--warmup 2] [--networks vgg64 mobilenet224]
                                             [--breakdown]

Two networks, batch 1, float32, random weights (the engine's PyTorch-style initialisation):

* ``vgg64``: a VGG-style stack at 64x64: (conv3x3-64, relu) x2, max pool, (conv-128, relu) x2, max pool,
  (conv-256, relu) x2, max pool, flatten, linear-10;
* ``mobilenet224``: MobileNet v1 at 224x224 (width 1.0): conv3x3/2-32, thirteen depthwise-separable
  blocks (depthwise 3x3 + ReLU6, pointwise 1x1 + ReLU6), global average pooling, linear-1000. Batch
  norm is left out, as it is folded into the convolutions for inference.

Each side runs in its own process (this script with ``--worker``, and ``bench_torch_reference.py``) with
the same environment: one thread count for OpenMP, OpenBLAS, MKL and torch, and glibc's malloc set to keep
large buffers (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``) so that neither side pays for
returning memory to the system on every call. ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE``, which some
machines set for old OpenBLAS builds and which slow a current NumPy, are removed for both children
unless ``--keep-openblas-env``; the kernel NumPy's OpenBLAS then runs is printed.

Two kinds of pass are timed on each side. **lean**: what a prediction runs, the output only (the engine's
``forward(..., keep=())``, which releases every activation after its last reader; PyTorch's plain forward
under ``inference_mode``). **record**: every node's activation kept, as the visualiser's pictures need (the
engine's default ``forward``; PyTorch keeping each layer's output in a list). The goal applies to both.

Each side warms up, then times ``--runs`` forward passes and reports their median. The machine is shared,
so this is done in ``--rounds`` alternating rounds (engine, PyTorch, engine, PyTorch, ...) and the best
median of each side is kept: a burst of someone else's load then slows one round, not the comparison.
With one thread the ratio uses CPU time (``time.process_time``), which other processes' load barely
moves; with more threads it uses wall-clock time. Both are printed.
The outputs are compared. Goal: the engine within 1.5x PyTorch's time. This prints figures; it is not a test.
``--breakdown`` also prints where the engine's time goes (depthwise, 1x1 convolutions, activations, ...),
measured in extra passes after the timed ones so that it does not change the figures above.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TORCH_SCRIPT = Path(__file__).resolve().parent / "bench_torch_reference.py"
GOAL = 1.5


# --- the networks ---------------------------------------------------------------------------------
def vgg_spec(size: int = 64, classes: int = 10) -> dict:
    """VGG-style: two 3x3 convolutions per stage, 64/128/256 channels, 2x2 max pooling between stages."""
    nodes: list[dict] = []
    for stage, channels in enumerate((64, 128, 256), start=1):
        for i in (1, 2):
            nodes.append({"id": f"conv{stage}_{i}", "op": "conv2d", "out_channels": channels, "kernel_size": 3,
                          "padding": 1})
            nodes.append({"id": f"relu{stage}_{i}", "op": "relu"})
        nodes.append({"id": f"pool{stage}", "op": "max_pool2d", "kernel_size": 2})
    nodes += [{"id": "flatten", "op": "flatten"}, {"id": "fc", "op": "linear", "out_features": classes}]
    return {"input_shape": [3, size, size], "nodes": nodes}


MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def mobilenet_spec(size: int = 224, classes: int = 1000) -> dict:
    """MobileNet v1 (width 1.0) without batch norm: depthwise 3x3 then pointwise 1x1, each with ReLU6."""
    nodes: list[dict] = [
        {"id": "conv0", "op": "conv2d", "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1},
        {"id": "relu0", "op": "relu6"},
    ]
    channels = 32
    for i, (out, stride) in enumerate(MOBILENET_BLOCKS, start=1):
        nodes += [
            {"id": f"dw{i}", "op": "conv2d", "out_channels": channels, "kernel_size": 3, "stride": stride,
             "padding": 1, "groups": channels},
            {"id": f"dw{i}_relu", "op": "relu6"},
            {"id": f"pw{i}", "op": "conv2d", "out_channels": out, "kernel_size": 1},
            {"id": f"pw{i}_relu", "op": "relu6"},
        ]
        channels = out
    nodes += [{"id": "gap", "op": "global_avg_pool"}, {"id": "fc", "op": "linear", "out_features": classes}]
    return {"input_shape": [3, size, size], "nodes": nodes}


NETWORKS = {"vgg64": vgg_spec, "mobilenet224": mobilenet_spec}


# --- measuring ------------------------------------------------------------------------------------
def time_calls(call, runs: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call after ``warmup`` untimed calls: wall-clock, and CPU time of the whole process."""
    for _ in range(warmup):
        call()
    times: dict[str, list[float]] = {"wall": [], "cpu": []}
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        times["cpu"].append(time.process_time() - cpu)
        times["wall"].append(time.perf_counter() - wall)
    return times


def openblas_kernel() -> str:
    """The core type and thread count of the OpenBLAS that NumPy loaded (read from the library itself)."""
    libs = sorted(set(re.findall(r"/\S*openblas\S*\.so\S*", Path("/proc/self/maps").read_text())))
    for path in libs:
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "")):
            try:
                corename = getattr(lib, f"{prefix}get_corename{suffix}")
                threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
            except AttributeError:
                continue
            corename.restype = ctypes.c_char_p
            return f"OpenBLAS {corename().decode()} x{threads()} threads"
    return "BLAS: unknown"


def op_kind(op) -> str:
    """A node's op name, with convolutions told apart: depthwise, 1x1 (pointwise) or other."""
    from engine.layers.fast.depthwise import is_depthwise  # the engine's own test (the worker has ROOT on sys.path)

    name = op.op
    if name.startswith("conv") and "transpose" not in name:
        if is_depthwise(op.input_shapes[0][0], op.attrs.get("groups", 1)):
            return f"{name} depthwise"
        if all(k == 1 for k in np.atleast_1d(op.attrs["kernel_size"])):
            return f"{name} 1x1"
    return name


def time_by_kind(graph, call, runs: int) -> dict[str, float]:
    """Seconds per forward pass spent in each kind of op (``op_kind``): every node's median wall-clock time
    over ``runs`` passes, summed by kind; "(graph)" is the rest of the pass. Run after the timed passes:
    the wrappers add a little time of their own."""
    per_node: dict[str, list[float]] = {node.id: [] for node in graph.nodes}
    originals = {}
    for node in graph.nodes:
        forward = originals[node.id] = node.op.forward

        def timed(inputs, params, ctx, forward=forward, samples=per_node[node.id]):
            start = time.perf_counter()
            result = forward(inputs, params, ctx)
            samples.append(time.perf_counter() - start)
            return result

        node.op.forward = timed
    totals = []
    try:
        for _ in range(runs):
            start = time.perf_counter()
            call()
            totals.append(time.perf_counter() - start)
    finally:
        for node in graph.nodes:
            node.op.forward = originals[node.id]
    kinds: dict[str, float] = {}
    for node in graph.nodes:
        kind = op_kind(node.op)
        kinds[kind] = kinds.get(kind, 0.0) + statistics.median(per_node[node.id])
    kinds["(graph)"] = statistics.median(totals) - sum(kinds.values())
    return kinds


PASSES = ("lean", "record")


def run_worker(folder: Path, name: str, runs: int, warmup: int, breakdown: bool = False) -> None:
    """Child process: time the engine's lean and recording forward passes, save the output, print one JSON line."""
    sys.path.insert(0, str(ROOT))
    from engine.graph import Graph

    graph = Graph(json.loads((folder / f"{name}.json").read_text()))
    params = dict(np.load(folder / f"{name}_params.npz"))
    x = np.load(folder / f"{name}_input.npy")
    calls = {
        "lean": lambda: graph.forward(x, params, keep_caches=False, keep=()),
        "record": lambda: graph.forward(x, params, keep_caches=False),
    }
    times = {kind: time_calls(call, runs, warmup) for kind, call in calls.items()}
    lean, record = calls["lean"]().output, calls["record"]().output
    if not np.array_equal(lean, record):
        raise SystemExit("the lean pass's output differs from the recording pass's")
    np.save(folder / f"{name}_engine_out.npy", lean)
    result = {"times": times, "info": f"numpy {np.__version__}, {openblas_kernel()}"}
    if breakdown:
        result["kinds"] = time_by_kind(graph, calls["lean"], runs)
    print(json.dumps(result))


def child_env(threads: int, keep_openblas_env: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "MALLOC_MMAP_THRESHOLD_": "268435456",
        "MALLOC_TRIM_THRESHOLD_": "536870912",
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "BENCH_THREADS": str(threads),
    })
    if not keep_openblas_env:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    return env


def run_child(command: list[str], env: dict[str, str]) -> dict:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[-5:])} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for both sides (default 1)")
    parser.add_argument("--runs", type=int, default=9, help="timed forward passes per side (default 9)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forward passes first (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per side; best median kept")
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--keep-openblas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for the children")
    parser.add_argument("--engine-only", action="store_true", help="time the engine alone, without PyTorch")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print the engine's time per kind of op (median per node, fastest round)")
    parser.add_argument("--worker", nargs=4, metavar=("FOLDER", "NAME", "RUNS", "WARMUP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        folder, name, runs, warmup = args.worker
        run_worker(Path(folder), name, int(runs), int(warmup), args.breakdown)
        return

    sys.path.insert(0, str(ROOT))
    from engine.graph import Graph

    env = child_env(args.threads, args.keep_openblas_env)
    have_torch = not args.engine_only and importlib.util.find_spec("torch") is not None
    if not have_torch and not args.engine_only:
        print("PyTorch is not installed: timing the engine alone (pip install torch==2.13.0 for the comparison)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        folder = Path(tmp)
        for name in args.networks:
            spec = NETWORKS[name]()
            graph = Graph(spec)
            params = graph.init_params(seed=0)
            x = np.random.default_rng(0).standard_normal((1, *graph.input_shape)).astype(np.float32)
            (folder / f"{name}.json").write_text(json.dumps(spec))
            np.savez(folder / f"{name}_params.npz", **params)
            np.save(folder / f"{name}_input.npy", x)
            macs = sum(node.op.macs() for node in graph.nodes)

            common = [str(folder), name, str(args.runs), str(args.warmup)]
            medians: dict[tuple[str, str, str], list[float]] = {}
            breakdowns: list[dict[str, float]] = []
            worker = [sys.executable, str(Path(__file__).resolve()), *(["--breakdown"] if args.breakdown else []),
                      "--worker", *common]
            for _ in range(args.rounds):
                mine = run_child(worker, env)
                if "kinds" in mine:
                    breakdowns.append(mine["kinds"])
                sides = [("engine", mine)]
                if have_torch:
                    theirs = run_child([sys.executable, str(TORCH_SCRIPT), *common], env)
                    sides.append(("torch", theirs))
                for side, result in sides:
                    for kind in PASSES:
                        for clock in ("wall", "cpu"):
                            medians.setdefault((side, kind, clock), []).append(
                                statistics.median(result["times"][kind][clock]))
            out_mine = np.load(folder / f"{name}_engine_out.npy")
            out_theirs = np.load(folder / f"{name}_torch_out.npy") if have_torch else out_mine
            scale = float(np.max(np.abs(out_theirs)))
            error = float(np.max(np.abs(out_mine - out_theirs))) / max(scale, 1e-30)
            best = {key: min(values) for key, values in medians.items()}
            for kind in PASSES:
                rows.append((name, kind, macs, {(side, clock): t for (side, k, clock), t in best.items() if k == kind},
                             error))
            print(f"{name}: engine [{mine['info']}]" + (f", torch [{theirs['info']}]" if have_torch else ""))
            for key, values in sorted(medians.items()):
                print(f"  {key[0]:>6} {key[1]:>6} {key[2]:>4} ms per round: {[round(t * 1e3, 1) for t in values]}",
                      flush=True)
            if breakdowns:  # the round whose breakdown passes were fastest, so that its parts add up
                fastest = min(breakdowns, key=lambda kinds: sum(kinds.values()))
                order = sorted(fastest.items(), key=lambda kv: -kv[1])
                total = sum(fastest.values()) * 1e3
                print(f"  engine wall ms per kind of op in the lean pass (fastest round, {total:.1f} ms in all): "
                      + ", ".join(f"{kind} {seconds * 1e3:.2f}" for kind, seconds in order))

    clock = "cpu" if args.threads == 1 else "wall"
    print(f"\nforward pass, batch 1, float32, {args.threads} thread(s): best of {args.rounds} rounds of the median "
          f"of {args.runs} runs after {args.warmup} warm-up;")
    print(f"ratio on {clock} time; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not have_torch:
        print(f"{'network':<14}{'pass':<8}{'GMACs':>7}{'engine ms':>11}{'wall ms':>10}")
        for name, kind, macs, best, _ in rows:
            cpu_ms, wall_ms = best["engine", clock] * 1e3, best["engine", "wall"] * 1e3
            print(f"{name:<14}{kind:<8}{macs / 1e9:>7.3f}{cpu_ms:>11.1f}{wall_ms:>10.1f}")
        return
    print(f"{'network':<14}{'pass':<8}{'GMACs':>7}{'engine ms':>11}{'torch ms':>10}{'ratio':>7}{'goal':>7}"
          f"{'wall: engine':>14}{'torch':>7}{'ratio':>7}{'max rel. diff':>15}")
    failed = False
    for name, kind, macs, best, error in rows:
        ratio = best["engine", clock] / best["torch", clock]
        wall_ratio = best["engine", "wall"] / best["torch", "wall"]
        agree = error < 1e-4
        failed |= not agree
        print(f"{name:<14}{kind:<8}{macs / 1e9:>7.3f}{best['engine', clock] * 1e3:>11.1f}"
              f"{best['torch', clock] * 1e3:>10.1f}"
              f"{ratio:>7.2f}{'met' if ratio <= GOAL else 'MISSED':>7}{best['engine', 'wall'] * 1e3:>14.1f}"
              f"{best['torch', 'wall'] * 1e3:>7.1f}{wall_ratio:>7.2f}{error:>15.2e}"
              f"{'' if agree else '  OUTPUTS DISAGREE'}")
    if failed:
        raise SystemExit("the engine's output does not match PyTorch's")


if __name__ == "__main__":
    main()
