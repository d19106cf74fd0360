"""PyTorch side of ``bench_engine.py``: run a saved graph spec with PyTorch's functional ops and time it.

    python scripts/bench_torch_reference.py FOLDER NAME RUNS WARMUP

Reads ``NAME.json`` (a sequential graph spec), ``NAME_params.npz`` and ``NAME_input.npy`` from FOLDER,
runs the forward pass under ``torch.inference_mode()`` with ``BENCH_THREADS`` threads, saves the output
as ``NAME_torch_out.npy`` and prints one JSON line ``{"times": {"lean": ..., "record": ...}, "info": ...}``:
"lean" is the plain forward pass, "record" the same pass keeping every layer's output in a list (as the
engine's recording pass keeps every activation). The engine is used
only to read the spec into canonical attributes (per-axis tuples, padding pairs); the maths is PyTorch's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (PyTorch's own convention)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import time_calls  # noqa: E402

from engine.graph import INPUT, Graph  # noqa: E402


def _padded(x: torch.Tensor, padding, value: float = 0.0) -> tuple[torch.Tensor, list[int]]:
    """PyTorch pads symmetrically: pass equal pairs through, apply unequal ones with F.pad first."""
    if all(b == a for b, a in padding):
        return x, [b for b, _ in padding]
    flat = [p for pair in reversed(padding) for p in pair]
    return F.pad(x, flat, value=value), [0] * len(padding)


def build(graph: Graph, params: dict[str, torch.Tensor]):
    """A function running ``graph`` on a tensor with torch.nn.functional (sequential graphs only)."""
    steps = []
    previous = INPUT
    for node in graph.nodes:
        if node.inputs != [previous]:
            raise SystemExit(f"node '{node.id}': the reference handles sequential graphs only")
        previous = node.id
        a = node.op.describe()
        w, b = params.get(f"{node.id}.weight"), params.get(f"{node.id}.bias")
        if node.op.op == "conv2d":
            def step(x, a=a, w=w, b=b):
                x, pad = _padded(x, a["padding"])
                return F.conv2d(x, w, b, a["stride"], pad, a["dilation"], a["groups"])
        elif node.op.op == "max_pool2d":
            def step(x, a=a):
                x, pad = _padded(x, a["padding"], -float("inf"))
                return F.max_pool2d(x, a["kernel_size"], a["stride"], pad, a["dilation"], a["ceil_mode"])
        elif node.op.op == "avg_pool2d":
            def step(x, a=a):
                pad = [b for b, _ in a["padding"]]
                return F.avg_pool2d(x, a["kernel_size"], a["stride"], pad, a["ceil_mode"], a["count_include_pad"])
        elif node.op.op == "relu":
            step = F.relu
        elif node.op.op == "relu6":
            step = F.relu6
        elif node.op.op == "flatten":
            def step(x):
                return torch.flatten(x, 1)
        elif node.op.op == "global_avg_pool":
            def step(x):
                return x.mean(dim=tuple(range(2, x.dim())))
        elif node.op.op == "linear":
            def step(x, w=w, b=b):
                return F.linear(x, w, b)
        else:
            raise SystemExit(f"node '{node.id}': op '{node.op.op}' has no PyTorch reference here")
        steps.append(step)

    def forward(x: torch.Tensor, record: list[torch.Tensor] | None = None) -> torch.Tensor:
        for step in steps:
            x = step(x)
            if record is not None:
                record.append(x)
        return x

    return forward


def main() -> None:
    folder, name, runs, warmup = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    threads = int(os.environ.get("BENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    graph = Graph(json.loads((folder / f"{name}.json").read_text()))
    params = {k: torch.from_numpy(v) for k, v in np.load(folder / f"{name}_params.npz").items()}
    x = torch.from_numpy(np.load(folder / f"{name}_input.npy"))
    forward = build(graph, params)
    with torch.inference_mode():
        times = {"lean": time_calls(lambda: forward(x), runs, warmup),
                 "record": time_calls(lambda: forward(x, []), runs, warmup)}
        np.save(folder / f"{name}_torch_out.npy", forward(x).numpy())
    onednn = torch.backends.mkldnn.is_available()
    info = f"torch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN {onednn}"
    print(json.dumps({"times": times, "info": info}))


if __name__ == "__main__":
    main()
