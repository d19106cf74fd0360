"""Benchmark: what a big ONNX upload (VGG-16, 528 MiB of float32 weights) costs, stage by stage, in time and memory.

Builds a VGG-16-sized ONNX model (torchvision's layout: 13 convolutions, 5 max pools, 3 fully connected layers)
with random float32 weights through ``onnx.helper``, nothing downloaded, then runs each stage in a fresh process
and prints its time and that process's resident memory before the stage, at the stage's peak and after it
(VmRSS and VmHWM from /proc/self/status; the peak is reset before each stage through /proc/self/clear_refs):

  read file   the upload's bytes, as the route reads them from the spooled upload
  parse       onnx.load_model_from_string
  safety      app/importers/onnx_safety.py's checks before any tensor is converted (text fields, external data)
  checker     onnx.checker.check_model, which the importer runs
  import      app.importers.onnx_import.import_onnx, the whole importer (all of the above, then the conversion):
              from the bytes (held after: the bytes and the weights), and from the file, as the store imports an
              upload (held after: the weights)
  engine      Graph(spec), check_params and activation_count, the store's checks
  store       the weights written as the compressed .npz stored models used before (np.savez_compressed) and
              with today's engine.models.weights.save_weights: time and size
  load        each read back in a fresh process (np.load of the compressed file; today's read_weights), and the
              first forward pass of one 224 x 224 image after it; then two processes that map today's file and
              read all of it: each one's resident memory and its proportional share (shared pages count half)

Then the same model uploaded through a real server (``cnn-visualiser serve``, one worker, its model limit set to
the file's size), streamed from the file in 1 MiB pieces: the time from the first byte sent, and from the last, to
the 201, the server's peak resident memory meanwhile, the first forward pass (``POST /api/models/{id}/forward``)
and the server's resident memory after it. "anon" is the part of the resident memory that is not a mapped file
(mapped weights are file pages every worker shares, which the kernel can drop and read again).

    .venv/bin/python scripts/bench_model_upload.py [--model vgg16|vgg11] [--work-dir DIR] [--skip-server]

Everything runs with one BLAS thread, as the server does (``CNN_VIS_BLAS_THREADS``). The ONNX file is kept in
``--work-dir`` and reused by later runs; the data directory there is emptied first.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

MIB = 1024 * 1024
#: torchvision's VGG configurations: output channels of each 3x3 convolution, "M" a 2x2 max pool
CONFIGS = {"vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
           "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


# --- the model ----------------------------------------------------------------------------------

def vgg_onnx(model: str, path: Path, seed: int = 0) -> None:
    """Write a VGG (``CONFIGS[model]``) for [1, 3, 224, 224] inputs with He-initialised random weights to ``path``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    x, channels = "input", 3

    def tensor(name: str, shape: tuple[int, ...], fan_in: int) -> str:
        value = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        weights.append(numpy_helper.from_array(value, name))
        return name

    for i, layer in enumerate(CONFIGS[model]):
        if layer == "M":
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}"], name=f"pool{i}", kernel_shape=[2, 2],
                                          strides=[2, 2]))
            x = f"pool{i}"
            continue
        w = tensor(f"features.{i}.weight", (layer, channels, 3, 3), channels * 9)
        b = tensor(f"features.{i}.bias", (layer,), channels * 9)
        nodes += [helper.make_node("Conv", [x, w, b], [f"conv{i}"], name=f"conv{i}", kernel_shape=[3, 3],
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}")]
        x, channels = f"relu{i}", layer
    nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flatten", axis=1))
    x, features = "flat", channels * 7 * 7
    for j, out in enumerate((4096, 4096, 1000)):
        w = tensor(f"classifier.{3 * j}.weight", (out, features), features)
        b = tensor(f"classifier.{3 * j}.bias", (out,), features)
        nodes.append(helper.make_node("Gemm", [x, w, b], [f"fc{j}"], name=f"fc{j}", transB=1))
        x, features = f"fc{j}", out
        if j < 2:
            nodes.append(helper.make_node("Relu", [x], [f"fc{j}_relu"], name=f"fc{j}_relu"))
            x = f"fc{j}_relu"
    graph = helper.make_graph(nodes, model, [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                           [1, 3, 224, 224])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 1000])], weights)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bench")
    onnx_model.ir_version = 8
    path.write_bytes(onnx_model.SerializeToString())


# --- measuring one process ------------------------------------------------------------------------

def memory_kib(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM (its peak) and RssAnon (its memory not backed by a file) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:")):
            fields[line.split(":")[0]] = int(line.split()[1])
    return fields


def reset_peak(pid: int | str = "self") -> None:
    """Make VmHWM start again from the current resident size (Linux: ``5`` into clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextmanager
def stage(name: str, extra: dict | None = None) -> Iterator[dict]:
    """Time a stage and print one JSON line: seconds, MiB resident before, at the peak and after."""
    figures = {"stage": name, **(extra or {})}
    before = memory_kib()["VmRSS"]
    reset_peak()
    start = time.perf_counter()
    yield figures
    figures["seconds"] = time.perf_counter() - start
    after = memory_kib()
    figures.update(before_mib=before / 1024, peak_mib=after["VmHWM"] / 1024, after_mib=after["VmRSS"] / 1024,
                   anon_mib=after["RssAnon"] / 1024)
    print(json.dumps(figures), flush=True)


def child_import(onnx_path: Path, work: Path) -> None:
    """read, parse, safety, checker, import, engine checks, store (both formats): one process."""
    import onnx

    from app.importers.onnx_import import import_onnx
    from app.importers.onnx_safety import external_tensors, first_undecodable_text
    from engine.graph import Graph
    from engine.models.weights import save_weights

    with stage("read file"), open(onnx_path, "rb") as handle:
        data = handle.read()
    with stage("parse"):
        model = onnx.load_model_from_string(data)
    with stage("safety"):
        first_undecodable_text(model)
        external_tensors(model)
    with stage("checker"):
        onnx.checker.check_model(model)
    del model
    with stage("import from bytes"):
        spec, params, _ = import_onnx(data)
    del data, spec, params
    with stage("import from the file (as the store)"):
        spec, params, _ = import_onnx(onnx_path)
    with stage("engine"):
        graph = Graph(spec)
        graph.check_params(params)
        graph.activation_count()
    (work / "spec.json").write_text(json.dumps(spec))
    compressed, current = work / "weights-compressed.npz", work / "weights-current.npz"
    with stage("store compressed (before)"):
        np.savez_compressed(compressed, **params)
    print(json.dumps({"stage": "size compressed (before)", "mib": compressed.stat().st_size / MIB}), flush=True)
    with stage("store save_weights (now)"):
        save_weights(current, params)
    print(json.dumps({"stage": "size save_weights (now)", "mib": current.stat().st_size / MIB}), flush=True)


def child_load(kind: str, work: Path) -> None:
    """Read the stored weights back as a worker does, then one forward pass."""
    from engine.graph import Graph
    from engine.models.weights import read_weights

    graph = Graph(json.loads((work / "spec.json").read_text()))
    with stage(f"load {kind}"):
        if kind == "compressed (before)":
            with np.load(work / "weights-compressed.npz", allow_pickle=False) as data:
                params = {k: np.ascontiguousarray(data[k], dtype=np.float32) for k in data.files}
        else:
            params = read_weights(work / "weights-current.npz")
        graph.check_params(params)
    x = np.random.default_rng(0).standard_normal((1, *graph.input_shape)).astype(np.float32)
    with stage(f"first forward after load {kind}"):
        graph.forward(x, params, keep_caches=False, keep=())
    with stage(f"second forward after load {kind}"):
        graph.forward(x, params, keep_caches=False, keep=())


def child_hold(work: Path) -> None:
    """Map the stored weights, read every value, then wait (for :func:`two_processes`) until stdin closes."""
    from engine.models.weights import read_weights

    params = read_weights(work / "weights-current.npz")
    total = sum(float(value.sum()) for value in params.values())
    print(json.dumps({"ready": total}), flush=True)
    sys.stdin.read()


def two_processes(work: Path) -> list[dict]:
    """Two processes that mapped and read the same weights file: each one's resident memory, and its proportional
    share (PSS: a page two processes share counts half for each), from /proc/<pid>/smaps_rollup."""
    env = {**os.environ, **ONE_THREAD}
    children = [subprocess.Popen([sys.executable, __file__, "--child", "hold", "--work-dir", str(work)], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    rows = []
    try:
        for child in children:
            child.stdout.readline()
        for i, child in enumerate(children):
            fields = {line.split(":")[0]: int(line.split()[1])
                      for line in Path(f"/proc/{child.pid}/smaps_rollup").read_text().splitlines()[1:]}
            rows.append({"stage": f"two processes mapping it: process {i + 1}, resident", "mib": fields["Rss"] / 1024})
            rows.append({"stage": f"two processes mapping it: process {i + 1}, its share", "mib": fields["Pss"] / 1024})
    finally:
        for child in children:
            child.stdin.close()
            child.wait()
    return rows


def run_child(*args: str) -> list[dict]:
    env = {**os.environ, **ONE_THREAD}
    done = subprocess.run([sys.executable, __file__, "--child", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# --- through a real server ----------------------------------------------------------------------

def server_memory(pid: int) -> tuple[float, float, float]:
    """(resident, peak, not file-backed) MiB summed over the server's processes."""
    from load_test import server_pids

    rss = hwm = anon = 0
    for p in server_pids(pid):
        try:
            fields = memory_kib(p)
        except OSError:
            continue
        rss, hwm, anon = rss + fields["VmRSS"], hwm + fields["VmHWM"], anon + fields["RssAnon"]
    return rss / 1024, hwm / 1024, anon / 1024


def upload_streamed(port: int, onnx_path: Path) -> tuple[int, dict, float]:
    """POST the file as multipart/form-data, sent in 1 MiB pieces (never the whole body in this process): the
    status, the answer and when the last byte was sent (``time.perf_counter()``)."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{onnx_path.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.putrequest("POST", "/api/models")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + onnx_path.stat().st_size + len(tail)))
    connection.endheaders()
    connection.send(head)
    with open(onnx_path, "rb") as handle:
        while piece := handle.read(MIB):
            connection.send(piece)
    connection.send(tail)
    sent = time.perf_counter()
    response = connection.getresponse()
    body = json.loads(response.read() or b"{}")
    connection.close()
    return response.status, body, sent


def through_server(onnx_path: Path, work: Path) -> list[dict]:
    from load_test import Server

    data_dir = work / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {**ONE_THREAD, "CNN_VIS_PRELOAD": "false", "CNN_VIS_MAX_MODEL_BYTES": str(onnx_path.stat().st_size + MIB),
           "CNN_VIS_QUOTA_MODEL_BYTES_PER_OWNER": str(4096 * MIB),
           "CNN_VIS_QUOTA_MODEL_BYTES_TOTAL": str(8192 * MIB)}
    rows = []
    with Server(1, str(data_dir), env=env, quiet=True) as server:
        time.sleep(1.0)
        from load_test import server_pids

        idle, _, _ = server_memory(server.process.pid)
        for p in server_pids(server.process.pid):
            reset_peak(p)
        start = time.perf_counter()
        status, body, sent = upload_streamed(server.port, onnx_path)
        end = time.perf_counter()
        after, peak, anon = server_memory(server.process.pid)
        if status != 201:
            raise RuntimeError(f"the upload answered {status}: {body}")
        rows.append({"stage": "server: upload, first byte to answer", "seconds": end - start, "before_mib": idle,
                     "peak_mib": peak, "after_mib": after, "anon_mib": anon})
        rows.append({"stage": "server: of which last byte to answer", "seconds": end - sent, "before_mib": idle,
                     "peak_mib": peak, "after_mib": after, "anon_mib": anon})
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((1, *body["input_shape"]), np.float32))
        for which in ("first", "second"):
            for p in server_pids(server.process.pid):
                reset_peak(p)
            before, _, _ = server_memory(server.process.pid)
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
            start = time.perf_counter()
            connection.request("POST", f"/api/models/{body['id']}/forward", body=buffer.getvalue(),
                               headers={"Content-Type": "application/x-npy", "X-Owner-Token": body["owner_token"]})
            answer = connection.getresponse()
            answer.read()
            seconds = time.perf_counter() - start
            connection.close()
            after, peak, anon = server_memory(server.process.pid)
            if answer.status != 200:
                raise RuntimeError(f"the forward pass answered {answer.status}")
            rows.append({"stage": f"server: {which} forward", "seconds": seconds, "before_mib": before,
                         "peak_mib": peak, "after_mib": after, "anon_mib": anon})
    stored = sum(p.stat().st_size for p in (data_dir / "models").rglob("*") if p.is_file())
    rows.append({"stage": "server: stored on disk", "mib": stored / MIB})
    return rows


def show(rows: list[dict]) -> None:
    print(f"{'stage':<46} {'seconds':>8} {'MiB before':>11} {'peak':>8} {'after':>8} {'of which anon':>14}")
    for row in rows:
        if "mib" in row:
            print(f"{row['stage']:<46} {'':>8} {row['mib']:>11.0f}")
            continue
        print(f"{row['stage']:<46} {row['seconds']:>8.2f} {row['before_mib']:>11.0f} {row['peak_mib']:>8.0f} "
              f"{row['after_mib']:>8.0f} {row['anon_mib']:>14.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CONFIGS), default="vgg16")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/cnn-vis-bench-upload"))
    parser.add_argument("--skip-server", action="store_true", help="only the stages, not the upload over HTTP")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.work_dir
    onnx_path = work / f"{args.model}.onnx"
    if args.child:
        kind, *rest = args.child
        if kind == "build":
            vgg_onnx(args.model, onnx_path)
        elif kind == "import":
            child_import(onnx_path, work)
        elif kind == "hold":
            child_hold(work)
        else:
            child_load(rest[0], work)
        return 0

    work.mkdir(parents=True, exist_ok=True)
    if not onnx_path.is_file():
        start = time.perf_counter()
        run_child("build", "--model", args.model, "--work-dir", str(work))
        print(f"built {onnx_path} in {time.perf_counter() - start:.1f} s")
    print(f"{args.model}: {onnx_path.stat().st_size / MIB:.0f} MiB ONNX file")
    common = ("--model", args.model, "--work-dir", str(work))
    rows = run_child("import", *common)
    for kind in ("compressed (before)", "save_weights (now)"):
        rows += run_child("load", kind, *common)
    rows += two_processes(work)
    if not args.skip_server:
        rows += through_server(onnx_path, work)
    show(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
