"""Models: listing, architecture, prediction, upload."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ClassScore(BaseModel):
    """One class and the model's probability for it."""

    index: int = Field(..., description="class index in the model's output", examples=[281])
    label: str = Field(..., description="human-readable class name", examples=["tabby cat"])
    probability: float = Field(..., description="softmax probability in [0, 1]", examples=[0.62])
    logit: float = Field(..., description="the raw score before softmax (the model's output if it ends in softmax)")


class PreprocessingInfo(BaseModel):
    """How an image becomes the model's input tensor."""

    resize: int = Field(..., description="the image's shorter side is scaled to this length", examples=[256])
    crop: int = Field(..., description="then the centre crop × crop square is kept", examples=[224])
    mean: list[float] = Field(..., description="per channel, subtracted from pixels scaled to [0, 1]",
                              examples=[[0.5, 0.5, 0.5]])
    std: list[float] = Field(..., description="per channel, divides after the mean is subtracted",
                             examples=[[0.5, 0.5, 0.5]])
    grayscale: bool = Field(False, description="a single luminance channel")
    invert: bool = Field(False, description="1 − pixel before normalising (white digits on black)")


class ModelSummary(BaseModel):
    """A model as listed."""

    id: str = Field(..., description="use it in the other /api/models/{model_id} paths", examples=["digits_classic"])
    name: str = Field(..., examples=["Classic digit CNN"])
    task: str = Field(..., examples=["digit classification"])
    description: str = Field("", description="what the model is, in a sentence or two")
    builtin: bool = Field(..., description="shipped with the visualiser (false: uploaded, can be deleted)")
    input_shape: list[int] = Field(..., description="one input, without the batch axis", examples=[[1, 28, 28]])
    num_classes: int | None = Field(..., description="number of output classes (null if the output is not a vector)",
                                    examples=[10])
    source: str = Field(..., description="where the weights came from, with their licence")
    takes_images: bool = Field(..., description="accepts images (else only .npy tensors)")
    preprocessing: PreprocessingInfo | None = Field(None, description="how images are prepared (null: tensors only)")
    attention_node: str | None = Field(None, description="node whose activation is a learned attention map")
    cam_layer: str | None = Field(None, description="default layer for class activation maps")
    param_count: int = Field(..., description="trainable parameters", examples=[5258])
    version: str = Field(..., description="fingerprint of the weights; part of every run id")


class ModelList(BaseModel):
    """Every model: built-in ones first, then uploaded ones."""

    models: list[ModelSummary]


class AxisReceptiveField(BaseModel):
    """Receptive field along one spatial axis (Araujo et al., 2019)."""

    axis: str = Field(..., examples=["H"])
    size: int = Field(..., description="r: input positions one unit sees", examples=[5])
    stride: int = Field(..., description="S: input positions between neighbouring units", examples=[1])
    padding: int = Field(..., description="P: how far unit 0's field starts before the input", examples=[2])


class ReceptiveFieldInfo(BaseModel):
    """A node's receptive field: local (per axis r, S, P), global (the whole input), or undefined (with why)."""

    status: str = Field(..., description="'local', 'global', 'undefined' or 'constant'", examples=["local"])
    reason: str = Field("", description="for the statuses other than 'local', why")
    axes: list[AxisReceptiveField] | None = Field(None, description="per spatial axis, when local")


class NodeInfo(BaseModel):
    """One node of the architecture."""

    id: str = Field(..., examples=["conv1"])
    op: str = Field(..., examples=["conv2d"])
    inputs: list[str] = Field(..., examples=[["input"]])
    attributes: dict[str, Any] = Field(..., description="the op's attributes in canonical form (per axis)",
                                       examples=[{"out_channels": 8, "kernel_size": [5, 5], "stride": [1, 1],
                                                  "padding": [[2, 2], [2, 2]], "dilation": [1, 1], "groups": 1}])
    output_shape: list[int] = Field(..., description="without the batch axis", examples=[[8, 28, 28]])
    params: int = Field(..., description="trainable parameters", examples=[208])
    buffers: int = Field(0, description="values kept but not trained (batch norm's running statistics)")
    macs: int = Field(..., description="multiply-accumulates for one input", examples=[156800])
    receptive_field: ReceptiveFieldInfo


class Totals(BaseModel):
    """Sums over the whole graph."""

    params: int = Field(..., description="trainable parameters", examples=[5258])
    buffers: int = Field(0, description="values kept but not trained")
    macs: int = Field(..., description="multiply-accumulates for one input", examples=[389376])


class Architecture(BaseModel):
    """A graph, node by node: what /api/architecture/analyze returns for any spec."""

    input_shape: list[int] = Field(..., description="one input, without the batch axis", examples=[[1, 28, 28]])
    output_id: str = Field(..., description="the node whose activation is the output (the last)", examples=["fc"])
    spatial_axes: list[str] = Field(..., description="names of the receptive-field axes", examples=[["H", "W"]])
    nodes: list[NodeInfo]
    totals: Totals


class ModelDetail(ModelSummary):
    """A model with its architecture and labels."""

    labels: list[str] = Field(..., description="class names, by output index")
    architecture: Architecture


class ParamInfo(BaseModel):
    """One parameter (or buffer) of a model."""

    name: str = Field(..., description="'<node id>.<param name>'", examples=["conv1.weight"])
    node: str = Field(..., examples=["conv1"])
    shape: list[int] = Field(..., description="e.g. (out_channels, in_channels / groups, kh, kw) for a conv weight",
                             examples=[[8, 1, 5, 5]])
    trainable: bool = Field(..., description="false for buffers (batch norm's running statistics)")
    min: float
    max: float
    npy_url: str = Field(..., examples=["/api/models/digits_classic/params/conv1.weight.npy"])


class ParamList(BaseModel):
    """Every parameter and buffer of a model, in node order."""

    model_id: str
    params: list[ParamInfo]


class PredictResponse(BaseModel):
    """The top-k classes for one input."""

    model_id: str = Field(..., examples=["digits_classic"])
    classes: list[ClassScore] = Field(..., description="the top k classes, most probable first")
    input_shape: list[int] = Field(..., description="the preprocessed input's shape", examples=[[1, 1, 28, 28]])
    elapsed_ms: float = Field(..., description="time of the forward pass on the server")


class ModelCreated(ModelSummary):
    """An uploaded ONNX model: the id to use, plus what the import found."""

    created: bool = Field(..., description="false when the same file had been uploaded before (same id)")
    onnx: dict[str, Any] = Field(default_factory=dict,
                                 description="import details: opset, producer, input/output names, notes")
