"""A smoke test of ``scripts/load_test.py``'s lecture and explorer modes: a couple of seconds each against a real
uvicorn server, on the small digit networks (the real runs use EfficientNet-Lite0 for a minute)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_script(*args: str, data_dir: Path) -> str:
    env = {**os.environ, "CNN_VIS_PRELOAD": "false"}
    for name in ("CNN_VIS_ALLOWED_HOSTS", "CNN_VIS_HOST", "CNN_VIS_WORKERS"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "scripts/load_test.py", *args, "--image-model", "digits_resnet",
                           "--data-dir", str(data_dir), "--quiet-server"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def result(output: str, mode: str) -> dict[str, float]:
    """The figures of the ``RESULT <mode> k=v ...`` line."""
    line = re.search(rf"^RESULT {mode} (.*)$", output, re.MULTILINE)
    assert line, output
    return {k: float(v) for k, v in (pair.split("=") for pair in line.group(1).split())}


def test_the_lecture_and_explorer_modes_print_their_figures(tmp_path):
    lecture = run_script("--mode", "lecture", "--workers", "1", "--clients", "3", "--seconds", "2",
                         "--settle", "1", data_dir=tmp_path)
    for kind in ("activations", "feature-map png", "gradcam", "predict digits_classic", "predict digits_resnet"):
        assert re.search(rf"^  {kind} +\d+ +0 ", lecture, re.MULTILINE), lecture
    assert "errors by status: none" in lecture
    assert re.search(r"/api/health every 0\.5 s: \d+ probes, worst \d+ ms", lecture)
    assert re.search(r"resident memory of all server processes, MiB: ready \d+, before the load \d+, peak \d+, "
                     r"0 s after the load \d+, 1 s after \d+", lecture)
    figures = result(lecture, "lecture")
    assert figures["errors"] == 0 and figures["throughput"] > 0 and figures["peak_mib"] > 0

    explorer = run_script("--mode", "explorer", "--workers", "2", "--students", "4", "--seconds", "1",
                          data_dir=tmp_path)
    assert "sessions: 4 complete of 4" in explorer and "errors by status: none" in explorer
    figures = result(explorer, "explorer")
    assert figures["workers"] == 2 and figures["sessions"] == 4
    assert 0 < figures["p50_s"] <= figures["p95_s"] and figures["cpu_per_session_s"] > 0
