"""Benchmark: attention maps on EfficientNet-Lite0 at 224 x 224 beside the engine's own forward pass.

    .venv/bin/python scripts/bench_attention.py [--repeats 5]

Prints the median time of a plain forward pass, of Grad-CAM (one forward with caches and a backward
from the score down to the chosen layer only) and their ratio (goal: at most 2.5), then the batched
many-pass methods. Run it on a quiet machine; thread counts come from the environment.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.imaging import load_image_file  # noqa: E402
from engine.attention import explain  # noqa: E402
from engine.models.registry import load_model  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: first-touch page faults and caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bundle = load_model("efficientnet_lite0")
    graph, params = bundle.graph, bundle.params
    x = bundle.preprocessing.normalize(load_image_file(ROOT / "static/samples/cat.jpg", bundle.preprocessing))

    forward = median_time(lambda: graph.forward(x, params, keep_caches=False), args.repeats)
    gradcam = median_time(lambda: explain(graph, params, x, "gradcam"), args.repeats)
    print(f"EfficientNet-Lite0, 224 x 224, batch 1, median of {args.repeats}")
    print(f"{'engine forward':<34}{forward * 1000:9.1f} ms")
    print(f"{'Grad-CAM (forward + backward)':<34}{gradcam * 1000:9.1f} ms   {gradcam / forward:5.2f} x forward"
          f"   (goal <= 2.5 x)")
    many = [
        ("saliency", {}, "1 forward + 1 full backward"),
        ("integrated_gradients", {"steps": 32}, "32 path points, batches of 16"),
        ("smoothgrad", {"samples": 16}, "16 noisy copies, batches of 16"),
        ("scorecam", {"max_channels": 64}, "64 masked inputs, batches of 16"),
        ("occlusion", {"window": 56, "stride": 28}, "49 occluded copies, batches of 32"),
    ]
    for method, options, what in many:
        seconds = median_time(lambda m=method, o=options: explain(graph, params, x, m, **o), max(1, args.repeats // 2))
        print(f"{method:<34}{seconds * 1000:9.1f} ms   {seconds / forward:5.1f} x forward   ({what})")


if __name__ == "__main__":
    main()
