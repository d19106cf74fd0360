"""Attention maps: GET /api/attention/methods and POST /api/models/{model_id}/attention."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ComputeDep, ModelDep, ModelInputDep, SettingsDep
from app.schemas.attention import AttentionResponse, MethodInfo, MethodList
from app.services.attention import AttentionRequest, attention_map
from app.services.inputs import INPUT_OPENAPI
from engine.attention import METHODS

router = APIRouter(tags=["attention"])


@router.get("/attention/methods", response_model=MethodList)
def list_methods() -> MethodList:
    """Every attribution method: name, family, paper, and whether it takes a layer or a target."""
    return MethodList(methods=[MethodInfo(**m.__dict__) for m in METHODS.values()])


@router.post("/models/{model_id}/attention", response_model=AttentionResponse, openapi_extra=INPUT_OPENAPI)
def create_attention(
    model: ModelDep,
    model_input: ModelInputDep,
    settings: SettingsDep,
    compute: ComputeDep,
    method: Annotated[str, Query(description="an attribution method (GET /api/attention/methods)")] = "gradcam",
    target: Annotated[int | None, Query(ge=0, description="class to explain (default: the top prediction)")] = None,
    layer: Annotated[str | None, Query(description="node id (default: the model's CAM layer)")] = None,
    include_input_map: Annotated[bool, Query(description="also return the upsampled map as numbers")] = False,
    samples: Annotated[int | None, Query(ge=1, le=64, description="SmoothGrad: noisy copies")] = None,
    steps: Annotated[int | None, Query(ge=2, le=128, description="Integrated Gradients: path steps")] = None,
    window: Annotated[int | None, Query(ge=1, le=256, description="occlusion: window side in pixels")] = None,
    stride: Annotated[int | None, Query(ge=1, le=256, description="occlusion: window step in pixels")] = None,
    max_channels: Annotated[int | None, Query(ge=1, le=512, description="Score-CAM: channels used")] = None,
) -> AttentionResponse:
    """An attention map for an image or .npy tensor: raw and normalised at the layer, upsampled, and overlaid."""
    options = {"samples": samples, "steps": steps, "window": window, "stride": stride, "max_channels": max_channels}
    request = AttentionRequest(method, target, layer, include_input_map, options)
    return attention_map(model, model_input, request, settings, compute)
