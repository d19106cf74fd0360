"""Graph specs with squeeze-and-excitation blocks, built by hand: a small MobileNetV3-like and a small
EfficientNet-B0-like network, for the receptive-field tests of global gates (engine and API).

The blocks follow torchvision's: MobileNetV3's SE squeezes with a global average, a 1x1 conv, ReLU, a 1x1 conv
and a hardsigmoid gate; EfficientNet's with SiLU and a sigmoid gate. ``squeeze="gap"`` writes the squeeze as
the TorchScript exporter's import does (``global_avg_pool`` to (C,), then a reshape to (C, 1, 1));
``squeeze="mean"`` as the default (dynamo) exporter's ``ReduceMean`` over the spatial axes, keepdim.
"""

from __future__ import annotations

from typing import Any

Node = dict[str, Any]


def se(prefix: str, x: str, channels: int, squeeze: str = "gap", act: str = "relu",
       gate: str = "hardsigmoid") -> list[Node]:
    """``x * gate(fc2(act(fc1(mean(x)))))``; the last node is ``<prefix>.mul``, the gate ``<prefix>.gate``."""
    if squeeze == "gap":
        nodes = [{"id": f"{prefix}.pool", "op": "global_avg_pool", "inputs": [x]},
                 {"id": f"{prefix}.view", "op": "reshape", "shape": [channels, 1, 1]}]
    elif squeeze == "mean":
        nodes = [{"id": f"{prefix}.pool", "op": "mean", "dim": [2, 3], "keepdim": True, "inputs": [x]}]
    else:
        raise ValueError(f"squeeze is 'gap' or 'mean', got {squeeze!r}")
    squeezed = max(1, channels // 4)
    return [
        *nodes,
        {"id": f"{prefix}.fc1", "op": "conv2d", "out_channels": squeezed, "kernel_size": 1},
        {"id": f"{prefix}.act", "op": act},
        {"id": f"{prefix}.fc2", "op": "conv2d", "out_channels": channels, "kernel_size": 1},
        {"id": f"{prefix}.gate", "op": gate},
        {"id": f"{prefix}.mul", "op": "mul", "inputs": [x, f"{prefix}.gate"]},
    ]


def inverted_residual(name: str, x: str, c_in: int, c_mid: int, c_out: int, kernel: int, stride: int,
                      act: str, squeeze: str | None, se_act: str = "relu", gate: str = "hardsigmoid",
                      residual: bool = False) -> list[Node]:
    """[expand 1x1, bn, act] (when c_mid != c_in), depthwise k x k, bn, act, [SE], project 1x1, bn, [add x]."""
    nodes: list[Node] = []
    src = x
    if c_mid != c_in:
        nodes += [{"id": f"{name}.expand", "op": "conv2d", "out_channels": c_mid, "kernel_size": 1, "bias": False,
                   "inputs": [x]},
                  {"id": f"{name}.bn0", "op": "batch_norm"},
                  {"id": f"{name}.act0", "op": act}]
        src = f"{name}.act0"
    nodes += [{"id": f"{name}.dw", "op": "conv2d", "out_channels": c_mid, "kernel_size": kernel, "stride": stride,
               "padding": kernel // 2, "groups": c_mid, "bias": False, "inputs": [src]},
              {"id": f"{name}.bn1", "op": "batch_norm"},
              {"id": f"{name}.act1", "op": act}]
    last = f"{name}.act1"
    if squeeze is not None:
        nodes += se(f"{name}.se", last, c_mid, squeeze, se_act, gate)
        last = f"{name}.se.mul"
    nodes += [{"id": f"{name}.project", "op": "conv2d", "out_channels": c_out, "kernel_size": 1, "bias": False,
               "inputs": [last]},
              {"id": f"{name}.bn2", "op": "batch_norm"}]
    if residual:
        nodes.append({"id": f"{name}.add", "op": "add", "inputs": [f"{name}.bn2", x]})
    return nodes


def mobilenet_v3_like(squeeze: str = "gap", size: int = 64) -> dict[str, Any]:
    """70 nodes (67 with ``squeeze="mean"``); SE in b1, b4, b5. Fields per axis (r, S, P), by hand:

    stem 3x3 s2 p1: r 3, S 2, P 1 · b1 dw 3x3 s2 p1: r 3 + 2·2 = 7, S 4, P 1 + 1·2 = 3 ·
    b2 dw 3x3 s2 p1: r 7 + 2·4 = 15, S 8, P 3 + 4 = 7 · b3 dw 3x3 s1 p1: r 15 + 2·8 = 31, S 8, P 7 + 8 = 15
    (the residual's centre offsets (15−1)/2 − 7 = 0 and (31−1)/2 − 15 = 0 agree) ·
    b4 dw 5x5 s2 p2: r 31 + 4·8 = 63, S 16, P 15 + 2·8 = 31 · b5 dw 5x5 s1 p2: r 63 + 4·16 = 127, S 16, P 63.
    """
    nodes: list[Node] = [
        {"id": "stem.conv", "op": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1,
         "bias": False},
        {"id": "stem.bn", "op": "batch_norm"},
        {"id": "stem.act", "op": "hardswish"},
    ]
    nodes += inverted_residual("b1", "stem.act", 8, 8, 8, 3, 2, "relu", squeeze)
    nodes += inverted_residual("b2", "b1.bn2", 8, 16, 12, 3, 2, "relu", None)
    nodes += inverted_residual("b3", "b2.bn2", 12, 24, 12, 3, 1, "relu", None, residual=True)
    nodes += inverted_residual("b4", "b3.add", 12, 24, 16, 5, 2, "hardswish", squeeze)
    nodes += inverted_residual("b5", "b4.bn2", 16, 32, 16, 5, 1, "hardswish", squeeze, residual=True)
    nodes += [
        {"id": "head.conv", "op": "conv2d", "out_channels": 32, "kernel_size": 1, "bias": False},
        {"id": "head.bn", "op": "batch_norm"},
        {"id": "head.act", "op": "hardswish"},
        {"id": "head.pool", "op": "global_avg_pool"},
        {"id": "head.fc1", "op": "linear", "out_features": 16},
        {"id": "head.act2", "op": "hardswish"},
        {"id": "classifier", "op": "linear", "out_features": 10},
    ]
    return {"input_shape": [3, size, size], "nodes": nodes}


def efficientnet_b0_like(squeeze: str = "gap", size: int = 64) -> dict[str, Any]:
    """51 nodes (48 with ``squeeze="mean"``); SE (SiLU, sigmoid) in every block. Fields per axis, by hand:

    stem 3x3 s2 p1: r 3, S 2, P 1 · b1 dw 3x3 s1 p1: r 3 + 2·2 = 7, S 2, P 1 + 2 = 3 ·
    b2 dw 3x3 s2 p1: r 7 + 2·2 = 11, S 4, P 3 + 2 = 5 · b3 dw 5x5 s1 p2: r 11 + 4·4 = 27, S 4, P 5 + 2·4 = 13
    (the residual's centre offsets (11−1)/2 − 5 = 0 and (27−1)/2 − 13 = 0 agree).
    """
    mb = {"act": "silu", "squeeze": squeeze, "se_act": "silu", "gate": "sigmoid"}
    nodes: list[Node] = [
        {"id": "stem.conv", "op": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1,
         "bias": False},
        {"id": "stem.bn", "op": "batch_norm"},
        {"id": "stem.act", "op": "silu"},
    ]
    nodes += inverted_residual("b1", "stem.act", 8, 8, 8, 3, 1, **mb)
    nodes += inverted_residual("b2", "b1.bn2", 8, 16, 12, 3, 2, **mb)
    nodes += inverted_residual("b3", "b2.bn2", 12, 24, 12, 5, 1, residual=True, **mb)
    nodes += [
        {"id": "head.conv", "op": "conv2d", "out_channels": 32, "kernel_size": 1, "bias": False},
        {"id": "head.bn", "op": "batch_norm"},
        {"id": "head.act", "op": "silu"},
        {"id": "head.pool", "op": "global_avg_pool"},
        {"id": "classifier", "op": "linear", "out_features": 10},
    ]
    return {"input_shape": [3, size, size], "nodes": nodes}
