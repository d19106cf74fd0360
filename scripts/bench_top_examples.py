"""Benchmark: the top examples of every channel of the digit models, how long they take, and what they show.

    .venv/bin/python scripts/bench_top_examples.py [--models digits_classic digits_resnet] [--lab] [--threads 1]

For each model, ``engine.learned.top_examples.top_examples`` over the 10,000 shipped digits (k = 16, every node with
channels), timed (wall-clock seconds on this machine, ``--threads`` BLAS threads). Then per layer what the examples
say: the *label purity* of a channel, the share of its 16 top digits that show its most common label, averaged over
the layer's channels, beside the same figure for 16 digits drawn at random (the control: what purity says about a
channel that picks digits regardless of their class); and the channels whose 16 examples are all tied (a channel
that never fires). ``--lab`` adds the training lab's largest network (depth 16, width 64) with random weights, for
its time only. A benchmark prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def purity(labels):
    """Mean over rows of the share of the row's most common label: ``labels: (C, K)`` ints."""
    import numpy as np

    counts = np.stack([np.bincount(row, minlength=10) for row in labels])
    return float((counts.max(axis=1) / labels.shape[1]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["digits_classic", "digits_resnet"])
    parser.add_argument("--lab", action="store_true", help="also time the lab's largest network (random weights)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)

    import numpy as np

    from engine.datasets.mnist import load_mnist
    from engine.graph import Graph
    from engine.learned.top_examples import MAX_K, batch_size_for, channel_nodes, top_examples
    from engine.models.digits import lab_spec
    from engine.models.registry import load_model

    x, y = load_mnist("all")
    rng = np.random.default_rng(0)
    control = purity(y[rng.integers(0, len(y), size=(2000, MAX_K))])
    print(f"10,000 digits, k = {MAX_K}, {args.threads} thread(s); control: 16 random digits have purity "
          f"{control:.0%}")
    for model_id in args.models:
        bundle = load_model(model_id)
        graph = bundle.graph
        started = time.perf_counter()
        found = top_examples(graph, bundle.params, x, k=MAX_K)
        seconds = time.perf_counter() - started
        channels = sum(f.channels for f in found.values())
        print(f"\n{model_id}: {len(found)} nodes, {channels} channels, batch "
              f"{batch_size_for(graph, channel_nodes(graph))}: {seconds:.2f} s")
        print(f"  {'node':<14} {'shape':<12} {'purity':>7} {'tied':>6}")
        for node_id, f in found.items():
            tied = int((f.values == f.values[:, :1]).all(axis=1).sum())
            shape = "×".join(map(str, graph.node(node_id).output_shape))
            print(f"  {node_id:<14} {shape:<12} {purity(y[f.indices]):>7.0%} {tied:>3}/{f.channels:<3}")
    if args.lab:
        graph = Graph(lab_spec(depth=16, width=64))
        params = graph.init_params(seed=0)
        started = time.perf_counter()
        found = top_examples(graph, params, x, k=MAX_K)
        print(f"\nlab network depth 16, width 64 (random weights): {len(found)} nodes, "
              f"{sum(f.channels for f in found.values())} channels: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
