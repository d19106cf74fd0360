"""Benchmark: predict on EfficientNet-Lite0 end to end (upload a 640×480 JPEG over HTTP, get the JSON).

Starts a real server on 127.0.0.1, warms it up, then times sequential requests and prints the
median (goal: at most 150 ms on the reference machine) and the spread, plus the server-side
forward-pass time the API reports.

    .venv/bin/python scripts/bench_predict.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import MODEL, ROOT, Server, multipart, photo_jpeg

GOAL_MS = 150


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    args = parser.parse_args()
    body, content_type = multipart("image", "photo.jpg", photo_jpeg(640, 480), "image/jpeg")
    totals, forwards = [], []
    with Server(1, args.data_dir) as server:
        url = f"{server.url}/api/models/{MODEL}/predict"
        for i in range(args.repeats + 2):
            request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=300) as response:
                data = json.loads(response.read())
            if i >= 2:  # the first two warm up (model load, allocator)
                totals.append((time.perf_counter() - start) * 1000)
                forwards.append(data["elapsed_ms"])
    median = statistics.median(totals)
    print(f"predict {MODEL}, 640x480 JPEG ({len(body) // 1024} KB), {args.repeats} sequential requests")
    print(f"end to end ms: median {median:.0f}, min {min(totals):.0f}, max {max(totals):.0f}, "
          f"stdev {statistics.pstdev(totals):.0f}")
    print(f"of which forward pass ms (server-side): median {statistics.median(forwards):.0f}")
    print(f"goal: median <= {GOAL_MS} ms: {'met' if median <= GOAL_MS else 'NOT met'}")
    print(f"top-1: {data['classes'][0]['label']} ({data['classes'][0]['probability']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
