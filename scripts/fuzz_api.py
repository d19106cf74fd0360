"""Fuzz the REST API from its own OpenAPI schema with schemathesis, in-process (ASGI), on demand.

    .venv/bin/pip install schemathesis          # a dev tool, not a project dependency
    .venv/bin/python scripts/fuzz_api.py --examples 30 --seed 1
    .venv/bin/python scripts/fuzz_api.py --models tiny,digits_classic --only playground --negative

Every operation in ``/openapi.json`` gets ``--examples`` generated requests (schema-valid ones, and with
``--negative`` schema-violating ones too). The path parameter ``model_id`` is drawn from real models (a
tiny random-weight CNN, the built-in models named by ``--models``, and an uploaded ONNX model), and
``run_id`` from a real run, so the requests reach the code rather than the 404. DELETE is left out
unless ``--delete`` is given (it would delete the uploaded model). Checks on every response:

- ``not_a_server_error``: never a 5xx (a 503 from a full compute queue would also count);
- ``status_code_conformance``: the status is one the schema documents;
- ``response_schema_conformance`` and ``content_type_conformance``: the body matches the schema;
- every error body is JSON with a non-empty ``detail``;
- no request takes longer than ``--slow-ms`` (work per request is bounded).

Prints one line per failure (operation, check, status, message and a curl command), and a summary.
Exit status 1 when anything failed. The data directory is a temporary one; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

try:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable
    from schemathesis.specs.openapi import checks as openapi_checks
except ImportError:  # pragma: no cover - a dev tool
    sys.exit("schemathesis is not installed: .venv/bin/pip install schemathesis (a dev tool only)")

from app.api.deps import get_model_store  # noqa: E402
from app.core.config import Settings  # noqa: E402
from app.main import create_app  # noqa: E402
from app.services.models import ModelStore, builtin_loaders  # noqa: E402
from engine.graph import Graph  # noqa: E402
from engine.models.bundle import ModelBundle, Preprocessing  # noqa: E402

TINY_SPEC = {
    "input_shape": [1, 12, 12],
    "nodes": [
        {"id": "conv1", "op": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"id": "relu1", "op": "relu"},
        {"id": "pool1", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
        {"id": "flatten", "op": "flatten"},
        {"id": "fc", "op": "linear", "out_features": 3},
    ],
}


def tiny_bundle() -> ModelBundle:
    graph = Graph(TINY_SPEC)
    return ModelBundle(id="tiny", name="Tiny fuzz CNN", task="fuzzing", graph=graph, params=graph.init_params(seed=0),
                       labels=["a", "b", "c"], preprocessing=Preprocessing(resize=12, crop=12, mean=(0.5,),
                                                                           std=(0.25,), grayscale=True),
                       source="random weights (seed 0)", cam_layer="relu1")


def build_app(models: list[str], data_dir: Path):
    settings_ = Settings(data_dir=data_dir, max_upload_bytes=2 * 1024 * 1024, max_model_bytes=4 * 1024 * 1024,
                         preload=False, compute_slots=2, compute_wait_s=30, max_attention_gmacs=2.0)
    loaders = builtin_loaders(REPO / "data" / "cache")
    unknown = [m for m in models if m != "tiny" and m not in loaders]
    if unknown:
        sys.exit(f"unknown models {unknown}: choose from tiny, {', '.join(loaders)}")
    builtins = {m: (tiny_bundle if m == "tiny" else loaders[m]) for m in models}
    store = ModelStore(data_dir, builtins=builtins)
    app = create_app(settings_)
    app.dependency_overrides[get_model_store] = lambda: store
    return app, store


def nasty_npy_bodies() -> list[bytes]:
    """.npy bodies that a careless parser gets wrong: odd layouts, dtypes, shapes, headers and lengths."""
    def save(array: np.ndarray, allow_pickle: bool = False) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=allow_pickle)
        return buffer.getvalue()

    good = np.zeros((1, 1, 12, 12), dtype=np.float32)
    bodies = [
        save(good), save(good[0]), save(np.asfortranarray(np.arange(144, dtype=np.float64).reshape(1, 12, 12))),
        save(good.astype(">f4")), save(good.astype(">f8")), save(np.array(3.0)), save(np.zeros((0, 1, 12, 12))),
        save(np.array([object()], dtype=object), allow_pickle=True), save(np.full((1, 12, 12), np.nan)),
        save(np.full((1, 12, 12), 1e300)), save(np.zeros((1, 12, 12), dtype=np.complex64)),
        save(np.zeros((1, 12, 12), dtype="U3")), save(np.zeros((1, 12, 12), dtype=[("a", "f4")])),
        save(np.zeros((1, 12, 12), dtype=bool)), save(np.zeros((1, 12, 12), dtype=np.int64)),
        save(np.zeros((1, 12, 12), dtype=np.float16)), save(np.zeros((2, 1, 12, 12), dtype=np.float32)),
        save(np.zeros((1, 3, 28, 28), dtype=np.float32)), save(np.zeros((1, 28, 28), dtype=np.float32)),
        save(np.zeros((12, 12), dtype=np.float32)), save(good)[:-10],
        b"\x93NUMPY\x01\x00" + (118).to_bytes(2, "little") + b"{'descr': '<f4', 'fortran_order': False, "
        b"'shape': (100000, 100000, 100000, 100000), }".ljust(117) + b"\n",
        b"\x93NUMPY\x01\x00" + (10).to_bytes(2, "little") + b"not a dict",
        b"\x93NUMPY\x09\x00garbage", b"\x93NUMPY", b"", b"plain text",
    ]
    return bodies


NASTY_NPY = nasty_npy_bodies()


def npy_serializer(ctx, value) -> bytes:
    """Most generated binary bodies become one of the nasty .npy files; the rest go as they are."""
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
    choice = sum(raw) % (len(NASTY_NPY) + 4)
    return NASTY_NPY[choice] if choice < len(NASTY_NPY) else raw


def small_onnx() -> bytes | None:
    """An uploadable ONNX classifier (Conv, Relu, global pooling, Gemm on a 1 × 12 × 12 input), if onnx is here."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
             for name, shape in [("w", (4, 1, 3, 3)), ("fw", (3, 4))]]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def error_body_has_detail(ctx, response, case):
    """Every 4xx/5xx is JSON with a non-empty 'detail' string."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except Exception as exc:
        raise AssertionError(f"error {response.status_code} is not JSON: {response.text[:200]!r}") from exc
    detail = body.get("detail") if isinstance(body, dict) else None
    assert isinstance(detail, str) and detail.strip(), f"error {response.status_code} has no 'detail': {body!r}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=25, help="generated requests per operation and mode")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (same seed, same requests)")
    parser.add_argument("--models", default="tiny,digits_classic",
                        help="model ids to fuzz (tiny, and built-ins such as digits_resnet, efficientnet_lite0)")
    parser.add_argument("--only", default="", help="only operations whose path contains this text")
    parser.add_argument("--negative", action="store_true", help="also send schema-violating requests")
    parser.add_argument("--delete", action="store_true", help="also fuzz DELETE (may delete the uploaded model)")
    parser.add_argument("--slow-ms", type=float, default=5000.0, help="report requests slower than this")
    args = parser.parse_args(argv)
    logging.getLogger("cnn_visualiser").setLevel(logging.CRITICAL)  # 500s are reported below, not logged twice
    for noisy in ("python_multipart", "multipart"):  # warns about every malformed form it is sent
        logging.getLogger(noisy).setLevel(logging.ERROR)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="fuzz-api-") as tmp:
        app, _store = build_app(models, Path(tmp))
        from fastapi.testclient import TestClient

        with TestClient(app) as client:  # a real run id, so /runs/... reaches the code
            x = np.zeros((1, *Graph(TINY_SPEC).input_shape), dtype=np.float32)
            buffer = io.BytesIO()
            np.save(buffer, x)
            answer = client.post("/api/models/tiny/activations", content=buffer.getvalue(),
                                 headers={"Content-Type": "application/x-npy"})
            run_id = answer.json()["run_id"] if answer.status_code == 200 else "0" * 32
            onnx_file = small_onnx()
            uploaded = client.post("/api/models", files={"file": ("fuzz.onnx", onnx_file)}) if onnx_file else None
            uploaded_ids = [uploaded.json()["id"]] if uploaded is not None and uploaded.status_code == 201 else []
        schemathesis.serializer("application/x-npy", "application/octet-stream")(npy_serializer)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        checks = [schemathesis.checks.not_a_server_error, openapi_checks.status_code_conformance,
                  openapi_checks.response_schema_conformance, openapi_checks.content_type_conformance,
                  error_body_has_detail]
        modes = [schemathesis.GenerationMode.POSITIVE]
        if args.negative:
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        path_values = {"model_id": st.sampled_from([*models, *uploaded_ids, "no-such-model", "onnx-../../etc"]),
                       "run_id": st.sampled_from([run_id, "0" * 32, "../x"]),
                       "node_id": st.sampled_from(["input", "conv1", "fc", "nope", "ü/../x"]),
                       "op": st.sampled_from(["conv", "max_pool", "avg_pool"])}
        failures: list[str] = []
        counts: Counter[str] = Counter()
        started = time.perf_counter()
        for result in schema.get_all_operations():
            operation = result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            if args.only and args.only not in operation.path:
                continue
            if operation.method.upper() == "DELETE" and not args.delete:
                continue  # a deleted upload leaves only the built-ins for the operations fuzzed after it
            names = {p.name for p in operation.path_parameters}
            for mode in modes:
                strategy = operation.as_strategy(generation_mode=mode).flatmap(
                    lambda case, names=names: st.fixed_dictionaries(
                        {n: path_values[n] for n in names if n in path_values}).map(
                        lambda values, case=case: _with_path(case, values)))

                run = _make_runner(app, checks, failures, counts, label, mode, set(), args.slow_ms)
                run = settings(max_examples=args.examples, derandomize=False, database=None, deadline=None,
                               phases=[Phase.generate], suppress_health_check=list(HealthCheck))(run)
                run = given(case=strategy)(run)
                try:
                    hypothesis_seed(args.seed)(run)()
                except Unsatisfiable:
                    continue  # nothing to break in this mode (e.g. a negative request to a route without inputs)
        total = sum(counts.values())
        print(f"\n{total} requests to {len(counts)} operations in {time.perf_counter() - started:.1f} s; "
              f"{len(failures)} distinct failures")
        for line in failures:
            print(line)
        return 1 if failures else 0


def _make_runner(app, checks, failures, counts, label, mode, seen, slow_ms):
    """One operation's test body: call in-process, time it, validate the response."""

    def run(case) -> None:
        counts[label] += 1
        t0 = time.perf_counter()
        try:
            response = case.call(app=app)
        except Exception as exc:
            _record(failures, seen, label, mode, "transport", f"{type(exc).__name__}: {exc}", case)
            return
        elapsed = (time.perf_counter() - t0) * 1000
        if elapsed > slow_ms:
            _record(failures, seen, label, mode, "slow", f"{elapsed:.0f} ms", case)
        try:
            case.validate_response(response, checks=checks)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            parts = getattr(exc, "exceptions", None) or [exc]
            message = " | ".join(f"{getattr(e, 'title', type(e).__name__)}: "
                                 f"{' '.join(str(getattr(e, 'message', e)).split())[:300]}" for e in parts)
            _record(failures, seen, label, mode, f"status {response.status_code}", message, case)

    return run


def _with_path(case, values):
    for name, value in values.items():
        case.path_parameters[name] = value
    return case


def _record(failures: list[str], seen: set[str], label: str, mode, kind: str, message: str, case) -> None:
    key = f"{label} {kind} {message[:80]}"
    if key in seen:
        return
    seen.add(key)
    try:
        curl = case.as_curl_command()
    except Exception:
        curl = "(no curl command)"
    failures.append(f"- {label} [{mode.value}] {kind}: {message}\n    {curl[:400]}")


if __name__ == "__main__":
    raise SystemExit(main())
