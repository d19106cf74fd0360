"""Real architectures (torchvision and timm, random weights) exported by both of torch's exporters import and match.

For each architecture and exporter: the model is exported as a user would (TorchScript exporter at opset 17, the
default dynamo exporter at opset 18), imported, run by the engine (the recording pass and the lean pass) and by
onnxruntime and PyTorch on the same image; the outputs agree within 1e-4 of the output's largest magnitude. The
architecture view (receptive fields included) must build. Skipped where torch, onnxruntime, torchvision or timm is
absent (they are test-only references), or where an exporter cannot run here.

``EXPECTED_REFUSALS`` lists what does not import yet, with the words its refusal must contain: a refusal that
changes (or a model that starts importing) fails the test, so docs/onnx-import.md's table stays true.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.app.onnx_models import run_onnxruntime
from tests.app.torch_zoo import ARCHITECTURES, EXPORTERS, exported

pytestmark = pytest.mark.torch

#: (architecture, exporter) -> words the refusal says; everything else imports and matches
EXPECTED_REFUSALS: dict[tuple[str, str], list[str]] = {
    # MobileViT unfolds its maps into patches by moving them into the batch axis: (N, 64, 8, 8) -> (N*64, 2, 4, 2)
    ("mobilevit", "torchscript"): ["Reshape node '/stages/stages.2/stages.2.1/Reshape'",
                                   "does not keep the batch axis"],
    ("mobilevit", "dynamo"): ["Reshape node 'node_view'", "does not keep the batch axis"],
    # timm's attention permutes q, k and v in front of the batch axis, qkv.permute(2, 0, 3, 1, 4), then unbinds them
    ("vit_tiny", "torchscript"): ["Transpose node '/blocks/blocks.0/attn/Transpose'", "moves the batch axis"],
    ("vit_tiny", "dynamo"): ["Transpose node 'node_permute'", "moves the batch axis"],
}

#: LayerNorm written out (ReduceMean over channels-last, Sub of two tensors, Pow, Sqrt, Div) by opset 13
OLDER_OPSET = [("convnext_tiny", "torchscript-opset13"), ("style_transfer", "torchscript-opset13")]
CASES = [(name, exporter) for name in ARCHITECTURES for exporter in EXPORTERS] + OLDER_OPSET
TOLERANCE = 1e-4


def _exported(torch, name: str, exporter: str) -> tuple[bytes, np.ndarray, np.ndarray]:
    pytest.importorskip("onnxruntime", reason="onnxruntime (a test-only reference) is not installed")
    try:
        found = exported(name, exporter)
    except (ImportError, ModuleNotFoundError) as error:  # the dynamo exporter needs onnxscript
        pytest.skip(f"the {exporter} exporter is not usable here: {error}")
    if found is None:
        pytest.skip(f"{ARCHITECTURES[name].source} is not installed: {name} skipped")
    return found


@pytest.mark.parametrize("name, exporter", CASES, ids=[f"{n}-{e}" for n, e in CASES])
def test_architecture_imports_and_matches(torch_or_skip, name: str, exporter: str) -> None:
    from app.importers import OnnxImportError, import_onnx
    from engine.analysis import analyze
    from engine.graph import Graph

    data, x, from_torch = _exported(torch_or_skip, name, exporter)
    refusal = EXPECTED_REFUSALS.get((name, exporter))
    if refusal is not None:
        with pytest.raises(OnnxImportError) as caught:
            import_onnx(data)
        for words in refusal:
            assert words in str(caught.value), f"{name} ({exporter}): the refusal no longer says {words!r}"
        assert len(str(caught.value)) < 2000, "refusals group repeated operators"
        return
    spec, params, _ = import_onnx(data)
    graph = Graph(spec)
    mine = graph.forward(x, params).output
    reference = run_onnxruntime(data, x)
    scale = float(np.abs(reference).max())
    assert mine.shape == reference.shape, f"{name} ({exporter}): engine {mine.shape} vs onnxruntime {reference.shape}"
    error = float(np.abs(mine - reference).max()) / scale
    assert error <= TOLERANCE, f"{name} ({exporter}): engine vs onnxruntime, relative difference {error:.3g}"
    error_torch = float(np.abs(mine - from_torch).max()) / scale
    assert error_torch <= TOLERANCE, f"{name} ({exporter}): engine vs torch, relative difference {error_torch:.3g}"
    lean = graph.forward(x, params, keep_caches=False, keep=()).output
    np.testing.assert_array_equal(lean, mine, err_msg=f"{name} ({exporter}): lean pass differs")
    analyze(graph, strict=False)


def test_a_wrong_weight_fails_the_tolerance(torch_or_skip) -> None:
    """Negative control: a 1% change to one weight of a real export is caught."""
    from app.importers import import_onnx
    from engine.graph import Graph

    data, x, _ = _exported(torch_or_skip, "convnext_tiny", "dynamo")
    spec, params, _ = import_onnx(data)
    reference = run_onnxruntime(data, x)
    key = next(k for k in params if k.endswith(".weight") and params[k].ndim == 4)
    params[key] = params[key] * np.float32(1.01)
    mine = Graph(spec).forward(x, params).output
    error = float(np.abs(mine - reference).max()) / float(np.abs(reference).max())
    assert error > TOLERANCE, f"a changed weight went unnoticed ({error:.3g})"
