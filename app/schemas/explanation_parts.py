"""The pieces unit explanations are made of (GET /api/runs/{run_id}/nodes/{node_id}/units/{index}): a channel's
window and kernel, a product, a softmax entry, a step of the elementwise chain, one axis of a pad, an upsample or a
transposed convolution. Each family's response model (app/schemas/explanations.py) lists the ones it uses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Omitted(BaseModel):
    """What a bounded explanation leaves out, aggregated."""

    count: int = Field(0, description="how many channels, products, classes or weights are not listed",
                       examples=[1264])
    sum: float | None = Field(None, description="their sum (channel sums or products), so the listed ones plus this "
                                                "give the total (absent where nothing is summed)", examples=[0.4817])
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


class TransposedAxis(BaseModel):
    """conv_transpose2d: along one spatial axis, the (input position, kernel offset) pairs that reach the unit."""

    axis: Literal["row", "column"] = Field(..., description="the spatial axis", examples=["row"])
    output: int = Field(..., description="the unit's position along this axis", examples=[5])
    taps: list[list[int]] = Field(..., examples=[[[2, 2], [3, 0]]],
                                  description="the [input position, kernel offset] pairs that reach the unit along "
                                              "this axis (empty: none does)")
    rule: str = Field(..., description="the rule, in words",
                      examples=["output row 5 = input row i · 2 − 1 + kernel row a: (i, a) ∈ {(2, 2), (3, 0)}"])


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
    title: str = Field(..., description="what its op is called, for display", examples=["Batch normalisation"])
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


class PadAxis(BaseModel):
    """pad: along one spatial axis, where the unit sits and which input position its value comes from."""

    axis: Literal["row", "column"] = Field(..., description="the spatial axis", examples=["row"])
    output: int = Field(..., description="the unit's position along this axis", examples=[0])
    position: int = Field(..., examples=[-2], description="the input position the unit sits on (output − padding "
                                                          "before; negative or ≥ the size: in the border)")
    in_border: bool = Field(..., description="the position lies in the border", examples=[True])
    source: int | None = Field(None, examples=[2], description="the input position the value comes from (absent: "
                               "the constant of a constant pad)")
    rule: str = Field(..., description="the rule, in words", examples=["row −2 → 2 (mirror at 0)"])


class UpsampleAxis(BaseModel):
    """upsample: along one spatial axis, the input position (nearest) or the two positions mixed (bilinear)."""

    axis: Literal["row", "column"] = Field(..., description="the spatial axis", examples=["row"])
    output: int = Field(..., description="the unit's position along this axis", examples=[5])
    scale: int = Field(..., description="the factor along this axis", examples=[2])
    rule: str = Field(..., description="the rule, in words", examples=["row 5 → ⌊5 / 2⌋ = 2"])
    source: int | None = Field(None, examples=[2], description="nearest: the input position copied, ⌊output / scale⌋")
    block: list[int] | None = Field(None, examples=[[4, 5]],
                                    description="nearest: the first and last output positions that copy this source")
    coordinate: float | None = Field(None, description="bilinear: the source coordinate (after the clamp)",
                                     examples=[1.25])
    neighbours: list[int] | None = Field(None, description="bilinear: the two input positions mixed",
                                         examples=[[1, 2]])
    weights: list[float] | None = Field(None, description="bilinear: their weights (adding up to 1)",
                                        examples=[[0.75, 0.25]])


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


class GateSide(BaseModel):
    """One side of a recurrent gate's weighted sum: the input side ``W_ih[row] · x_t + b_ih[row]`` or the recurrent
    side ``W_hh[row] · h_{t−1} + b_hh[row]``."""

    terms: list[LinearTerm] = Field(..., description="the largest |products| value × weight (bounded, see omitted); "
                                                     "index: the feature of x_t, or the unit of h_{t−1}")
    omitted: Omitted = Field(..., description="the products not listed, added up")
    total: float = Field(..., description="Σ of all products", examples=[0.8123])
    bias: float = Field(..., description="b_ih[row] or b_hh[row] (0 without biases)", examples=[-0.0412])
    sum: float = Field(..., description="total + bias", examples=[0.7711])


class RecurrentGate(BaseModel):
    """One gate of a recurrent cell at one step, for one unit (an RNN's one 'gate' is h itself)."""

    gate: Literal["i", "f", "g", "o", "r", "z", "n", "h"] = Field(
        ..., description="LSTM: i, f, g, o; GRU: r, z, n; RNN: h", examples=["f"])
    title: str = Field(..., description="the gate in words", examples=["forget gate"])
    row: int = Field(..., description="its row in the stacked weights: gate position · H + unit", examples=[129])
    activation: Literal["sigmoid", "tanh", "relu"] = Field(..., description="the function applied to the "
                                                                            "pre-activation", examples=["sigmoid"])
    input_side: GateSide = Field(..., description="W_ih[row] · x_t + b_ih[row]")
    recurrent_side: GateSide = Field(..., description="W_hh[row] · h_{t−1} + b_hh[row]")
    reset: float | None = Field(None, description="GRU's candidate n only: the reset gate r that scales the "
                                                  "recurrent side (bias included)", examples=[0.42])
    pre_activation: float = Field(..., description="input side + recurrent side (GRU's n: input side + r · "
                                                   "recurrent side)", examples=[1.2345])
    result: float = Field(..., description="the activation of the pre-activation, recomputed (float64)",
                          examples=[0.7746])
    engine_value: float = Field(..., description="the gate's value the engine recorded at this step",
                                examples=[0.7746])


class CellStateUpdate(BaseModel):
    """LSTM: the new cell state ``c_t = f · c_{t−1} + i · g`` of the unit."""

    previous: float = Field(..., description="c_{t−1} (the initial state c0, or zeros, at the first step read)",
                            examples=[0.53])
    previous_from: str = Field(..., description="where c_{t−1} comes from", examples=["c at step 4"])
    forget_term: float = Field(..., description="f · c_{t−1}: what is kept", examples=[0.41])
    input_term: float = Field(..., description="i · g: what is written", examples=[-0.12])
    result: float = Field(..., description="c_t, recomputed (float64)", examples=[0.29])
    engine_value: float = Field(..., description="c_t as the engine recorded it", examples=[0.29])
    tanh: float = Field(..., description="tanh(c_t), which the output gate scales into h_t", examples=[0.2821])


class GRUUpdate(BaseModel):
    """GRU: the new hidden state ``h_t = (1 − z) · n + z · h_{t−1}`` of the unit."""

    z: float = Field(..., description="the update gate", examples=[0.8])
    n: float = Field(..., description="the candidate state", examples=[-0.3])
    h_prev: float = Field(..., description="h_{t−1} of this unit", examples=[0.5])
    new_term: float = Field(..., description="(1 − z) · n: the candidate's share", examples=[-0.06])
    kept_term: float = Field(..., description="z · h_{t−1}: the previous state's share", examples=[0.4])

