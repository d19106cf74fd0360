"""Attention maps: which parts of the input drove the decision.

One answer per input kind (``kind``): an image ``(C, H, W)`` (``AttentionResponse``), a sequence ``(C, L)``
(``SequenceAttentionResponse``), a volume ``(C, D, H, W)`` such as a video clip (``VolumeAttentionResponse``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


class MethodCost(BaseModel):
    """The work one map takes, counted as the server's work budget counts it: one forward pass of one input is 1
    unit, a backward pass about 2 more. A request does ``(units + units_per_step x steps) x`` one forward pass's
    multiply-accumulates."""

    heavy: bool = Field(..., examples=[True],
                        description="the method passes the input through the network many times (once per step): "
                                    "a POST always answers 202 with a background job, and a map may take seconds to "
                                    "minutes on a large model")
    units: int = Field(..., examples=[3], description="the fixed work, in units (forward pass 1, backward pass 2)")
    units_per_step: int = Field(..., examples=[1],
                                description="the work each step adds, in units (0: a fixed number of passes)")
    step: str | None = Field(None, examples=["channel"],
                             description="what is repeated, one step each: 'channel' (Score-CAM), 'noisy copy' "
                                         "(SmoothGrad), 'path step' (Integrated Gradients), 'occluded window' "
                                         "(occlusion); null for a fixed number of passes")
    option: str | None = Field(None, examples=["max_channels"],
                               description="the request option that sets the number of steps (null: fixed, or "
                                           "occlusion, whose windows follow `window` and `stride`)")
    default_steps: int | None = Field(None, examples=[256],
                                      description="the steps by default, shrunk to fit the work budget (Score-CAM: "
                                                  "at most the layer's channels); null when `option` is")
    passes: str = Field(..., examples=["1 forward pass per channel"],
                        description="the passes in words, per step for a heavy method")


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
    cost: MethodCost = Field(..., description="the work one map takes: heavy methods (many passes) run as "
                                              "background jobs")


class ColourStop(BaseModel):
    """One control point of a colour scale; colours between two points are interpolated linearly."""

    value: float = Field(..., description="the normalised map's value", examples=[0.5])
    rgb: list[int] = Field(..., description="red, green, blue in 0..255", examples=[[188, 55, 84]])


class ColourScales(BaseModel):
    """The colours of every map PNG (``input_map_png``, the overlays), for a legend."""

    unsigned: list[ColourStop] = Field(..., description="maps in [0, 1] (inferno-like: dark none, bright most)")
    signed: list[ColourStop] = Field(..., description="signed maps in [-1, 1]: blue lowers the score, white 0, red "
                                                      "raises it")


class MethodList(BaseModel):
    methods: list[MethodInfo] = Field(..., description="every attribution method this server offers")
    scales: ColourScales = Field(..., description="the colour scales the map PNGs are drawn with")


class MethodSupport(BaseModel):
    """Whether one method can explain one model."""

    name: str = Field(..., description="the method (GET /api/attention/methods)", examples=["cam"])
    available: bool = Field(..., description="the method applies to this model (the work budget aside)",
                            examples=[False])
    reason: str | None = Field(None, description="why not, when it does not apply (the refusal a POST would get)",
                               examples=["CAM needs the layer to feed global average pooling then one linear layer"])


class AttentionSupport(BaseModel):
    """What can explain one model, before any input is sent: the input it takes, its output, and the methods that
    apply (the work budget is checked only when a map is asked for)."""

    model_id: str = Field(..., description="the model", examples=["onnx-3f2a9c1b7d4e"])
    explainable: bool = Field(..., description="at least one method applies", examples=[True])
    reason: str | None = Field(None, description="why no method applies (null when one does)", examples=[None])
    input_kind: Literal["sequence", "image", "volume"] | None = Field(
        None, description="the input's kind by its spatial axes (null: no method can explain it)",
        examples=["sequence"])
    input_shape: list[int] = Field(..., description="one input, without the batch axis", examples=[[2, 32]])
    input_axes: str | None = Field(None, description="the input's axes in letters", examples=["(C, L)"])
    takes_images: bool = Field(..., description="accepts images (else only .npy tensors)", examples=[False])
    expected_input: str = Field(..., description="what to send, in a sentence",
                                examples=["a .npy file holding a float array of shape [2, 32] (C, L: 2 channels, "
                                          "32 positions), or [1, 2, 32]"])
    output_kind: Literal["classes", "map"] | None = Field(
        None, description="'classes': class scores (K,); 'map': a map of class scores (K, *S) such as "
                          "segmentation, explained over a `region`; null: neither", examples=["map"])
    output_shape: list[int] = Field(..., description="the score node's shape (the logits), without the batch axis",
                                    examples=[[3, 8, 8]])
    region_axes: list[str] | None = Field(
        None, description="for a map output: the region's axis names, in order (the region is their starts, then "
                          "their ends)", examples=[["y", "x"]])
    region_shape: list[int] | None = Field(None, description="for a map output: its spatial shape, the bounds of "
                                                             "a region (the whole map by default)",
                                           examples=[[8, 8]])
    layers: list[str] = Field(..., description="the nodes a method that takes a `layer` accepts (those with the "
                                               "input's spatial axes), in graph order", examples=[["act1", "act"]])
    default_layer: str | None = Field(None, description="the layer used when none is given (null: no such layer)",
                                      examples=["act"])
    methods: list[MethodSupport] = Field(..., description="every method, in GET /api/attention/methods' order")


REGION_DESCRIPTION = (
    "for a model whose output is a map of class scores ((K, H, W), segmentation; (K, L); (K, D, H, W)): the box "
    "whose class-`target` logits were summed into the score, [starts..., ends...] in output positions, half-open "
    "([y0, x0, y1, x1] for (K, H, W)); null: the whole map, or a model with class scores (K,)")


class StepAttention(BaseModel):
    """One number per time step, for a model that reads a sequence (a recurrent network; a digit read row by row):
    learned attention's weights over the steps (summing to 1), or saliency and gradient × input summed over each
    step's features."""

    node: str = Field(..., description="the node whose steps these are: the sequence_attention node (learned "
                                       "attention), or the sequence the first recurrent node reads",
                      examples=["rows"])
    values: list[float] = Field(..., description="one number per step, in input order",
                                examples=[[0.0012, 0.0431, 0.2117]])
    normalized: list[float] = Field(..., description="the same, normalised as the maps are: [0, 1] (or [-1, 1] when "
                                                     "signed)", examples=[[0.0, 0.2, 1.0]])
    signed: bool = Field(..., description="the numbers have signs", examples=[False])
    rule: str = Field(..., description="how a step's number was made, in words",
                      examples=["Σ over the step's features of |∂S/∂x|"])
    step_axis: str | None = Field(
        None, examples=["H"],
        description="the input axis the steps run along: 'H' when step t is the input's row t (a digit read row by "
                    "row), 'W' for columns, 'C' when the input is the sequence (T, F) itself; null when the steps do "
                    "not lie on the input (a convolution stands between)")
    strip_png: str = Field(..., examples=["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABwAAAAQ..."],
                           description="the normalised numbers as a strip T pixels wide and 16 high, coloured as the "
                                       "maps (inferno; diverging if signed)")
    overlay_png: str | None = Field(
        None, examples=["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."],
        description="image inputs whose steps lie on them: each input position coloured by its step's number (a "
                    "digit: row t by step t) and blended over the picture; null otherwise")


class AttentionAnswer(BaseModel):
    """What every kind of input's answer holds."""

    model_id: str = Field(..., description="the model explained", examples=["digits_resnet"])
    method: str = Field(..., description="the attribution method used (see GET /api/attention/methods)",
                        examples=["gradcam"])
    target: int | None = Field(None, description="the class explained (null for class-agnostic methods)",
                               examples=[3])
    target_label: str | None = Field(None, description="the target class's label (null when target is null)",
                                     examples=["3"])
    score: float | None = Field(None, examples=[21.9999],
                                description="the target's score (logit); for a map of class scores, the sum of the "
                                            "target's logits over `region`")
    region: list[int] | None = Field(None, description=REGION_DESCRIPTION, examples=[None])
    layer: str = Field(..., description="the node the map was taken at ('input' for gradient methods)",
                       examples=["block2.relu"])
    signed: bool = Field(..., examples=[False], description="normalised maps are in [-1, 1] (else [0, 1])")
    extras: dict[str, Any] = Field(default_factory=dict, examples=[{}], description="per-method details")
    steps: StepAttention | None = Field(
        None, description="for a model that reads a sequence (a recurrent network): one number per time step "
                          "(learned attention over a sequence_attention node; saliency and gradient × input); null "
                          "otherwise")
    elapsed_ms: float = Field(...,
                              description="milliseconds the attribution itself took on the server (not decoding the "
                                          "image or encoding the PNGs)",
                              examples=[84.2])


class AttentionResponse(AttentionAnswer):
    """An image's map (kind `image`): at the layer's resolution (raw and normalised), upsampled to the input, and
    an overlay.

    Images are PNG data URLs (`data:image/png;base64,...`), usable directly as an `<img src>`.
    """

    kind: Literal["image"] = Field("image", description="the input kind: an image (C, H, W)", examples=["image"])
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


class SequenceAttentionResponse(AttentionAnswer):
    """A sequence's map (kind `sequence`, an input (C, L) such as audio for a Conv1d network): one value per
    position, at the layer and upsampled to the input by linear interpolation, and the normalised map as a coloured
    strip. There is no overlay: a sequence has no picture; `input_values` holds the signal to plot `input_map`
    against."""

    kind: Literal["sequence"] = Field(..., description="the input kind: a sequence (C, L)", examples=["sequence"])
    layer_shape: list[int] = Field(..., description="the map's shape at the layer, [l]", examples=[[8]])
    layer_map: list[float] = Field(..., description="the raw map at the layer's resolution",
                                   examples=[[0.0123, 0.5311, 0.2274, -0.0412, 0.1908, 0.3026, 0.0117, -0.0025]])
    layer_map_normalized: list[float] = Field(
        ..., description="the same, normalised: min-max to [0, 1] (CAMs: after a ReLU); if signed, divided by "
                         "the largest |value|, to [-1, 1]",
        examples=[[0.0232, 1.0, 0.4282, 0.0, 0.3593, 0.5698, 0.022, 0.0]])
    input_shape: list[int] = Field(..., description="the input's length, [L]", examples=[[32]])
    input_map: list[float] | None = Field(
        None, description="the normalised map upsampled to the input's length (only with include_input_map=true)",
        examples=[[0.0232, 0.2674, 0.7558, 1.0]])
    input_map_png: str = Field(..., examples=["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAACAAAAAQ..."],
                               description="the normalised upsampled map as a strip L pixels wide and "
                                           "16 high, coloured (inferno; diverging if signed)")
    input_values: list[list[float]] = Field(
        ..., description="the input the model saw, channel by channel (C, L), to draw the map beside",
        examples=[[[0.12, -0.4, 0.83, 0.05], [1.2, 0.9, -0.1, 0.0]]])


class VolumeAttentionResponse(AttentionAnswer):
    """A volume's map (kind `volume`, an input (C, D, H, W) such as a video clip for a Conv3d network): at the
    layer (d, h, w) and upsampled to the input (D, H, W) by trilinear interpolation. The PNGs show the D slices
    (frames) side by side, left to right, each W pixels wide: one picture D·W wide and H high."""

    kind: Literal["volume"] = Field(..., description="the input kind: a volume (C, D, H, W)", examples=["volume"])
    layer_shape: list[int] = Field(..., description="the map's shape at the layer, [d, h, w]", examples=[[2, 2, 2]])
    layer_map: list[list[list[float]]] = Field(
        ..., description="the raw map at the layer's resolution, slice by slice",
        examples=[[[[0.1259, 0.1368], [0.0679, 0.0574]], [[0.0713, 0.0202], [0.0, -0.0039]]]])
    layer_map_normalized: list[list[list[float]]] = Field(
        ..., description="the same, normalised: min-max to [0, 1] (CAMs: after a ReLU); if signed, divided by "
                         "the largest |value|, to [-1, 1]",
        examples=[[[[0.9203, 1.0], [0.4963, 0.4196]], [[0.5212, 0.1477], [0.0, 0.0]]]])
    input_shape: list[int] = Field(..., description="the input's spatial shape, [D, H, W]", examples=[[16, 112, 112]])
    input_map: list[list[list[float]]] | None = Field(
        None, description="the normalised map upsampled to the input (only with include_input_map=true; D·H·W "
                          "numbers, so large for a clip)",
        examples=[[[[0.92, 0.96], [0.5, 0.42]], [[0.52, 0.15], [0.0, 0.0]]]])
    input_map_png: str = Field(..., examples=["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAABwAAAABw..."],
                               description="the normalised upsampled map's slices side by side, coloured (inferno; "
                                           "diverging if signed)")
    overlay_png: str = Field(..., examples=["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAABwAAAABw..."],
                             description="each slice of the coloured map blended over its frame, side by side")
    picture_png: str = Field(..., examples=["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAABwAAAABw..."],
                             description="the frames the model saw, side by side (min-max scaled over the clip)")


#: the attention answer, by input kind (``kind``: image, sequence or volume)
AnyAttentionResponse = Annotated[AttentionResponse | SequenceAttentionResponse | VolumeAttentionResponse,
                                 Field(discriminator="kind")]


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
