"""A real full disk and a real read-only data directory: a server started in its own mount namespace
(``unshare -rm``) on a small tmpfs, filled up or remounted read-only. Skipped where user namespaces or tmpfs
mounts are not permitted.

The files the server sees are read from outside through ``/proc/<pid>/root``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from app.services.models import ModelStore
from app.services.owners import hash_token
from tests.api.conftest import npy_bytes, png_bytes, tiny_bundle

onnx = pytest.importorskip("onnx")
from tests.api.routes.test_models_upload import small_onnx  # noqa: E402
from tests.api.test_storage_kill import OWNER_TOKEN, multipart, request, start_server  # noqa: E402

#: runs in the new mount namespace: mount the tmpfs, copy the seed data in, fill it or make it read-only, then exec
SETUP = """set -e
mount -t tmpfs -o size="$SIZE" tmpfs "$DATA"
cp -a "$SEED/." "$DATA/"
if [ "$FILL" = 1 ]; then dd if=/dev/zero of="$DATA/filler" bs=4096 2>/dev/null || true; fi
if [ "$READ_ONLY" = 1 ]; then mount -o remount,ro "$DATA"; fi
exec "$@"
"""


@pytest.fixture(scope="module")
def namespaces(tmp_path_factory) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare is not installed")
    target = tmp_path_factory.mktemp("probe")
    probe = subprocess.run([unshare, "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {target}"],
                           capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"tmpfs mounts in a user namespace are not permitted here: {probe.stderr.decode()[:200]}")


def seeded(tmp_path: Path) -> tuple[Path, str]:
    """A data directory holding one uploaded model; returns it and the model's id."""
    seed = tmp_path / "seed"
    model, _ = ModelStore(seed, builtins={"tiny": tiny_bundle}).add_onnx(small_onnx(seed=1), "kept.onnx", None, None,
                                                                             owner=hash_token(OWNER_TOKEN))
    return seed, model.id


def start_on_tmpfs(tmp_path: Path, seed: Path, size: str, fill: bool = False, read_only: bool = False):
    data = tmp_path / "data"
    data.mkdir()
    wrap = lambda argv: ["unshare", "-rm", "sh", "-c", SETUP, "setup", *argv]  # noqa: E731
    process, base = start_server(data, wrap, env={"SIZE": size, "DATA": str(data), "SEED": str(seed),
                                                  "FILL": str(int(fill)), "READ_ONLY": str(int(read_only))})
    return process, base, Path(f"/proc/{process.pid}/root") / str(data).lstrip("/")


def models_listed(base: str) -> list[str]:
    status, answer = request(f"{base}/api/models")
    assert status == 200, answer
    body = json.loads(answer)
    assert body.get("unavailable", []) == []
    return [m["id"] for m in body["models"]]


def test_a_real_read_only_data_dir(namespaces, tmp_path):
    seed, kept = seeded(tmp_path)
    process, base, seen = start_on_tmpfs(tmp_path, seed, "4m", read_only=True)
    try:
        assert kept in models_listed(base)  # EfficientNet converted in memory: its cache cannot be written
        status, answer = request(f"{base}/api/models", *multipart(small_onnx(seed=2)))
        assert status == 503, answer
        assert "may not write to its data directory" in json.loads(answer)["detail"]
        x = npy_bytes(np.zeros((1, 3, 8, 8), np.float32))
        assert request(f"{base}/api/models/{kept}/forward", x, "application/x-npy")[0] == 200
        body, content_type = multipart_image()
        status, answer = request(f"{base}/api/models/{kept}/activations", body, content_type)
        assert status == 200, answer
        run_id = json.loads(answer)["run_id"]
        assert request(f"{base}/api/runs/{run_id}/nodes/conv.png")[0] == 200
        status, answer = request(f"{base}/api/models/{kept}", method="DELETE")
        assert status == 503, answer
        assert kept in models_listed(base)
        assert sorted(p.name for p in (seen / "models").iterdir()) == [".staging.lock", kept]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_real_full_disk(namespaces, tmp_path):
    seed, kept = seeded(tmp_path)
    process, base, seen = start_on_tmpfs(tmp_path, seed, "1m", fill=True)
    try:
        assert (seen / "filler").is_file()
        status, answer = request(f"{base}/api/models", *multipart(small_onnx(seed=2)))
        assert status == 507, answer
        assert "disk is full" in json.loads(answer)["detail"]
        assert sorted(p.name for p in (seen / "models").iterdir()) == [".staging.lock", kept]
        body, content_type = multipart_image()
        status, answer = request(f"{base}/api/models/{kept}/activations", body, content_type)
        assert status == 200, answer
        runs = seen / "runs"
        assert not runs.is_dir() or list(runs.iterdir()) == []  # no half-written input: the run is in memory only
        assert request(f"{base}/api/runs/{json.loads(answer)['run_id']}/nodes/conv.png")[0] == 200
        status, answer = request(f"{base}/api/models/{kept}", method="DELETE")
        assert status == 204, answer  # deleting still works on a full disk, and frees space
        assert sorted(p.name for p in (seen / "models").iterdir()) == [".staging.lock"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def multipart_image() -> tuple[bytes, str]:
    boundary = "x7y8z9"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
