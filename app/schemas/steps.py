"""Per-step states of a run (GET /api/runs/{run_id}/nodes/{node_id}/steps): what a recurrent node computed at each
time step, and the prediction so far; or an attention node's scores and weights over the steps. One answer per
kind of node, told apart by ``kind``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.schemas.models import ClassScore


class StepArray(BaseModel):
    """One recorded quantity of one layer and direction, at every step: values[t][u] is unit ``first_unit + u`` at
    step t."""

    name: str = Field(..., description="'<quantity>_l<layer>', '_reverse' for the backward direction, as the engine "
                                       "records it", examples=["f_l0"])
    quantity: Literal["h", "c", "i", "f", "g", "o", "r", "z", "n"] = Field(
        ..., description="h (hidden state after the step), c (LSTM cell state), or a gate's activation: LSTM i, f, "
                         "g, o; GRU r, z, n", examples=["f"])
    title: str = Field(..., description="the quantity in words", examples=["forget gate"])
    layer: int = Field(..., description="the layer k", examples=[0])
    direction: Literal["forward", "reverse"] = Field(..., description="which direction of the layer",
                                                     examples=["forward"])
    values: list[list[float]] = Field(..., description="[step][unit] for the units listed (first_unit onwards), "
                                                       "steps in input order (the reverse direction too)",
                                      examples=[[[0.51, 0.62], [0.49, 0.71]]])


class StepPrediction(BaseModel):
    """The prediction having read steps 0..t."""

    step: int = Field(..., description="t", examples=[13])
    classes: list[ClassScore] = Field(..., description="the top classes, most probable first")


class StepPredictions(BaseModel):
    """The classifier head applied to the states after each step, in place of the final ones: how confidence grows
    as the steps (a digit's rows) are read."""

    available: bool = Field(..., description="the head can be applied to one step's states", examples=[True])
    reason: str | None = Field(None, description="why not, when it cannot", examples=[None])
    state: Literal["h", "c"] | None = Field(None, description="the state the head reads: h (output 'hidden') or c "
                                                              "(output 'cell')", examples=["h"])
    head: list[str] = Field(default_factory=list, description="the nodes the states went through, in order",
                            examples=[["flatten", "fc"]])
    how: str | None = Field(None, description="how the predictions were computed, in words",
                            examples=["h_n replaced by h after step t (every layer), then flatten -> fc -> softmax: "
                                      "what the model outputs having read steps 0..t; the last is the run's own "
                                      "prediction"])
    steps: list[StepPrediction] = Field(default_factory=list, description="per step, in order")


class StepsBase(BaseModel):
    """What every per-step answer holds."""

    run_id: str = Field(..., description="the run", examples=["3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d"])
    model_id: str = Field(..., description="the run's model", examples=["digits_lstm"])
    node: str = Field(..., description="the node", examples=["lstm"])
    op: str = Field(..., description="its op", examples=["lstm"])
    sequence_node: str = Field(..., description="the node (or 'input') whose output it reads as its sequence (T, F)",
                               examples=["rows"])
    steps: int = Field(..., description="T, the time steps", examples=[28])
    sample: int = Field(0, description="the sample of the run shown (runs hold one input)", examples=[0])


class RecurrentSteps(StepsBase):
    """An rnn, lstm or gru node run again on the run's sequence with its cache kept: per layer and direction the
    hidden state after each step, the LSTM's cell state, and each gate's activation; and the prediction so far.

    At most ``MAX_STEP_VALUES`` numbers: the units first_unit .. first_unit + unit_count − 1 of every array (ask for
    the others with ``first_unit``)."""

    kind: Literal["recurrent"] = Field(..., description="a recurrent node", examples=["recurrent"])
    cell: Literal["rnn", "lstm", "gru"] = Field(..., description="the cell", examples=["lstm"])
    hidden_size: int = Field(..., description="H, the units per direction", examples=[128])
    num_layers: int = Field(..., description="layers", examples=[1])
    directions: int = Field(..., description="2 if bidirectional, else 1", examples=[1])
    output: Literal["sequence", "hidden", "cell"] = Field(..., description="what the node passes on",
                                                          examples=["hidden"])
    first_unit: int = Field(..., description="the first unit listed", examples=[0])
    unit_count: int = Field(..., description="how many units are listed from first_unit", examples=[128])
    truncated: bool = Field(..., description="some units are not listed (ask again with first_unit)",
                            examples=[False])
    arrays: list[StepArray] = Field(..., description="every recorded quantity, per layer and direction")
    predictions: StepPredictions = Field(..., description="the prediction after each step (or why there is none)")


class AttentionSteps(StepsBase):
    """A sequence_attention node: each step's score s_t and weight a_t = softmax(s)_t (summing to 1); the node's
    output is Σ_t a_t x_t."""

    kind: Literal["attention"] = Field(..., description="attention over the steps", examples=["attention"])
    score: Literal["additive", "dot"] = Field(..., description="how the scores are computed", examples=["additive"])
    scores: list[float] = Field(..., description="s_t for every step", examples=[[-1.2, 0.4, 2.1]])
    weights: list[float] = Field(..., description="a_t for every step", examples=[[0.03, 0.15, 0.82]])
    weights_sum: float = Field(..., description="Σ_t a_t (1 to rounding)", examples=[1.0])


#: the per-step answer, by kind of node
NodeSteps = Annotated[RecurrentSteps | AttentionSteps, Field(discriminator="kind")]
