"""POST /api/arithmetic/output-size and /volume: the output-size formula, worked out with the caller's numbers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.schemas.arithmetic import AxisOutput, OutputSizeRequest, OutputSizeResponse, VolumeRequest, VolumeResponse
from engine.arithmetic import OutputSize, output_size, volume_output

router = APIRouter(prefix="/arithmetic", tags=["arithmetic"])

DEFAULT_AXIS_NAMES = {1: ["W"], 2: ["H", "W"], 3: ["D", "H", "W"]}


def _axis_output(name: str, result: OutputSize) -> AxisOutput:
    data: dict[str, Any] = result.to_dict()
    return AxisOutput(axis=name, **data)


@router.post("/output-size", response_model=OutputSizeResponse)
def compute_output_size(request: OutputSizeRequest) -> OutputSizeResponse:
    """Output length per axis, with the formula, the worked numbers, and suggestions when the stride does not divide."""
    names = DEFAULT_AXIS_NAMES[len(request.axes)]
    axes = []
    for default_name, axis in zip(names, request.axes):
        name = axis.axis or default_name
        result = output_size(axis.in_size, axis.kernel_size, axis.stride, axis.padding, axis.dilation,
                             kind=request.kind, ceil_mode=request.ceil_mode, output_padding=axis.output_padding,
                             axis=name)
        axes.append(_axis_output(name, result))
    return OutputSizeResponse(output_shape=[a.size for a in axes], exact=all(a.exact for a in axes), axes=axes)


@router.post("/volume", response_model=VolumeResponse)
def compute_volume(request: VolumeRequest) -> VolumeResponse:
    """The lecture's volume view: W×H×D in, K filters of F×F×D, W_out×H_out×K out, with parameters and MACs."""
    result = volume_output(**request.model_dump())
    data = result.to_dict()
    data["axes"] = {name: _axis_output(name, axis) for name, axis in result.axes.items()}
    return VolumeResponse(**data)
