"""How one unit's number was made (GET /api/runs/{run_id}/nodes/{node_id}/units/{index}): one response model per
family of ops, each field meaning one thing, joined into ``UnitExplanation``, a union told apart by ``kind`` (the op
explained). ``family`` names the shape (and the page's view) a kind shares with others: max and average pooling are
both "pool", every elementwise op and batch norm "elementwise"."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, RootModel

from app.schemas.explanation_parts import (
    CellStateUpdate,
    ChainStep,
    ConvChannel,
    GRUUpdate,
    InputNeighbourhood,
    InterpolationSample,
    LinearTerm,
    Omitted,
    Operand,
    PadAxis,
    RecurrentGate,
    SoftmaxEntry,
    TransposedAxis,
    TransposedChannel,
    UpsampleAxis,
)
from engine.explain import REGISTRY


def kind_field(example: str) -> Any:
    """``kind``: the op explained, the union's discriminator."""
    return Field(..., description="the op explained: tells the shapes of the union apart", examples=[example])


def family_field(family: str) -> Any:
    """``family``: the shape a kind shares with other kinds (one view on the page per family)."""
    return Field(family, description="the explanation's shape, shared by the kinds of one family (the page shows "
                                     "each family with one view)", examples=[family])


#: the elementwise ops explained by their formula alone (batch norm has its own model: its statistics)
ACTIVATION_OPS = tuple(op for op, e in REGISTRY.items() if e.family == "elementwise" and op != "batch_norm")


class ExplanationBase(BaseModel):
    """What every explanation has: the unit, the value recomputed and the engine's own, the chain that follows."""

    node: str = Field(..., description="the node the unit belongs to", examples=["conv2"])
    op: str = Field(..., description="the node's op (for the softmax of scores: the op that gave the scores)",
                    examples=["conv2d"])
    title: str = Field(..., description="what that op is called, for display (as the architecture's nodes say)",
                       examples=["Convolution"])
    index: list[int] = Field(..., description="the unit, without the batch axis", examples=[[5, 4, 4]])
    input: str = Field(..., description="the node the unit reads", examples=["pool1"])
    inputs: list[str] = Field(..., description="every node the unit reads (attention_pool: features, weights)",
                              examples=[["pool1"]])
    engine_value: float = Field(..., description="the unit's value in the forward pass (float32)", examples=[1.734])
    result: float = Field(..., description="the value recomputed step by step (float64); agrees with engine_value "
                                           "to rounding", examples=[1.734])
    chain: list[ChainStep] = Field(default_factory=list, description="elementwise nodes that follow the unit")


class WindowGeometry(ExplanationBase):
    """A sliding window (convolution, pooling): where the unit's window lies on the input."""

    kernel_size: list[int] = Field(..., description="the window (kh, kw)", examples=[[5, 5]])
    stride: list[int] = Field(..., description="(sh, sw)", examples=[[1, 1]])
    padding: list[list[int]] = Field(..., description="[before, after] per axis", examples=[[[0, 0], [0, 0]]])
    dilation: list[int] = Field(..., description="spacing between taps (dh, dw)", examples=[[1, 1]])
    rows: list[int] = Field(..., description="input rows the window reads (negative or ≥ H: padding)",
                            examples=[[4, 5, 6, 7, 8]])
    cols: list[int] = Field(..., description="input columns the window reads", examples=[[4, 5, 6, 7, 8]])
    row_in_padding: list[bool] = Field(..., examples=[[False, False, False, False, False]],
                                       description="per row: outside the input (in the padding)")
    col_in_padding: list[bool] = Field(..., examples=[[False, False, False, False, False]],
                                       description="per column: outside the input (in the padding)")


class WeightedSum(ExplanationBase):
    """A sum of products plus a bias (convolutions, linear): the total, the bias, and what is not listed."""

    omitted: Omitted = Field(..., description="the channels (or products) not listed, added up")
    total: float = Field(..., examples=[22.0517], description="Σ of all products (before the bias)")
    bias: float = Field(..., examples=[-0.0518], description="the unit's bias (0 without one)")


class GroupedSum(WeightedSum):
    """A convolution's sum over the input channels of the unit's group."""

    groups: int = Field(..., description="the convolution's groups", examples=[1])
    group: int = Field(..., description="the group the unit's output channel belongs to", examples=[0])
    channels_in_group: int = Field(..., description="input channels that reach the unit", examples=[8])


class ConvExplanation(WindowGeometry, GroupedSum):
    """conv2d: per input channel of the filter's group, window × kernel and their sum; the total, the bias."""

    kind: Literal["conv2d"] = kind_field("conv2d")
    family: Literal["conv"] = family_field("conv")
    channels: list[ConvChannel] = Field(..., description="per input channel (bounded, see omitted)")


class TransposedConvExplanation(GroupedSum):
    """conv_transpose2d: per axis the taps that reach the unit, per input channel the terms; the total, the bias."""

    kind: Literal["conv_transpose2d"] = kind_field("conv_transpose2d")
    family: Literal["transposed_conv"] = family_field("transposed_conv")
    kernel_size: list[int] = Field(..., description="the kernel (kh, kw)", examples=[[3, 3]])
    stride: list[int] = Field(..., description="(sh, sw): input positions land this far apart", examples=[[2, 2]])
    padding: list[list[int]] = Field(..., description="[before, after] per axis, cropped from the output",
                                     examples=[[[1, 1], [1, 1]]])
    output_padding: list[int] = Field(..., description="size added after the last output position, per axis (rows "
                                                       "and columns no input reaches)", examples=[[1, 1]])
    dilation: list[int] = Field(..., description="spacing between kernel taps (dh, dw)", examples=[[1, 1]])
    weight_index: int = Field(..., examples=[3], description="the unit's index into the weight's second axis, out "
                                                             "channel mod (out_channels / groups)")
    spatial_shape: list[int] = Field(..., description="the input map's size", examples=[[7, 7]])
    axes: list[TransposedAxis] = Field(..., description="per axis, the taps that reach the unit, with the rule")
    reached: bool = Field(..., examples=[True], description="some input reaches the unit (false: it is the bias "
                                                            "alone)")
    channel_terms: list[TransposedChannel] = Field(..., description="per input channel of the group, the terms it "
                                                                    "adds (bounded, see omitted)")


class MaxPoolExplanation(WindowGeometry):
    """max_pool2d: the window's values, the running maximum cell by cell, the first maximum."""

    kind: Literal["max_pool2d"] = kind_field("max_pool2d")
    family: Literal["pool"] = family_field("pool")
    channel: int = Field(..., description="the unit's channel (the window's channel)", examples=[0])
    values: list[list[float | None]] = Field(..., description="the window (null in the padding)",
                                             examples=[[[0.0, 1.2], [4.85, 4.36]]])
    running: list[list[float | None]] = Field(..., examples=[[[0.0, 1.2], [4.85, 4.85]]],
                                              description="per window cell, the max of the cells read so far, row by "
                                                          "row; null until a cell inside the input is read")
    argmax: list[int] = Field(..., examples=[[1, 0]], description="[row, col] in the window of the first maximum")


class AvgPoolExplanation(WindowGeometry):
    """avg_pool2d: the window's values, the running sum cell by cell, the sum over the divisor."""

    kind: Literal["avg_pool2d"] = kind_field("avg_pool2d")
    family: Literal["pool"] = family_field("pool")
    channel: int = Field(..., description="the unit's channel (the window's channel)", examples=[0])
    values: list[list[float]] = Field(..., description="the window (0 in the padding)",
                                      examples=[[[0.0, 1.2], [4.85, 4.36]]])
    running: list[list[float | None]] = Field(..., examples=[[[0.0, 1.2], [6.05, 10.41]]],
                                              description="per window cell, the sum of the cells read so far, row by "
                                                          "row; null until a cell inside the input is read")
    sum: float = Field(..., examples=[10.41], description="the window's sum")
    divisor: int = Field(..., examples=[4], description="how many cells the sum is divided by")
    count_include_pad: bool = Field(..., examples=[True], description="padding cells count in the divisor")


class LinearExplanation(WeightedSum):
    """linear: the largest products input × weight, the rest added up, the total and the bias."""

    kind: Literal["linear"] = kind_field("linear")
    family: Literal["linear"] = family_field("linear")
    in_features: int = Field(..., description="the number of input features", examples=[400])
    terms: list[LinearTerm] = Field(..., description="the largest |products| (bounded, see omitted)")


class SoftmaxExplanation(ExplanationBase):
    """softmax (over classes; also the prediction's softmax over a node's scores) / spatial_softmax (over
    positions): the largest logits and the unit's own, their exps, the sum, the probability."""

    kind: Literal["softmax", "spatial_softmax"] = kind_field("softmax")
    family: Literal["softmax"] = family_field("softmax")
    over: Literal["class", "position"] = Field(..., examples=["class"],
                                               description="'class' (over the classes) or 'position' (spatial "
                                                           "softmax, over positions)")
    count: int = Field(..., description="how many logits", examples=[10])
    unit: int = Field(..., description="the unit's class or flattened position", examples=[3])
    max: float = Field(..., examples=[21.9999], description="the largest logit (subtracted before exp)")
    exp_sum: float = Field(..., examples=[1.0000003], description="Σ e^(z − max) over all logits")
    exp: float = Field(..., examples=[1.0], description="the unit's e^(z − max)")
    entries: list[SoftmaxEntry] = Field(..., description="the largest logits and the unit's own")
    omitted: Omitted = Field(..., description="how many logits are not listed (the sum of the exps covers them)")


class GlobalAvgPoolExplanation(ExplanationBase):
    """global_avg_pool: the channel's whole map, summed and divided by its number of positions."""

    kind: Literal["global_avg_pool"] = kind_field("global_avg_pool")
    family: Literal["global_avg_pool"] = family_field("global_avg_pool")
    channel: int = Field(..., description="the unit's channel", examples=[0])
    spatial_shape: list[int] = Field(..., description="the input map's size", examples=[[7, 7]])
    sum: float = Field(..., examples=[10.41], description="the map's sum")
    divisor: int = Field(..., examples=[49], description="its number of positions")


class AttentionPoolExplanation(ExplanationBase):
    """attention_pool: Σ over positions of attention weight × feature."""

    kind: Literal["attention_pool"] = kind_field("attention_pool")
    family: Literal["attention_pool"] = family_field("attention_pool")
    channel: int = Field(..., description="the unit's channel (the feature map summed)", examples=[0])
    spatial_shape: list[int] = Field(..., description="the input map's size", examples=[[7, 7]])
    weights: list[list[float]] | None = Field(None, examples=[[[0.01, 0.02], [0.9, 0.07]]],
                                              description="the attention map (≤ 32×32; absent when larger, see "
                                                          "omitted)")
    omitted: Omitted | None = Field(None, description="how many attention weights are not listed (absent: all are)")


class MergeExplanation(ExplanationBase):
    """add / mul: each input's value at the unit's index, added or multiplied."""

    kind: Literal["add", "mul"] = kind_field("add")
    family: Literal["merge"] = family_field("merge")
    operands: list[Operand] = Field(..., description="each input's value at the unit's index")


class ActivationExplanation(ExplanationBase):
    """An elementwise op with a formula of one number (ReLU, sigmoid, clip, dropout at inference, ...)."""

    kind: Literal[ACTIVATION_OPS] = kind_field("relu")  # type: ignore
    family: Literal["elementwise"] = family_field("elementwise")
    input_value: float = Field(..., examples=[4.0103], description="the value coming in")


class BatchNormExplanation(ExplanationBase):
    """batch_norm (inference): (x − running mean) / √(running var + ε) · γ + β."""

    kind: Literal["batch_norm"] = kind_field("batch_norm")
    family: Literal["elementwise"] = family_field("elementwise")
    input_value: float = Field(..., examples=[4.0103], description="the value coming in")
    running_mean: float = Field(..., examples=[0.0088], description="the channel's running mean")
    running_var: float = Field(..., examples=[1.2777], description="the channel's running variance")
    eps: float = Field(..., examples=[1e-05], description="ε")
    weight: float = Field(..., examples=[0.943], description="γ")
    bias: float = Field(..., examples=[-0.1231], description="β")


class PadExplanation(ExplanationBase):
    """pad (2D maps): per axis the input position the unit sits on and the one its value comes from, or the
    constant; the input around it."""

    kind: Literal["pad"] = kind_field("pad")
    family: Literal["pad"] = family_field("pad")
    channel: int = Field(..., description="the unit's channel", examples=[0])
    padding: list[list[int]] = Field(..., description="[before, after] per axis", examples=[[[2, 1], [1, 2]]])
    mode: Literal["constant", "reflect", "replicate"] = Field(..., description="how the border is filled",
                                                              examples=["reflect"])
    spatial_shape: list[int] = Field(..., description="the input map's size", examples=[[3, 4]])
    in_border: bool = Field(..., description="the unit lies in the border", examples=[True])
    axes: list[PadAxis] = Field(..., description="per axis, the input position read, with its rule")
    value: float | None = Field(None, description="constant pad: the constant", examples=[0.0])
    source: list[int] | None = Field(None, examples=[[2, 2]], description="the input [row, col] the value is copied "
                                                                          "from (absent: the constant)")
    input_value: float | None = Field(None, examples=[0.42], description="the input number copied (absent: the "
                                                                         "constant)")
    neighbourhood: InputNeighbourhood = Field(..., description="the input map around the source (or the nearest "
                                                               "input position, for the constant)")


class UpsampleExplanation(ExplanationBase):
    """upsample (2D maps): nearest copies one input number (``source``, ``input_value``); bilinear mixes 4
    (``align_corners``, ``samples``)."""

    kind: Literal["upsample"] = kind_field("upsample")
    family: Literal["upsample"] = family_field("upsample")
    channel: int = Field(..., description="the unit's channel", examples=[0])
    mode: Literal["nearest", "bilinear"] = Field(..., description="how the output samples the input",
                                                 examples=["nearest"])
    scale_factor: list[int] = Field(..., description="the factor per axis", examples=[[2, 2]])
    spatial_shape: list[int] = Field(..., description="the input map's size", examples=[[3, 4]])
    axes: list[UpsampleAxis] = Field(..., description="per axis, the input position(s) read, with the rule")
    neighbourhood: InputNeighbourhood = Field(..., description="the input map around the source")
    source: list[int] | None = Field(None, examples=[[2, 2]], description="nearest: the input [row, col] copied")
    input_value: float | None = Field(None, examples=[0.42], description="nearest: the input number copied")
    align_corners: bool | None = Field(None, description="bilinear: corners on corners (else half-pixel centres)",
                                       examples=[False])
    samples: list[InterpolationSample] | None = Field(None, description="bilinear: the 4 values mixed")


class RecurrentExplanation(ExplanationBase):
    """rnn / lstm / gru: hidden unit j at step t (``index`` [t, j]; [k, t, j] for layer k of a node of several
    layers). The step's input x_t and previous state h_{t−1}, each gate's weighted sums split into the input side and
    the recurrent side, its activation, and the new state: c_t then h_t = o · tanh(c_t) (LSTM), h_t = (1 − z) · n +
    z · h_{t−1} (GRU), h_t = the gate itself (RNN). ``result`` is h_t recomputed in float64 from the engine's own
    x_t, h_{t−1} and c_{t−1}; ``engine_value`` the h_t the engine recorded."""

    kind: Literal["rnn", "lstm", "gru"] = kind_field("lstm")
    family: Literal["recurrent"] = family_field("recurrent")
    cell: Literal["rnn", "lstm", "gru"] = Field(..., description="the cell (the op)", examples=["lstm"])
    layer: int = Field(..., description="the layer k (0: the one that reads the sequence)", examples=[0])
    direction: Literal["forward", "reverse"] = Field(..., examples=["forward"],
                                                     description="reverse: the backward direction of a bidirectional "
                                                                 "node, which reads the steps from last to first")
    step: int = Field(..., description="t, the step in input order", examples=[12])
    unit: int = Field(..., description="the hidden unit j within its direction (0 to H − 1)", examples=[5])
    hidden_size: int = Field(..., description="H", examples=[128])
    steps: int = Field(..., description="T, the steps of the sequence", examples=[28])
    previous_step: int | None = Field(None, description="the step whose state this one reads (t − 1; t + 1 in "
                                                        "reverse); absent at the first step read", examples=[11])
    x: list[float] = Field(..., description="x_t: the step's input (the sequence's row t for layer 0; the layer "
                                            "below's h_t for layer k > 0)", examples=[[0.0, 0.12, 0.98]])
    x_from: str = Field(..., description="where x_t comes from", examples=["row 12 of 'rows' (the sequence read)"])
    h_prev: list[float] = Field(..., description="h_{t−1}: every unit of the previous hidden state (H numbers)",
                                examples=[[0.1, -0.3, 0.05]])
    h_prev_from: str = Field(..., description="where h_{t−1} comes from (the previous step, the initial state h0, "
                                              "or zeros)", examples=["h at step 11"])
    gates: list[RecurrentGate] = Field(..., description="every gate in PyTorch's order (LSTM i, f, g, o; GRU r, z, "
                                                        "n; RNN its one h)")
    cell_state: CellStateUpdate | None = Field(None, description="LSTM: the new cell state c_t")
    update: GRUUpdate | None = Field(None, description="GRU: how h_t mixes the candidate and the previous state")
    activation_index: list[int] | None = Field(
        None, examples=[[12, 5]], description="where h_t of this unit sits in the node's own output (output "
                                              "'sequence': [t, j] of the top layer; 'hidden': its row of h_n at the "
                                              "last step read); absent when the output does not hold it")


EXPLANATIONS = (ConvExplanation, TransposedConvExplanation, MaxPoolExplanation, AvgPoolExplanation,
                LinearExplanation, SoftmaxExplanation, GlobalAvgPoolExplanation, AttentionPoolExplanation,
                MergeExplanation, ActivationExplanation, BatchNormExplanation, PadExplanation, UpsampleExplanation,
                RecurrentExplanation)


class UnitExplanation(RootModel[Annotated[
        ConvExplanation | TransposedConvExplanation | MaxPoolExplanation | AvgPoolExplanation | LinearExplanation
        | SoftmaxExplanation | GlobalAvgPoolExplanation | AttentionPoolExplanation | MergeExplanation
        | ActivationExplanation | BatchNormExplanation | PadExplanation | UpsampleExplanation | RecurrentExplanation,
        Field(discriminator="kind")]]):
    """How one unit's number was made, recomputed by the engine: one shape per family of ops, told apart by ``kind``
    (the op explained). Always: ``result`` (recomputed, float64) and ``engine_value`` (the forward pass's own float32
    number); they agree to rounding."""

    model_config = {"json_schema_extra": {"examples": [{
        "node": "pool1", "op": "max_pool2d", "title": "Max pooling", "kind": "max_pool2d", "family": "pool",
        "index": [0, 5, 6],
        "input": "relu1", "inputs": ["relu1"], "engine_value": 4.85, "result": 4.85, "chain": [],
        "kernel_size": [2, 2], "stride": [2, 2], "padding": [[0, 0], [0, 0]], "dilation": [1, 1], "rows": [10, 11],
        "cols": [12, 13], "row_in_padding": [False, False], "col_in_padding": [False, False], "channel": 0,
        "values": [[0.0, 1.2], [4.85, 4.36]], "running": [[0.0, 1.2], [4.85, 4.85]], "argmax": [1, 0]}]}}
