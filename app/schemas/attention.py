"""Attention maps: which parts of the input drove the decision."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class MethodInfo(BaseModel):
    """One attribution method."""

    name: str = Field(..., description="the value for `method`", examples=["gradcam"])
    title: str = Field(..., description="the method's display name", examples=["Grad-CAM"])
    family: str = Field(...,
                        description="'class activation map', 'gradient', 'perturbation', 'learned' or 'receptive "
                                    "field'",
                        examples=["class activation map"])
    paper: str = Field(..., description="the paper that introduced it", examples=["Selvaraju et al., 2017"])
    signed: bool = Field(..., examples=[False],
                         description="the map has signs (normalised to [-1, 1]) rather than [0, 1]")
    uses_layer: bool = Field(..., examples=[True], description="takes a `layer`")
    uses_target: bool = Field(..., examples=[True], description="takes a `target` class")
    description: str = Field(...,
                             description="what the map shows, in a sentence",
                             examples=["Feature maps weighted by their average gradient of the class score."])


class MethodList(BaseModel):
    methods: list[MethodInfo] = Field(..., description="every attribution method this server offers")


class AttentionResponse(BaseModel):
    """The map at the layer's resolution (raw and normalised), upsampled to the input, and an overlay.

    Images are PNG data URLs (`data:image/png;base64,...`), usable directly as an `<img src>`.
    """

    model_id: str = Field(..., description="the model explained", examples=["digits_resnet"])
    method: str = Field(..., description="the attribution method used (see GET /api/attention/methods)",
                        examples=["gradcam"])
    target: int | None = Field(None, description="the class explained (null for class-agnostic methods)",
                               examples=[3])
    target_label: str | None = Field(None, description="the target class's label (null when target is null)",
                                     examples=["3"])
    score: float | None = Field(None, examples=[21.9999], description="the target's score (logit)")
    layer: str = Field(..., description="the node the map was taken at ('input' for gradient methods)",
                       examples=["block2.relu"])
    signed: bool = Field(..., examples=[False], description="normalised maps are in [-1, 1] (else [0, 1])")
    layer_shape: list[int] = Field(..., description="the map's shape at the layer", examples=[[7, 7]])
    layer_map: list[list[float]] = Field(..., description="the raw map at the layer's resolution",
                                         examples=[[[0.125903, 0.136832, 0.126144], [0.067865, 0.057379, 0.035422],
                                                    [0.071259, 0.020222, -0.003918]]])
    layer_map_normalized: list[list[float]] = Field(
        ..., description="the same, normalised: min-max to [0, 1] (CAMs: after a ReLU); if signed, divided by "
                         "the largest |value|, to [-1, 1]",
        examples=[[[0.59576, 0.647478, 0.596901], [0.32113, 0.271514, 0.167613], [0.337192, 0.095687, 0.0]]])
    input_shape: list[int] = Field(..., description="the input's spatial shape", examples=[[28, 28]])
    input_map: list[list[float]] | None = Field(
        None, description="the normalised map upsampled to the input (only with include_input_map=true)",
        examples=[[[0.6565, 0.6585, 0.6789], [0.6457, 0.6476, 0.6665], [0.5376, 0.5381, 0.5428]]])
    input_map_png: str = Field(..., examples=["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."],
                               description="the normalised upsampled map, coloured (inferno; diverging if signed)")
    overlay_png: str = Field(..., examples=["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."],
                             description="the coloured map blended over the input picture")
    picture_png: str = Field(..., examples=["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."],
                             description="the input picture the model saw (after resizing and cropping)")
    extras: dict[str, Any] = Field(default_factory=dict, examples=[{}], description="per-method details")
    elapsed_ms: float = Field(...,
                              description="milliseconds the attribution itself took on the server (not decoding the "
                                          "image or encoding the PNGs)",
                              examples=[84.2])


JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class AttentionJob(BaseModel):
    """A heavy attention request computed in the background: follow `events_url`, then fetch `result_url`."""

    id: str = Field(..., description="the job's id", examples=["3f9c0a7b12e45d68"])
    status: JobStatus = Field(..., description="queued, running, done, failed or cancelled", examples=["running"])
    model_id: str = Field(..., description="the model explained", examples=["efficientnet_lite0"])
    method: str = Field(..., description="the attribution method", examples=["scorecam"])
    done: int = Field(..., description="passes through the network so far", examples=[48])
    total: int | None = Field(None, description="passes the method makes in all (null until it starts)",
                              examples=[257])
    estimated_gmacs: float = Field(..., description="the work estimated before it started, in billions of "
                                                    "multiply-accumulates", examples=[10.1])
    created_at: float = Field(..., description="when it was asked for (Unix time, seconds)", examples=[1764940000.5])
    finished_at: float | None = Field(None, description="when it ended (Unix time), null while it runs",
                                      examples=[None])
    error: str | None = Field(None, description="why it failed (the message the synchronous request would have "
                                                "answered)", examples=[None])
    error_status: int | None = Field(None, description="the HTTP status of that error", examples=[None])
    owned: bool = Field(False, description="you started it (you may cancel it)", examples=[True])
    status_url: str = Field(..., description="GET: this summary", examples=["/api/attention/jobs/3f9c0a7b12e45d68"])
    events_url: str = Field(..., description="GET: progress as server-sent events (progress, then end)",
                            examples=["/api/attention/jobs/3f9c0a7b12e45d68/events"])
    result_url: str = Field(..., description="GET: the attention map once done (the synchronous route's answer)",
                            examples=["/api/attention/jobs/3f9c0a7b12e45d68/result"])


class AttentionJobCreated(AttentionJob):
    """The job just started, and the token that lets you cancel it."""

    owner_token: str = Field(..., description="your owner token: send it as X-Owner-Token to cancel the job "
                                              "(browsers keep it in a cookie)",
                             examples=["q3Xh0bW6S8yJf2kVtN4cLm9pR1aZ7uEoD5iGwYx_B-0"])
