"""Backpropagation made visible: the loss of one input against a label, the gradient of every node's output, the
chain rule at one unit with the real numbers, a filter's weight gradient and one SGD step."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.models import ClassScore
from app.schemas.runs import TileLayout

SCALE_TEXT = ("signed, centred on zero: grey 0 stands for −m, 128 for 0 and 255 for +m, with m the largest |gradient| "
              "of each channel (scale=channel) or of the whole node (scale=layer); a blue–white–red scale shows it")


class GradientStats(BaseModel):
    """What a gradient map's legend needs."""

    min: float = Field(..., description="most negative dL/da over the node", examples=[-0.042])
    max: float = Field(..., description="most positive dL/da over the node", examples=[0.057])
    max_abs: float = Field(..., description="largest |dL/da|: the colour scale runs from −max_abs to +max_abs with "
                                            "scale=layer", examples=[0.057])
    mean_abs: float = Field(..., description="mean |dL/da|: how much gradient reached the node", examples=[0.0031])
    norm: float = Field(..., description="L2 norm of the node's gradient", examples=[0.41])


class GradientNode(GradientStats):
    """One node's gradient dL/d(output), as the backward pass reaches it."""

    id: str = Field(..., description="node id ('input': the gradient with respect to the input image)",
                    examples=["conv2"])
    op: str = Field(..., description="the node's op ('input' for the input)", examples=["conv2d"])
    shape: list[int] = Field(..., description="the gradient's shape (the node's output shape), no batch axis",
                             examples=[[16, 10, 10]])
    png_url: str = Field(..., description=f"every channel of the gradient tiled into one greyscale PNG, {SCALE_TEXT}; "
                                          "X-Tile-Layout header as for feature maps; add ?scale=channel|layer",
                         examples=["/api/backprop/3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d/labels/3/nodes/conv2.png"])
    npy_url: str = Field(..., description="the gradient as float32 .npy, shape [1, *shape]",
                         examples=["/api/backprop/3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d/labels/3/nodes/conv2.npy"])
    json_url: str = Field(..., description="shape, statistics and the PNG's layout with each tile's [−m, +m]",
                          examples=["/api/backprop/3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d/labels/3/nodes/conv2.json"])
    activation_png_url: str = Field(..., description="the node's activation (the forward pass) as the explorer "
                                                     "draws it", examples=["/api/runs/3f2a.../nodes/conv2.png"])
    filters: int | None = Field(None, description="a convolution's output channels or a linear layer's outputs: "
                                                  "the filters whose weight gradient and SGD step can be shown; "
                                                  "null for other ops", examples=[16])
    time_axis: int | None = Field(None, description="0 when the node is a sequence (T, F) drawn as one map, time "
                                                    "steps as rows; null otherwise", examples=[None])


class BackpropResponse(BaseModel):
    """The loss of one input against a label and the gradient of every node's output, from the loss back to the
    input."""

    model_id: str = Field(..., description="the model", examples=["digits_classic"])
    run_id: str = Field(..., description="the forward pass (a run: its activations are at /api/runs/{run_id})",
                        examples=["3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d"])
    label: int = Field(..., description="the class the loss is measured against", examples=[3])
    label_name: str = Field(..., description="the label's class name", examples=["3"])
    label_is_prediction: bool = Field(..., description="no label was given: the model's own prediction is used "
                                                       "(its loss is then small, and so are the gradients)",
                                      examples=[False])
    loss: float = Field(..., description="cross-entropy −ln p(label) of the logits (a final softmax is part of the "
                                         "loss, as in training)", examples=[2.31])
    logits_node: str = Field(..., description="the node whose output the loss reads", examples=["fc"])
    prediction: ClassScore = Field(..., description="the class the model predicts")
    label_score: ClassScore = Field(..., description="the label's own probability and logit")
    classes: list[ClassScore] = Field(..., description="the top classes")
    input_shape: list[int] = Field(..., description="the preprocessed input's shape, batch axis included",
                                   examples=[[1, 1, 28, 28]])
    nodes: list[GradientNode] = Field(..., description="every node the loss depends on, in the order the backward "
                                                       "pass reaches them: the logits first, the input last")
    elapsed_ms: float = Field(..., description="forward and backward pass", examples=[4.2])
    cached: bool = Field(..., description="the gradients were computed before (this worker keeps recent ones)",
                         examples=[False])


class GradientMap(GradientStats):
    """One node's gradient: shape, statistics and the layout of its PNG."""

    id: str = Field(..., description="node id ('input' for the input)", examples=["conv2"])
    op: str = Field(..., description="the node's op", examples=["conv2d"])
    shape: list[int] = Field(..., description="the gradient's shape, no batch axis", examples=[[16, 10, 10]])
    label: int = Field(..., description="the class the loss was measured against", examples=[3])
    png_url: str = Field(..., description="the signed tiled PNG at this scale",
                         examples=["/api/backprop/3f2a.../labels/3/nodes/conv2.png?scale=layer"])
    npy_url: str = Field(..., description="the gradient as float32 .npy",
                         examples=["/api/backprop/3f2a.../labels/3/nodes/conv2.npy"])
    layout: TileLayout = Field(..., description=f"the PNG's grid; ranges: per tile [−m, +m] ({SCALE_TEXT})")


# --- the chain rule ----------------------------------------------------------------------------------------------
class OmittedProducts(BaseModel):
    """The products a bounded list leaves out, added up."""

    count: int = Field(..., description="products not listed", examples=[152])
    sum: float = Field(..., description="their sum (part of the total)", examples=[0.0042])
    note: str = Field(..., description="what was left out, in words ('' when every product is listed)",
                      examples=["the 48 largest of 200 products are listed; the other 152 are added up as one number"])


class ReaderTerm(BaseModel):
    """One unit y that reads u, and what it hands back: dL/dy · ∂y/∂u."""

    node: str = Field(..., description="the node y belongs to ('loss' for the loss reading the logits)",
                      examples=["conv2"])
    op: str = Field(..., description="that node's op", examples=["conv2d"])
    index: list[int] = Field(..., description="y's index (empty for the loss)", examples=[[5, 3, 4]])
    upstream: float = Field(..., description="dL/dy, the gradient y received (1 for the loss itself)",
                            examples=[-0.012])
    local: float = Field(..., description="∂y/∂u, the local derivative", examples=[0.31])
    product: float = Field(..., description="upstream × local: this y's share of dL/du", examples=[-0.00372])


class ReaderSource(BaseModel):
    """One node that reads u: how many of its units do, their share of dL/du and the local derivative's rule."""

    node: str = Field(..., description="a node reading u ('loss' for the loss reading the logits)",
                      examples=["conv2"])
    op: str = Field(..., description="its op", examples=["conv2d"])
    count: int = Field(..., description="its units that read u", examples=[400])
    sum: float = Field(..., description="Σ of their products", examples=[0.0183])
    rule: str = Field(..., description="what ∂y/∂u is for this op", examples=["the weight w[k, c, i, j] that "
                                                                             "multiplied x in y's window"])


class Incoming(BaseModel):
    """How dL/du is made: dL/du = Σ over every unit y that reads u of dL/dy · ∂y/∂u."""

    sources: list[ReaderSource] = Field(..., description="each node that reads u, with its share")
    terms: list[ReaderTerm] = Field(..., description="the largest |products| first (at most 48)")
    omitted: OmittedProducts = Field(..., description="the products not listed")
    total: float = Field(..., description="the sum over every term (listed or not)", examples=[0.0183])
    engine_value: float = Field(..., description="dL/du from the engine's backward pass: agrees with total to "
                                                 "float rounding", examples=[0.0183])


class FeederTerm(BaseModel):
    """One input unit x that feeds u, and its share of dL/dx: dL/du · ∂u/∂x."""

    input: str = Field(..., description="the node x belongs to ('input' for the image)", examples=["pool1"])
    index: list[int] = Field(..., description="x's index, no batch axis", examples=[[2, 4, 5]])
    value: float = Field(..., description="x's value in the forward pass", examples=[1.37])
    local: float = Field(..., description="∂u/∂x", examples=[-0.22])
    product: float = Field(..., description="dL/du × ∂u/∂x", examples=[0.0026])
    input_gradient: float | None = Field(..., description="dL/dx in all (this product plus the other units that read "
                                                          "x); null if the loss does not depend on x",
                                         examples=[0.0119])


class Outgoing(BaseModel):
    """Where dL/du goes: each input unit x feeding u receives dL/du · ∂u/∂x."""

    upstream: float = Field(..., description="dL/du", examples=[-0.012])
    rule: str = Field(..., description="what ∂u/∂x is for this node's op",
                      examples=["the weight w[k, c, i, j] that multiplied x in y's window"])
    inputs: list[str] = Field(..., description="the node's inputs", examples=[["pool1"]])
    terms: list[FeederTerm] = Field(..., description="the largest |products| first (at most 48)")
    omitted: OmittedProducts = Field(..., description="the products not listed")


class WeightSumTerm(BaseModel):
    """One output position's share of one weight's gradient: dL/dy[k, o] × the input the weight met there."""

    output: list[int] = Field(..., description="output position o", examples=[[3, 4]])
    input: list[int] = Field(..., description="the input unit (channel, position) the weight multiplied there",
                             examples=[[2, 5, 6]])
    upstream: float = Field(..., description="dL/dy[k, o]", examples=[-0.012])
    value: float = Field(..., description="the input the weight multiplied at o", examples=[1.37])
    product: float = Field(..., description="upstream × value", examples=[-0.0164])


class WeightSum(BaseModel):
    """The sum behind one weight's gradient (the largest |gradient| of the filter)."""

    weight: list[int] = Field(..., description="[k, c, i, j]: the weight", examples=[[5, 2, 1, 3]])
    terms: list[WeightSumTerm] = Field(..., description="the largest |products| first (at most 16)")
    count: int = Field(..., description="output positions whose window does not put this weight in the padding",
                       examples=[100])
    omitted_sum: float = Field(..., description="the sum of the products not listed", examples=[0.031])
    total: float = Field(..., description="Σ over every position: the weight's gradient", examples=[0.077])


class FilterGradient(BaseModel):
    """One filter's weight gradient dL/dw[k]: the correlation of its input with its output's gradient, summed over
    every output position (a linear layer: dL/dy[k] · x)."""

    node: str = Field(..., description="a convolution or linear node", examples=["conv2"])
    op: str = Field(..., description="its op", examples=["conv2d"])
    filter: int = Field(..., description="output channel k", examples=[5])
    shape: list[int] = Field(..., description="the filter's shape: (C / groups, kh, kw), or (F,) for a linear layer",
                             examples=[[8, 5, 5]])
    weight: list[float] = Field(..., description="the filter's values, in C order (shape `shape`)",
                                examples=[[0.12, -0.4, 0.33]])
    gradient: list[float] = Field(..., description="dL/dw[k] by the formula, in C order",
                                  examples=[[0.02, -0.011, 0.0]])
    engine_gradient: list[float] = Field(..., description="dL/dw[k] from the engine's backward pass: agrees to float "
                                                          "rounding", examples=[[0.02, -0.011, 0.0]])
    bias: float | None = Field(..., description="b[k] (null: the layer has no bias)", examples=[0.13])
    bias_gradient: float | None = Field(..., description="dL/db[k] = Σ_o dL/dy[k, o]", examples=[-0.021])
    engine_bias_gradient: float | None = Field(..., description="dL/db[k] from the engine's backward pass",
                                               examples=[-0.021])
    upstream_positions: int = Field(..., description="output positions the sum runs over", examples=[100])
    example: WeightSum | None = Field(..., description="for a convolution, the sum behind its largest weight "
                                                       "gradient")


class ChainRuleResponse(BaseModel):
    """The chain rule at one unit u of one node, with the real numbers, and (for a convolution or linear layer)
    the weight gradient of one filter."""

    model_id: str = Field(..., description="the model", examples=["digits_classic"])
    run_id: str = Field(..., description="the forward pass", examples=["3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d"])
    label: int = Field(..., description="the class the loss is measured against", examples=[3])
    loss: float = Field(..., description="the loss", examples=[2.31])
    node: str = Field(..., description="the node u belongs to ('input' for the image)", examples=["conv2"])
    op: str = Field(..., description="its op", examples=["conv2d"])
    index: list[int] = Field(..., description="u's index, no batch axis", examples=[[5, 3, 4]])
    value: float = Field(..., description="u's value in the forward pass", examples=[0.84])
    gradient: float = Field(..., description="dL/du from the engine's backward pass", examples=[-0.012])
    incoming: Incoming = Field(..., description="how dL/du is summed from the units that read u")
    outgoing: Outgoing | None = Field(..., description="null for the input image (nothing feeds it)")
    filter: FilterGradient | None = Field(..., description="the weight gradient of filter `filter` (default: u's "
                                                           "channel) when the node is a convolution or linear layer")


# --- one SGD step ---------------------------------------------------------------------------------------------------
class StepOutcome(BaseModel):
    """What one step with learning rate lr did to this input's loss."""

    lr: float = Field(..., description="the learning rate", examples=[0.01])
    loss_after: float | None = Field(..., description="the loss with the stepped weights (the forward pass run "
                                                      "again); null when it overflowed (diverged)", examples=[1.87])
    predicted_loss: float = Field(..., description="the first-order prediction loss − lr · |g|² (g: the gradient "
                                                   "of what moved): right for small rates only", examples=[1.79])
    loss_change: float | None = Field(..., description="loss_after − loss_before (negative: it fell)",
                                      examples=[-0.44])
    label_probability: float | None = Field(..., description="p(label) after the step", examples=[0.16])
    prediction: int | None = Field(..., description="the class predicted after the step", examples=[3])
    prediction_label: str | None = Field(..., description="its class name", examples=["3"])
    diverged: bool = Field(..., description="the loss overflowed to infinity or NaN", examples=[False])


class SgdStepResponse(BaseModel):
    """One SGD step w ← w − lr · dL/dw on a filter (or on every parameter), its numbers and its effect."""

    model_id: str = Field(..., description="the model", examples=["digits_classic"])
    run_id: str = Field(..., description="the forward pass", examples=["3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d"])
    label: int = Field(..., description="the class the loss is measured against", examples=[3])
    node: str = Field(..., description="the convolution or linear node", examples=["conv1"])
    op: str = Field(..., description="its op", examples=["conv2d"])
    filter: int = Field(..., description="output channel k: the filter shown", examples=[0])
    scope: Literal["filter", "all"] = Field(..., description="what moved: this filter (weights and bias) only, or "
                                                             "every trainable parameter by its own gradient",
                                            examples=["filter"])
    moved: int = Field(..., description="how many numbers the step changed", examples=[26])
    shape: list[int] = Field(..., description="the filter's shape", examples=[[1, 5, 5]])
    lr: float = Field(..., description="the learning rate of the step shown", examples=[0.01])
    weight_before: list[float] = Field(..., description="the filter before the step, C order",
                                       examples=[[0.12, -0.4, 0.33]])
    gradient: list[float] = Field(..., description="dL/dw of the filter, C order", examples=[[0.5, -1.0, 0.0]])
    weight_after: list[float] = Field(..., description="w − lr · dL/dw, C order", examples=[[0.115, -0.39, 0.33]])
    bias_before: float | None = Field(..., description="b[k] before (null: no bias)", examples=[0.05])
    bias_gradient: float | None = Field(..., description="dL/db[k]", examples=[-0.92])
    bias_after: float | None = Field(..., description="b[k] − lr · dL/db[k]", examples=[0.059])
    loss_before: float = Field(..., description="the loss before the step", examples=[2.31])
    outcome: StepOutcome = Field(..., description="the step with rate lr")
    sweep: list[StepOutcome] = Field(..., description="the same step with each rate of `lrs`, from the same start "
                                                      "(a too-large rate raises the loss, or overflows)")
