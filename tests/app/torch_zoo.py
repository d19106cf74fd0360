"""Real architectures from torchvision and timm, with random weights, exported as users export them.

Test-only: torch, torchvision and timm are references, never run-time dependencies. torchvision's compiled
operators may not match the installed torch (its CPU wheel is not always on the registry), so only its pure-Python
model code is imported: the package's ``__init__`` (which registers the compiled operators) is skipped.

``ARCHITECTURES`` maps a short name to how to build the model and the image size it is exported at (small sizes keep
the suite fast; every model here takes them). ``export(model, x, exporter)`` writes ONNX bytes with the TorchScript
exporter (``dynamo=False``, opset 17; ``"torchscript-opset13"`` for an older opset, where LayerNorm is written out
as ReduceMean, Sub, Pow, Sqrt and Div) or torch's default exporter (``dynamo=True``, opset 18).
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import subprocess
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EXPORTERS = ("torchscript", "dynamo")


def torchvision_models() -> Any | None:
    """``torchvision.models`` without torchvision's compiled operators, or None where torchvision is absent."""
    if "torchvision.models" in sys.modules:
        return sys.modules["torchvision.models"]
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    if "torchvision" not in sys.modules:
        package = types.ModuleType("torchvision")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["torchvision"] = package
    import torchvision.models

    return torchvision.models


def timm_module() -> Any | None:
    """``timm`` (which imports torchvision: made importable first), or None where it is absent."""
    if importlib.util.find_spec("timm") is None or torchvision_models() is None:
        return None
    import timm

    return timm


@dataclass(frozen=True)
class Architecture:
    name: str
    source: str  # "torchvision" or "timm"
    build: Callable[[Any], Any]  # torchvision.models or timm -> nn.Module
    size: int  # the exported image size (square, 3 channels)
    blocks: str  # what it is made of, for the docs table


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in [
    Architecture("resnet18", "torchvision", lambda m: m.resnet18(), 64, "residual blocks, global average pool"),
    Architecture("mobilenet_v2", "torchvision", lambda m: m.mobilenet_v2(), 64, "inverted residuals, ReLU6"),
    Architecture("mobilenet_v3_small", "torchvision", lambda m: m.mobilenet_v3_small(), 64,
                 "squeeze-excite, hard-swish"),
    Architecture("efficientnet_b0", "torchvision", lambda m: m.efficientnet_b0(), 64, "MBConv, squeeze-excite, SiLU"),
    Architecture("shufflenet_v2", "torchvision", lambda m: m.shufflenet_v2_x0_5(), 64, "channel split and shuffle"),
    Architecture("mnasnet", "torchvision", lambda m: m.mnasnet0_5(), 64, "inverted residuals, mean over H and W"),
    Architecture("squeezenet", "torchvision", lambda m: m.squeezenet1_1(), 64, "fire modules, concatenation"),
    Architecture("googlenet", "torchvision", lambda m: m.googlenet(aux_logits=False, init_weights=True), 64,
                 "inception branches"),
    Architecture("densenet121", "torchvision", lambda m: m.densenet121(), 64, "dense concatenation"),
    Architecture("regnet_y_400mf", "torchvision", lambda m: m.regnet_y_400mf(), 64, "group convs, squeeze-excite"),
    Architecture("convnext_tiny", "torchvision", lambda m: m.convnext_tiny(), 64,
                 "7x7 depthwise, channels-last LayerNorm, MatMul, GELU, layer scale"),
    Architecture("ghostnet", "timm", lambda t: t.create_model("ghostnet_050"), 64, "ghost modules, squeeze-excite"),
    Architecture("rexnet", "timm", lambda t: t.create_model("rexnet_100"), 64, "squeeze-excite, channel slicing"),
    Architecture("lcnet", "timm", lambda t: t.create_model("lcnet_050"), 64, "hard-swish, squeeze-excite"),
    Architecture("mobilevit", "timm", lambda t: t.create_model("mobilevit_xxs"), 64,
                 "convolutions with transformer blocks"),
    Architecture("vit_tiny", "timm", lambda t: t.create_model("vit_tiny_patch16_224", img_size=64), 64,
                 "a vision transformer (not a CNN)"),
]}


def _style_transfer_net(torch: Any) -> Any:
    """Johnson et al.'s style-transfer blocks (instance normalisation, with and without affine, reflection
    padding, a residual block, nearest upsampling): no library ships one."""
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c, affine=True),
                                      nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

        def forward(self, x: Any) -> Any:
            return x + self.body(x)

    return nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(3, 8, 9), nn.InstanceNorm2d(8, affine=True), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.InstanceNorm2d(16, affine=True), nn.ReLU(),
                         Residual(16), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(16, 3, 3, padding=1),
                         nn.Tanh())


ARCHITECTURES["style_transfer"] = Architecture("style_transfer", "hand", _style_transfer_net, 32,
                                               "instance normalisation, reflection padding, upsampling")


def build(name: str, seed: int = 0) -> Any | None:
    """The architecture's model with random weights in eval mode, or None where its library is absent."""
    import torch

    arch = ARCHITECTURES[name]
    if arch.source == "hand":
        torch.manual_seed(seed)
        model = arch.build(torch).eval()
        randomise(model, seed)
        return model
    library = torchvision_models() if arch.source == "torchvision" else timm_module()
    if library is None:
        return None
    torch.manual_seed(seed)
    model = arch.build(library).eval()
    randomise(model, seed)
    return model


def randomise(model: Any, seed: int) -> None:
    """Every parameter and buffer random, so that nothing the comparison checks is a stock 0 or 1.

    Initialisers leave normalisation scales at 1, biases at 0 and ConvNeXt's layer scale at 1e-6 (a block that
    does nothing): all of them are drawn afresh. Matrices keep their own (variance-preserving) initialisation."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean") or name.endswith("bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif tensor.dim() <= 1 or tensor.numel() == tensor.shape[0]:  # scales: BN/LN weight, layer scale
                tensor.copy_((0.5 + torch.rand(tensor.shape, generator=generator)).reshape(tensor.shape))


def export(model: Any, x: Any, exporter: str) -> bytes:
    """ONNX bytes written by the TorchScript exporter (opset 17) or the default dynamo exporter (opset 18)."""
    import torch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter.startswith("torchscript"):
            buffer = io.BytesIO()
            opset = int(exporter.partition("-opset")[2] or 17)
            torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=opset)
            return buffer.getvalue()
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=18, verbose=False)
        return program.model_proto.SerializeToString()


#: exports that several tests read (the zoo's import test, its negative control and the receptive-field tests):
#: kept for the session, so each is exported once (a dynamo export takes 5-35 s)
SHARED_EXPORTS = {("convnext_tiny", e) for e in ("torchscript", "dynamo", "torchscript-opset13")} | {
    (name, e) for name in ("mobilenet_v3_small", "efficientnet_b0") for e in EXPORTERS}
_shared: dict[tuple[str, str], tuple[bytes, Any, Any]] = {}


def compute_export(name: str, exporter: str) -> tuple[bytes, Any, Any] | None:
    """``(ONNX bytes, x, PyTorch's output on x)`` for the architecture's model with random weights (``build``) on
    a random image ``x: (1, 3, size, size)`` (seed 1) as NumPy arrays; None where its library is absent.
    ImportError where the exporter cannot run here."""
    import torch

    model = build(name)
    if model is None:
        return None
    size = ARCHITECTURES[name].size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    data = export(model, x, exporter)
    with torch.no_grad():
        expected = model(x).numpy()
    return data, x.numpy(), expected


#: the process exporting ahead of the tests (tests/app/zoo_exports.py), and where it writes
_background: tuple[subprocess.Popen, Path] | None = None


def export_in_background(cases: list[tuple[str, str]], directory: Path) -> None:
    """Start exporting ``cases`` (name, exporter), in this order, in a low-priority process writing to
    ``directory``; ``exported`` reads its files. Stopped by ``stop_background``."""
    global _background
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.app.zoo_exports", str(directory), *(f"{n}:{e}" for n, e in cases)],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.nice(19))
    _background = process, directory


def stop_background() -> None:
    global _background
    if _background is not None:
        process, _ = _background
        process.kill()
        process.wait()
        _background = None


def _from_background(name: str, exporter: str) -> tuple[bytes, Any, Any] | None:
    """The background process's export of the case if it is written already, else None: then the process is
    behind the tests (or gone), so it is stopped and the caller exports the case and the rest itself (a test never
    waits for a low-priority process, which a busy machine may starve)."""
    from tests.app.zoo_exports import case_file

    if _background is None:
        return None
    _, directory = _background
    found = case_file(directory, name, exporter, "npz")
    if found.exists():
        with np.load(found) as data:
            answer = data["onnx"].tobytes(), data["x"], data["expected"]
        found.unlink()
        return answer
    skipped = case_file(directory, name, exporter, "skip")
    if skipped.exists():
        raise ImportError(skipped.read_text())
    stop_background()
    return None


def exported(name: str, exporter: str) -> tuple[bytes, Any, Any] | None:
    """``compute_export``'s answer, from the background process when it exported the case (tests/conftest.py
    starts it), else computed here. Those in ``SHARED_EXPORTS`` are kept for the session."""
    found = _shared.get((name, exporter))
    if found is not None:
        return found
    found = _from_background(name, exporter) or compute_export(name, exporter)
    if found is not None and (name, exporter) in SHARED_EXPORTS:
        _shared[(name, exporter)] = found
    return found
