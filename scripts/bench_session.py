"""Benchmark: the server's CPU cost of one explorer session on EfficientNet-Lite0, before and after.

A session is what opening the explorer on one photo costs the server: the run (POST .../activations: one
forward pass), the statistics of every node, and every node's feature-map PNG as GET
/api/runs/{id}/nodes/{node}.png makes it (tiles, layout header). Each is done here in one process, exactly as
the routes do it, and timed in CPU seconds (``time.process_time``: every thread of the process).

"Before" is the code of a git revision (``--before``: its ``app/services/runs.py`` and ``app/services/tiles.py``
loaded as modules, and the PNG route's two lines), "after" the working tree. Both run the same model on the same
input, alternately, ``--repeats`` times each with a fresh run store (the median is printed); then a second
session on the same photo (the next student's, the run already cached). The PNGs of both are decoded and compared
pixel by pixel (PNG is lossless: only the bytes may differ). Goal: a whole session costs at most a third of before.

The run's CPU time depends on OpenBLAS's threads: by default one per core, and threads waiting for work spin,
which ``time.process_time`` counts (on a busy 2-vCPU machine, the forward pass costs ~0.45 s of CPU with two
threads against ~0.05 s with one). ``--blas-threads N`` runs the comparison with ``OPENBLAS_NUM_THREADS=N``.

    .venv/bin/python scripts/bench_session.py [--repeats 5] [--image static/samples/cat.jpg] [--data-dir data]
                                              [--blas-threads 1]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from app.services import runs as runs_after  # noqa: E402
from app.services.inputs import ModelInput, prepare_input  # noqa: E402
from app.services.models import ModelStore, StoredModel  # noqa: E402
from engine.graph import INPUT  # noqa: E402

MODEL = "efficientnet_lite0"
BEFORE = "cbb3eda"  # the last commit before the session-cost work
PHASES = ("run", "stats", "pngs")
PngOf = Callable[[object, object, str], tuple[bytes, str]]


def module_at(revision: str, path: str, name: str) -> types.ModuleType:
    """``path`` as it was at git ``revision``, imported as module ``name``."""
    source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    module = types.ModuleType(name)
    module.__file__ = f"{revision}:{path}"
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # our own code, from git
    return module


def before_png(tiles: types.ModuleType) -> PngOf:
    """GET .../nodes/{node}.png before: every request renders and encodes with Pillow."""
    def png_of(store, run, node_id: str) -> tuple[bytes, str]:
        png, layout = tiles.render_tiles(run.activations[node_id][0], "channel")
        return png, json.dumps(layout.model_dump(exclude={"ranges"}))
    return png_of


def after_png(store, run, node_id: str) -> tuple[bytes, str]:
    """GET .../nodes/{node}.png now: the run store's PNG, encoded once per run."""
    return store.node_png(run, node_id, "channel")


def session(runs_module: types.ModuleType, png_of: PngOf, model: StoredModel, x: np.ndarray, directory: Path,
            store=None) -> tuple[dict[str, float], dict[str, tuple[bytes, str]], object]:
    """One explorer session: CPU seconds per phase, every node's PNG and layout header, and the run store."""
    store = store or runs_module.RunStore(directory)
    node_ids = [INPUT, *(node.id for node in model.graph.nodes)]
    gc.collect()
    seconds: dict[str, float] = {}
    start = time.process_time()
    run, _ = store.create(model, x)  # POST .../activations
    seconds["run"] = time.process_time() - start
    start = time.process_time()
    for node_id in node_ids:
        store.stats(run, node_id)
    seconds["stats"] = time.process_time() - start
    start = time.process_time()
    pngs = {node_id: png_of(store, run, node_id) for node_id in node_ids}  # GET .../nodes/{node}.png
    seconds["pngs"] = time.process_time() - start
    seconds["session"] = sum(seconds[phase] for phase in PHASES)
    return seconds, pngs, store


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="sessions of each kind (the median is printed)")
    parser.add_argument("--image", default=str(ROOT / "static" / "samples" / "cat.jpg"))
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="where the converted weights are cached")
    parser.add_argument("--before", default=BEFORE, help="the git revision to compare with")
    parser.add_argument("--blas-threads", type=int, help="OPENBLAS_NUM_THREADS (default: as set, else OpenBLAS's)")
    args = parser.parse_args()
    if args.blas_threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.blas_threads):
        # OpenBLAS reads it when NumPy loads it: start again with it set
        environment = {**os.environ, "OPENBLAS_NUM_THREADS": str(args.blas_threads)}
        os.execve(sys.executable, [sys.executable, *sys.argv], environment)
    runs_before = module_at(args.before, "app/services/runs.py", "before_runs")
    png_before = before_png(module_at(args.before, "app/services/tiles.py", "before_tiles"))
    model = ModelStore(Path(args.data_dir)).get(MODEL)
    image = Path(args.image)
    x = prepare_input(ModelInput("image", image.read_bytes(), image.name), model, 1 << 26, 1 << 26, 1 << 26).x
    kinds = {"before": (runs_before, png_before), "after": (runs_after, after_png)}
    cold: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    warm: dict[str, list[float]] = {kind: [] for kind in kinds}
    pngs: dict[str, dict[str, tuple[bytes, str]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        session(runs_after, after_png, model, x, Path(scratch) / "warm-up")  # first-use costs: allocator, imports
        for repeat in range(args.repeats):
            for kind, (module, png_of) in kinds.items():
                directory = Path(scratch) / f"{kind}-{repeat}"
                seconds, pngs[kind], store = session(module, png_of, model, x, directory)
                cold[kind].append(seconds)
                warm[kind].append(session(module, png_of, model, x, directory, store)[0]["session"])
    nodes = list(pngs["after"])
    same = sum(np.array_equal(pixels(pngs["before"][n][0]), pixels(pngs["after"][n][0])) for n in nodes)
    same_headers = sum(pngs["before"][n][1] == pngs["after"][n][1] for n in nodes)
    sent = {kind: sum(len(png) for png, _ in pngs[kind].values()) for kind in kinds}

    def median(kind: str, phase: str) -> float:
        return statistics.median(s[phase] for s in cold[kind])

    print(f"{MODEL} on {image.name}: {len(nodes)} nodes; CPU seconds (time.process_time), median of "
          f"{args.repeats} sessions each; before = {args.before}, after = working tree")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset (one per core)')}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'':34}{'before':>10}{'after':>10}")
    for phase, label in [("run", "run (forward pass, hash)"), ("stats", "statistics of every node"),
                         ("pngs", "PNG of every node")]:
        print(f"{label:34}{median('before', phase):10.3f}{median('after', phase):10.3f}")
    total_before, total_after = median("before", "session"), median("after", "session")
    print(f"{'whole session':34}{total_before:10.3f}{total_after:10.3f}   "
          f"({total_after / total_before:.2f} of before)")
    print(f"{'same photo again (run cached)':34}{statistics.median(warm['before']):10.3f}"
          f"{statistics.median(warm['after']):10.3f}")
    print(f"{'PNG bytes sent':34}{sent['before'] / 1e6:9.2f}M{sent['after'] / 1e6:9.2f}M   "
          f"({sent['after'] / sent['before']:.2f} of before)")
    print(f"pixels identical: {same} of {len(nodes)} nodes; X-Tile-Layout identical: {same_headers} of {len(nodes)}")
    met = total_after <= total_before / 3 and same == same_headers == len(nodes)
    print(f"goal: a session at most a third of before, same pixels: {'met' if met else 'NOT met'}")
    return 0 if same == same_headers == len(nodes) else 1


if __name__ == "__main__":
    sys.exit(main())
