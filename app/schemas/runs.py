"""Runs (one forward pass, content-addressed) and their feature maps."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.models import ClassScore


class TileLayout(BaseModel):
    """Where each channel sits in a node's tiled PNG.

    Channel ``c`` is at row ``c // columns``, column ``c % columns``; its top-left pixel is
    ``(column * (tile_width + gap), row * (tile_height + gap))``. Grey level ``g`` stands for
    ``low + g / 255 * (high - low)`` with ``[low, high] = ranges[c]``.
    """

    tiles: int = Field(..., description="number of tiles: channels (× depth for 3D maps)", examples=[32])
    rows: int = Field(..., description="rows of tiles", examples=[6])
    columns: int = Field(..., description="tiles per row", examples=[6])
    tile_height: int = Field(..., description="height of one tile in pixels (the map's H; 1 for vectors)",
                             examples=[112])
    tile_width: int = Field(..., description="width of one tile in pixels (the map's W)", examples=[112])
    gap: int = Field(..., description="pixels between tiles", examples=[1])
    width: int = Field(..., description="whole image width", examples=[677])
    height: int = Field(..., description="whole image height", examples=[677])
    scale: Literal["channel", "layer"] = Field(
        "channel", description="grey levels scaled per channel, or over the whole layer", examples=["channel"])
    ranges: list[tuple[float, float]] = Field(
        default_factory=list, description="per tile, the [low, high] values grey 0 and 255 stand for "
                                          "(filled in by the PNG's X-Tile-Layout header)",
        examples=[[[-10.72, 5.02], [-3.4, 2.9]]])


class NodeActivation(BaseModel):
    """One node's activation for a run: its shape, statistics and where to fetch it."""

    id: str = Field(..., description="node id ('input' for the model's input)", examples=["stem.relu6"])
    op: str = Field(..., description="the node's op ('input' for the input)", examples=["relu6"])
    shape: list[int] = Field(..., description="activation shape without the batch axis", examples=[[32, 112, 112]])
    min: float = Field(...,
                       description="smallest value of the activation (over every channel and position)",
                       examples=[0.0])
    max: float = Field(..., description="largest value of the activation", examples=[5.83])
    mean: float = Field(..., description="mean over every value of the activation", examples=[0.61])
    std: float = Field(...,
                       description="population standard deviation over every value of the activation",
                       examples=[0.94])
    zero_fraction: float = Field(..., examples=[0.9072], description="share of exact zeros (dead units after ReLU)")
    png_url: str = Field(..., description="every channel tiled into one greyscale PNG",
                         examples=["/api/runs/3f2a.../nodes/stem.relu6.png"])
    npy_url: str = Field(..., description="the raw float32 activation, shape [1, *shape]",
                         examples=["/api/runs/3f2a.../nodes/stem.relu6.npy"])
    layout: TileLayout = Field(..., description="the PNG's grid (ranges come with the PNG itself)")


class ActivationsResponse(BaseModel):
    """A run: every node's activation for one input."""

    model_id: str = Field(..., description="the model the run belongs to", examples=["digits_classic"])
    run_id: str = Field(..., description="content hash of model and preprocessed input; valid on every worker",
                        examples=["3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d"])
    input_shape: list[int] = Field(..., description="the preprocessed input's shape, batch axis included",
                                   examples=[[1, 1, 28, 28]])
    nodes: list[NodeActivation] = Field(..., description="the input first, then every node in graph order")
    classes: list[ClassScore] | None = Field(
        None, description="top classes when the model's output is class scores (as from /predict)")
    elapsed_ms: float = Field(..., examples=[5.1], description="time the forward pass took when the run was computed")
    cached: bool = Field(..., examples=[False], description="the run was already in this worker's cache")


# --- one unit's arithmetic (GET /api/runs/{run_id}/nodes/{node_id}/units/{index}) ---------------------------------
class Omitted(BaseModel):
    """What a bounded explanation leaves out, aggregated."""

    count: int = Field(0, description="how many channels, products or classes are not listed", examples=[1264])
    sum: float | None = Field(None, description="their sum (channel sums or products), so the listed ones plus this "
                                                "give the total", examples=[0.4817])
    note: str = Field("", description="what was left out, in words (empty when nothing was)",
                      examples=["the 16 channels with the largest |sum| of the 1280 are listed; the other 1264 are "
                                "added up as one number"])


class ConvChannel(BaseModel):
    """One input channel of a convolution unit: the window, the kernel slice, their element-wise products."""

    channel: int = Field(..., description="input channel index", examples=[3])
    values: list[list[float]] = Field(..., description="input numbers in the window (kh × kw; 0 in the padding)",
                                      examples=[[[0.0, 0.12], [0.5, 1.3]]])
    kernel: list[list[float]] = Field(..., description="weight[k, channel of the group] (kh × kw)",
                                      examples=[[[0.2, -0.1], [0.05, 0.3]]])
    products: list[list[float]] = Field(..., description="values × kernel, element by element",
                                        examples=[[[0.0, -0.012], [0.025, 0.39]]])
    sum: float = Field(..., description="sum of the products", examples=[0.403])
    running: float = Field(..., description="running total: the sums of the channels listed so far, this one "
                                            "included", examples=[1.21])


class TransposedTerm(BaseModel):
    """conv_transpose2d: one input number that reaches the unit, times the weight it meets there."""

    row: int = Field(..., description="input row i (output row = i · stride − padding before + a · dilation)",
                     examples=[2])
    col: int = Field(..., description="input column j (output column = j · stride − padding before + b · dilation)",
                     examples=[1])
    kernel_row: int = Field(..., description="kernel row a", examples=[2])
    kernel_col: int = Field(..., description="kernel column b", examples=[2])
    input: float = Field(..., description="the input value x[channel, i, j]", examples=[0.8])
    weight: float = Field(..., description="weight[channel, weight_index, a, b]", examples=[-0.25])
    product: float = Field(..., description="input × weight", examples=[-0.2])


class TransposedChannel(BaseModel):
    """conv_transpose2d: one input channel of the unit's group, the terms it adds to the unit."""

    channel: int = Field(..., description="input channel index", examples=[3])
    terms: list[TransposedTerm] = Field(..., description="every input position and kernel offset that reaches the "
                                                         "unit (empty when none does: the unit is the bias alone)")
    sum: float = Field(..., description="sum of the products", examples=[0.403])
    running: float = Field(..., description="running total: the sums of the channels listed so far, this one "
                                            "included", examples=[1.21])


class LinearTerm(BaseModel):
    """One product input × weight of a fully connected unit."""

    index: int = Field(..., description="input feature index", examples=[17])
    input: float = Field(..., description="the input feature's value", examples=[0.8])
    weight: float = Field(..., description="weight[unit, index]: the weight this feature is multiplied by",
                          examples=[-0.25])
    product: float = Field(..., description="input × weight", examples=[-0.2])


class SoftmaxEntry(BaseModel):
    """One class (or position) of a softmax."""

    index: int = Field(..., description="class index (softmax) or flattened position (spatial_softmax)",
                       examples=[3])
    logit: float = Field(..., description="the score z", examples=[7.1])
    exp: float = Field(..., description="e^(z − max)", examples=[1.0])
    probability: float = Field(..., description="exp / exp_sum", examples=[0.93])


class ChainStep(BaseModel):
    """An elementwise node after the unit (batch norm, ReLU, ...), at the same index."""

    node: str = Field(..., description="id of the elementwise node", examples=["stem_bn"])
    op: str = Field(..., description="its op", examples=["batch_norm"])
    input_value: float = Field(..., examples=[4.0103],
                               description="the value coming in (the previous step's engine value)")
    engine_value: float = Field(..., examples=[3.2153], description="this node's value in the forward pass")
    result: float | None = Field(None, examples=[3.2153],
                                 description="the formula recomputed from input_value (where there is one)")
    running_mean: float | None = Field(None, examples=[0.0088], description="batch norm: the channel's running mean")
    running_var: float | None = Field(None, examples=[1.2777], description="batch norm: the channel's running variance")
    eps: float | None = Field(None, examples=[1e-05], description="batch norm: ε")
    weight: float | None = Field(None, examples=[0.943], description="batch norm: γ")
    bias: float | None = Field(None, examples=[-0.1231], description="batch norm: β")


class Operand(BaseModel):
    """One input of an add / mul node at the unit's index."""

    node: str = Field(..., description="id of the input node", examples=["block1_bn"])
    value: float = Field(..., description="its value at the unit's index", examples=[0.42])


class UnitAxis(BaseModel):
    """pad / upsample: along one spatial axis, where the unit sits and which input position its value comes from."""

    axis: Literal["row", "column"] = Field(..., description="the spatial axis", examples=["row"])
    output: int = Field(..., description="the unit's position along this axis", examples=[0])
    position: int | None = Field(None, examples=[-2], description="pad: the input position the unit sits on "
                                 "(output − padding before; negative or ≥ the size: in the border)")
    in_border: bool | None = Field(None, description="pad: the position lies in the border", examples=[True])
    source: int | None = Field(None, examples=[2], description="the input position the value comes from (absent: "
                               "the constant of a constant pad)")
    rule: str = Field(..., description="the rule, in words", examples=["row −2 → 2 (mirror at 0)"])
    scale: int | None = Field(None, description="upsample: the factor along this axis", examples=[2])
    block: list[int] | None = Field(None, examples=[[4, 5]],
                                    description="upsample: the first and last output positions that copy this source")
    coordinate: float | None = Field(None, description="bilinear upsample: the source coordinate (after the clamp)",
                                     examples=[1.25])
    neighbours: list[int] | None = Field(None, description="bilinear upsample: the two input positions mixed",
                                         examples=[[1, 2]])
    weights: list[float] | None = Field(None, description="bilinear upsample: their weights (adding up to 1)",
                                        examples=[[0.75, 0.25]])
    taps: list[list[int]] | None = Field(None, examples=[[[2, 2], [3, 0]]],
                                         description="conv_transpose2d: the [input position, kernel offset] pairs "
                                                     "that reach the unit along this axis (empty: none does)")


class InterpolationSample(BaseModel):
    """bilinear upsample: one of the 4 input values mixed, with its weight (row weight × column weight)."""

    row: int = Field(..., description="input row", examples=[1])
    col: int = Field(..., description="input column", examples=[2])
    value: float = Field(..., description="the input value there", examples=[0.6])
    weight: float = Field(..., description="its weight", examples=[0.5625])
    product: float = Field(..., description="value × weight", examples=[0.3375])


class InputNeighbourhood(BaseModel):
    """pad / upsample: the input map around the position the unit's value comes from."""

    rows: list[int] = Field(..., description="input rows listed", examples=[[0, 1, 2]])
    cols: list[int] = Field(..., description="input columns listed", examples=[[1, 2, 3]])
    values: list[list[float]] = Field(..., description="the input channel's values there (rows × cols)",
                                      examples=[[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]]])
    source: list[int] | None = Field(None, examples=[[2, 1]], description="[row, col] inside this grid of the "
                                     "value copied (absent: none is, the constant of a constant pad)")


class UnitExplanation(BaseModel):
    """How one unit's number was made, recomputed by the engine (fields by ``kind``; absent ones do not apply).

    conv2d: window geometry, ``channels``, ``total``, ``bias``. max_pool2d / avg_pool2d: window geometry,
    ``values``, ``argmax`` or ``divisor``. linear: ``terms``, ``total``, ``bias``. softmax / spatial_softmax:
    ``entries``, ``max``, ``exp_sum``, ``exp``. global_avg_pool: ``sum``, ``divisor``. add / mul: ``operands``.
    attention_pool: ``weights``. Elementwise ops: ``input_value`` (and batch norm's statistics). pad / upsample:
    ``mode``, ``axes`` (per axis the input position read, with its rule), ``source``, ``input_value``,
    ``neighbourhood`` (pad: ``padding``, ``in_border``, ``value``; upsample: ``scale_factor``; bilinear:
    ``align_corners``, ``samples`` instead of ``source``). conv_transpose2d: ``kernel_size``, ``stride``,
    ``padding``, ``output_padding``, ``dilation``, ``groups``, ``weight_index``, ``axes`` (per axis the taps that reach
    the unit, with the rule), ``reached``, ``channel_terms``, ``total``, ``bias``. Always:
    ``result`` (recomputed, float64) and ``engine_value`` (the forward pass's own float32 number); they agree to
    rounding.
    """

    node: str = Field(..., description="the node the unit belongs to", examples=["conv2"])
    op: str = Field(..., description="the node's op", examples=["conv2d"])
    kind: str = Field(..., description="which arithmetic is explained: the op", examples=["conv2d"])
    index: list[int] = Field(..., description="the unit, without the batch axis", examples=[[5, 4, 4]])
    input: str = Field(..., description="the node the unit reads", examples=["pool1"])
    inputs: list[str] = Field(..., description="every node the unit reads (attention_pool: features, weights)",
                              examples=[["pool1"]])
    engine_value: float = Field(..., description="the unit's value in the forward pass", examples=[1.734])
    result: float = Field(..., description="the value recomputed step by step", examples=[1.734])
    chain: list[ChainStep] = Field(default_factory=list, description="elementwise nodes that follow the unit")
    omitted: Omitted | None = Field(None, description="what a bounded explanation leaves out")
    # window (conv2d, pooling)
    kernel_size: list[int] | None = Field(None, description="conv2d and pooling: the window (kh, kw)",
                                          examples=[[5, 5]])
    stride: list[int] | None = Field(None, description="conv2d and pooling: (sh, sw)", examples=[[1, 1]])
    padding: list[list[int]] | None = Field(None, description="[before, after] per axis", examples=[[[0, 0], [0, 0]]])
    dilation: list[int] | None = Field(None, description="conv2d and pooling: spacing between taps (dh, dw)",
                                       examples=[[1, 1]])
    rows: list[int] | None = Field(None, description="input rows the window reads (negative or ≥ H: padding)",
                                   examples=[[4, 5, 6, 7, 8]])
    cols: list[int] | None = Field(None, description="input columns the window reads", examples=[[4, 5, 6, 7, 8]])
    row_in_padding: list[bool] | None = Field(None, examples=[[False, False, False, False, False]],
                                              description="per row: outside the input (in the padding)")
    col_in_padding: list[bool] | None = Field(None, examples=[[False, False, False, False, False]],
                                              description="per column: outside the input (in the padding)")
    # conv2d
    groups: int | None = Field(None, description="conv2d: the convolution's groups", examples=[1])
    group: int | None = Field(None, description="the group the unit's filter belongs to", examples=[0])
    channels_in_group: int | None = Field(None, description="input channels the filter reads", examples=[8])
    channels: list[ConvChannel] | None = Field(None, description="per input channel (bounded, see omitted)")
    total: float | None = Field(None, examples=[22.0517], description="Σ of all products (before the bias)")
    bias: float | None = Field(None, examples=[-0.0518], description="the unit's bias (0 without one)")
    # pooling
    channel: int | None = Field(None, description="pooling, pad, upsample: the unit's channel", examples=[0])
    values: list[list[float | None]] | None = Field(
        None, description="pooling: the window (max: null in the padding; average: 0 there)",
        examples=[[[0.0, 1.2], [4.85, 4.36]]])
    running: list[list[float | None]] | None = Field(
        None, description="pooling: per window cell, the max (or sum) of the cells read so far, row by row; null "
                          "until a cell inside the input is read", examples=[[[0.0, 1.2], [4.85, 4.85]]])
    argmax: list[int] | None = Field(None, examples=[[1, 0]],
                                     description="max pooling: [row, col] in the window of the first maximum")
    sum: float | None = Field(None, examples=[10.41], description="average pooling: the window's sum")
    divisor: int | None = Field(None, examples=[4], description="average pooling: how many cells the sum is divided by")
    count_include_pad: bool | None = Field(None, examples=[True],
                                           description="average pooling: padding cells count in the divisor")
    # linear
    in_features: int | None = Field(None, description="linear: the number of input features", examples=[400])
    terms: list[LinearTerm] | None = Field(None, description="the largest |products| (bounded, see omitted)")
    # softmax
    over: Literal["class", "position"] | None = Field(None, examples=["class"],
                                                      description="softmax: 'class' (over the classes) or 'position' "
                                                                  "(spatial softmax, over positions)")
    count: int | None = Field(None, description="softmax: how many logits", examples=[10])
    unit: int | None = Field(None, description="softmax: the unit's class or flattened position", examples=[3])
    max: float | None = Field(None, examples=[21.9999],
                              description="softmax: the largest logit (subtracted before exp)")
    exp_sum: float | None = Field(None, examples=[1.0000003], description="softmax: Σ e^(z − max) over all logits")
    exp: float | None = Field(None, examples=[1.0], description="softmax: the unit's e^(z − max)")
    entries: list[SoftmaxEntry] | None = Field(None, description="softmax: the largest logits and the unit's own")
    # global and attention pooling, merges, elementwise ops
    spatial_shape: list[int] | None = Field(None, description="global / attention pooling, pad, upsample: the input "
                                            "map's size",
                                            examples=[[7, 7]])
    weights: list[list[float]] | None = Field(None, examples=[[[0.01, 0.02], [0.9, 0.07]]],
                                              description="attention pooling: the attention map (≤ 32×32)")
    operands: list[Operand] | None = Field(None, description="add / mul: each input's value at the unit's index")
    input_value: float | None = Field(None, examples=[4.0103],
                                      description="an elementwise op: the value coming in; pad / upsample (nearest): "
                                                  "the input number copied")
    running_mean: float | None = Field(None, examples=[0.0088], description="batch norm: the channel's running mean")
    running_var: float | None = Field(None, examples=[1.2777], description="batch norm: the channel's running variance")
    eps: float | None = Field(None, examples=[1e-05], description="batch norm: ε")
    weight: float | None = Field(None, examples=[0.943], description="batch norm: γ (its β is ``bias``)")
    # pad, upsample
    mode: str | None = Field(None, description="pad: constant, reflect or replicate; upsample: nearest or bilinear",
                             examples=["reflect"])
    value: float | None = Field(None, description="constant pad: the constant", examples=[0.0])
    in_border: bool | None = Field(None, description="pad: the unit lies in the border", examples=[True])
    axes: list[UnitAxis] | None = Field(None, description="pad / upsample: per axis, the input position read")
    source: list[int] | None = Field(None, examples=[[2, 2]], description="pad / upsample: the input [row, col] the "
                                     "value is copied from (absent: the constant of a constant pad)")
    scale_factor: list[int] | None = Field(None, description="upsample: the factor per axis", examples=[[2, 2]])
    align_corners: bool | None = Field(None, description="bilinear upsample: corners on corners (else half-pixel "
                                       "centres)", examples=[False])
    samples: list[InterpolationSample] | None = Field(None, description="bilinear upsample: the 4 values mixed")
    neighbourhood: InputNeighbourhood | None = Field(None, description="pad / upsample: the input map around the "
                                                     "source")
    # conv_transpose2d
    output_padding: list[int] | None = Field(None, description="conv_transpose2d: size added after the last output "
                                             "position, per axis (rows and columns no input reaches)",
                                             examples=[[1, 1]])
    weight_index: int | None = Field(None, examples=[3], description="conv_transpose2d: the unit's index into the "
                                     "weight's second axis, out channel mod (out_channels / groups)")
    reached: bool | None = Field(None, examples=[True], description="conv_transpose2d: some input reaches the unit "
                                 "(false: it is the bias alone)")
    channel_terms: list[TransposedChannel] | None = Field(None, description="conv_transpose2d: per input channel of "
                                                          "the group, the terms it adds (bounded, see omitted)")
