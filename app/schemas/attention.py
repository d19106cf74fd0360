"""Attention maps: which parts of the input drove the decision."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class MethodInfo(BaseModel):
    """One attribution method."""

    name: str = Field(..., description="the value for `method`", examples=["gradcam"])
    title: str = Field(..., examples=["Grad-CAM"])
    family: str = Field(..., examples=["class activation map"])
    paper: str = Field(..., examples=["Selvaraju et al., 2017"])
    signed: bool = Field(..., description="the map has signs (normalised to [-1, 1]) rather than [0, 1]")
    uses_layer: bool = Field(..., description="takes a `layer`")
    uses_target: bool = Field(..., description="takes a `target` class")
    description: str


class MethodList(BaseModel):
    methods: list[MethodInfo]


class AttentionResponse(BaseModel):
    """The map at the layer's resolution (raw and normalised), upsampled to the input, and an overlay.

    Images are PNG data URLs (`data:image/png;base64,...`), usable directly as an `<img src>`.
    """

    model_id: str = Field(..., examples=["digits_resnet"])
    method: str = Field(..., examples=["gradcam"])
    target: int | None = Field(None, description="the class explained (null for class-agnostic methods)",
                               examples=[3])
    target_label: str | None = Field(None, examples=["3"])
    score: float | None = Field(None, description="the target's score (logit)")
    layer: str = Field(..., description="the node the map was taken at ('input' for gradient methods)",
                       examples=["block2.relu"])
    signed: bool = Field(..., description="normalised maps are in [-1, 1] (else [0, 1])")
    layer_shape: list[int] = Field(..., description="the map's shape at the layer", examples=[[7, 7]])
    layer_map: list[list[float]] = Field(..., description="the raw map at the layer's resolution")
    layer_map_normalized: list[list[float]] = Field(..., description="the same, normalised")
    input_shape: list[int] = Field(..., description="the input's spatial shape", examples=[[28, 28]])
    input_map: list[list[float]] | None = Field(
        None, description="the normalised map upsampled to the input (only with include_input_map=true)")
    input_map_png: str = Field(..., description="the normalised upsampled map, coloured (inferno; diverging if signed)")
    overlay_png: str = Field(..., description="the coloured map blended over the input picture")
    picture_png: str = Field(..., description="the input picture the model saw (after resizing and cropping)")
    extras: dict[str, Any] = Field(default_factory=dict, description="per-method details")
    elapsed_ms: float
