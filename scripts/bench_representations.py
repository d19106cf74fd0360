"""Speed of the representations view's computations (engine.learned): t-SNE, feature extraction and linear probes.

    .venv/bin/python scripts/bench_representations.py [--threads 1] [--models digits_classic digits_resnet]
                                                      [--skip-probes]

- **t-SNE**: exact t-SNE (``engine.learned.projection.tsne``, the reference settings: PCA to 50 dimensions,
  perplexity 30, 1,000 steps) of the 2,000 held-out digits' pixels, split into its input similarities (PCA,
  distances, the perplexity search) and its 1,000 steps. Goal (issue 15): well under a minute on this 2-core
  machine. When scikit-learn is installed, its ``TSNE`` (Barnes-Hut, the default, and exact) runs on the same
  points for comparison; it is not a dependency and is never installed for this.
- **Features**: ``engine.learned.features.extract_features`` of the 10,000 shipped digits at every probed node of
  each digit model (lean forward passes, batches of 250; what the probes job extracts, in one pass here).
- **Probes**: ``engine.learned.probes.train_probe`` at every probed node (8,000 training digits, 2,000 held out),
  with each layer's time, L-BFGS iterations and held-out accuracy.

BLAS runs with ``--threads`` threads (1 by default, as the server runs: ``app.core.cpu``), set before NumPy loads.
Wall-clock and CPU times are printed; the machine is shared, so the CPU time is the steadier figure. This prints
figures; it is not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> str:
    wall, cpu = clocks()
    return f"{wall - start[0]:7.2f} s wall, {cpu - start[1]:7.2f} s CPU"


def bench_tsne() -> None:
    import numpy as np

    from engine.datasets import load_mnist
    from engine.learned.projection import TSNEConfig, input_similarities, tsne

    x, labels = load_mnist("test", normalize=False)
    x = x.reshape(len(x), -1).astype(np.float64)
    config = TSNEConfig()
    print(f"t-SNE of the 2,000 held-out digits' pixels (784 features; PCA to {config.initial_dims}, perplexity "
          f"{config.perplexity:g}, {config.iterations} steps, exact):")
    start = clocks()
    input_similarities(x, config)
    print(f"  input similarities (PCA, distances, perplexity search): {since(start)}")
    start = clocks()
    result = tsne(x, config)
    print(f"  whole run (similarities + {config.iterations} steps):       {since(start)}   final KL "
          f"{result.final_kl:.4f}, 5-NN accuracy in 2D {knn_accuracy(result.embedding, labels):.3f}")
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        print("  scikit-learn is not installed: no comparison with sklearn.manifold.TSNE")
        return
    from engine.learned.projection import pca

    reduced = pca(x, config.initial_dims).coords
    for method in ("barnes_hut", "exact"):
        start = clocks()
        theirs = TSNE(n_components=2, perplexity=config.perplexity, method=method, init="random", random_state=0,
                      learning_rate=200.0).fit(reduced)
        print(f"  sklearn TSNE ({method}):{' ' * (31 - len(method))}{since(start)}   final KL "
              f"{theirs.kl_divergence_:.4f}, 5-NN accuracy in 2D {knn_accuracy(theirs.embedding_, labels):.3f}")


def knn_accuracy(embedding, labels, k: int = 5) -> float:
    """Share of points whose k nearest neighbours in 2D mostly carry their own label (ties: the smaller label)."""
    import numpy as np

    d = ((embedding[:, None, :] - embedding[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    votes = np.array([np.bincount(labels[row], minlength=10).argmax() for row in nearest])
    return float(np.mean(votes == labels))


def bench_model(model_id: str, probes: bool) -> None:
    from engine.datasets import load_mnist
    from engine.learned.features import extract_features
    from engine.learned.probes import probe_nodes, train_probe
    from engine.models import registry

    bundle = registry.load_model(model_id)
    nodes = probe_nodes(bundle.graph)
    x, y = load_mnist("all")
    print(f"\n{model_id}: probed nodes {', '.join(nodes)}")
    start = clocks()
    features = extract_features(bundle.graph, bundle.params, x, nodes)
    total = sum(f.nbytes for f in features.values()) / 2**20
    print(f"  features of the 10,000 digits at {len(nodes)} nodes ({total:.0f} MiB of float32): {since(start)}")
    if not probes:
        return
    overall = clocks()
    for node in nodes:
        start = clocks()
        found = train_probe(features[node][:8000], y[:8000], features[node][8000:], y[8000:], classes=10)
        print(f"  probe {node:14s} {features[node].shape[1]:5d} features: {since(start)}   {found.iterations:3d} "
              f"L-BFGS steps, held-out accuracy {100 * found.test_accuracy:.2f}%")
    print(f"  every probe: {since(overall)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1, as the server)")
    parser.add_argument("--models", nargs="+", default=["digits_classic", "digits_resnet"])
    parser.add_argument("--skip-probes", action="store_true", help="features only")
    parser.add_argument("--skip-tsne", action="store_true")
    args = parser.parse_args()
    if "numpy" in sys.modules:
        raise SystemExit("NumPy was imported before the thread count could be set")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    print(f"BLAS threads: {args.threads}; {os.cpu_count()} cores\n")
    if not args.skip_tsne:
        bench_tsne()
    for model_id in args.models:
        bench_model(model_id, probes=not args.skip_probes)


if __name__ == "__main__":
    main()
