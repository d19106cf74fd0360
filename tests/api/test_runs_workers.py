"""On a real uvicorn server with ``--workers 2`` (``CNN_VIS_WORKERS=2``, as ``cnn-visualiser serve`` sets it): a
run is computed once on the machine. The explorer's PNG fetches reach both workers (a new connection each), and
the ``compute_trace_file`` shows one forward pass in all: the other worker maps the run's shared file."""

from __future__ import annotations

import io
import json
import urllib.request

import numpy as np

from tests.api.live_server import start_uvicorn, stop_uvicorn

DIGITS = "digits_classic"


def fetch(url: str, body: bytes | None = None) -> tuple[int, bytes, str]:
    """One request on a new connection: status, body and the answering worker's pid (from the trace, later)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-npy"} if body else {})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.status, answer.read(), answer.headers.get("content-type", "")


def test_the_png_fetches_of_a_run_cost_one_forward_pass_on_the_machine(tmp_path):
    trace = tmp_path / "trace.txt"
    process, base = start_uvicorn({"CNN_VIS_DATA_DIR": str(tmp_path / "data"), "CNN_VIS_WORKERS": "2",
                                   "CNN_VIS_COMPUTE_TRACE_FILE": str(trace), "CNN_VIS_PRELOAD": "false"}, 2)
    try:
        x = np.random.default_rng(3).random((1, 1, 28, 28), dtype=np.float32)
        buffer = io.BytesIO()
        np.save(buffer, x)
        status, body, _ = fetch(f"{base}/api/models/{DIGITS}/activations", buffer.getvalue())
        assert status == 200
        nodes = json.loads(body)["nodes"]
        pngs = {}
        for _ in range(6):  # 6 rounds over every node, each on a new connection: both workers answer some
            for node in nodes:
                status, png, kind = fetch(base + node["png_url"])
                assert status == 200 and kind == "image/png"
                assert pngs.setdefault(node["id"], png) == png  # the same picture, whichever worker drew it
        passes = trace.read_text().splitlines() if trace.exists() else []
        assert len(passes) == 1, passes  # the activations' pass; no worker recomputed it for a PNG
    finally:
        stop_uvicorn(process)
