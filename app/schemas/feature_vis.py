"""Feature visualisation by optimisation (``engine.learned.feature_vis``): the request and the job's result."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

MAX_STEPS = 512
MAX_SEED = 2**31 - 1
MIN_SIZE = 8


class FeatureVisRequest(BaseModel):
    """What to maximise: exactly one of `channel` (its mean over the node's positions), `unit` (one value) or
    `class_index` (a class's logit, the score before the softmax)."""

    node: str | None = Field(None, max_length=200, description="the node whose channel or unit to maximise; "
                             "omit it for `class_index` (the logits node is used)", examples=["relu2"])
    channel: int | None = Field(None, ge=0, description="a channel of `node` (axis 0 of its output): its mean over "
                                "every position is maximised", examples=[3])
    unit: list[int] | None = Field(None, min_length=1, max_length=4, description="one unit of `node`, its index "
                                   "without the batch axis, e.g. [channel, row, column]", examples=[[3, 4, 4]])
    class_index: int | None = Field(None, ge=0, description="a class whose logit to maximise", examples=[None])
    steps: int = Field(128, ge=1, le=MAX_STEPS, description=f"gradient-ascent steps, 1 to {MAX_STEPS}",
                       examples=[128])
    size: int | None = Field(None, ge=MIN_SIZE, description="the picture's side in pixels (a square), at most the "
                             "model's own input size; null: the model's own size. Only networks that do not fix "
                             "their input size (those ending in global pooling) take another size", examples=[None])
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seeds the starting picture and the random transforms",
                      examples=[0])
    learning_rate: float | None = Field(None, gt=0, le=2, description="Adam's learning rate; null: 0.05 × 128 / "
                                        "size (Lucid's 0.05 at 128 pixels, 0.229 for 28-pixel digits)",
                                        examples=[None])

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [
        {"node": "relu2", "channel": 3, "steps": 128, "seed": 0},
        {"class_index": 7, "steps": 128},
        {"node": "block10.add", "channel": 3, "steps": 128, "size": 128},
    ]}}

    @model_validator(mode="after")
    def _one_objective(self) -> FeatureVisRequest:
        given = [name for name in ("channel", "unit", "class_index") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of channel, unit or class_index"
                             + (f" (got {', '.join(given)})" if given else ""))
        if given[0] != "class_index" and self.node is None:
            raise ValueError(f"{given[0]} needs a node: name the node whose {given[0]} to maximise")
        return self


class FeatureVisObjective(BaseModel):
    """What was maximised."""

    kind: Literal["channel", "unit", "class"] = Field(..., description="channel: a channel's mean over its positions; "
                                                      "unit: one unit; class: a class logit", examples=["channel"])
    node: str = Field(..., description="the node read (for a class: the logits node)", examples=["relu2"])
    channel: int | None = Field(None, description="the channel (kind channel)", examples=[3])
    unit: list[int] | None = Field(None, description="the unit's index (kind unit)", examples=[None])
    class_index: int | None = Field(None, description="the class (kind class)", examples=[None])
    label: str | None = Field(None, description="the class's name (kind class)", examples=[None])
    description: str = Field(..., description="the same in words",
                             examples=["the mean activation of channel 3 of 'relu2'"])


class FeatureVisReference(BaseModel):
    """The objective on real inputs, to compare the picture with."""

    source: Literal["digits", "photos"] = Field(..., description="digits: the held-out shipped digits (for models "
                                                "that read them); photos: the sample photos in static/samples",
                                                examples=["digits"])
    description: str = Field(..., description="the inputs, in words",
                             examples=["the 2,000 held-out shipped digits (engine.datasets.mnist, test split)"])
    count: int = Field(..., description="inputs measured", examples=[2000])
    mean: float = Field(..., description="the objective's mean over them", examples=[0.391])
    max: float = Field(..., description="its largest value among them (the best real input)", examples=[1.314])


class FeatureVisualisation(BaseModel):
    """A finished feature visualisation: the picture, the model's input for it, and how far the objective rose."""

    model_id: str = Field(..., description="the model visualised", examples=["digits_classic"])
    objective: FeatureVisObjective = Field(..., description="what was maximised")
    steps: int = Field(..., description="gradient-ascent steps taken", examples=[128])
    seed: int = Field(..., description="the seed of the starting picture and the transforms", examples=[0])
    learning_rate: float = Field(..., description="Adam's learning rate used", examples=[0.2286])
    input_shape: list[int] = Field(..., description="the picture as the model reads it: (C, H, W)",
                                   examples=[[1, 28, 28]])
    resized: bool = Field(..., description="the picture is smaller than the model's own input (the network was "
                          "rebuilt for this size, the weights unchanged)", examples=[False])
    start: float = Field(..., description="the objective on the starting picture (a faint grey noise)",
                         examples=[0.146])
    end: float = Field(..., description="the objective on the final picture (`input_npy_url`, without transforms)",
                       examples=[3.782])
    history: list[float] = Field(..., description="the objective each step saw, on its randomly shifted, zoomed and "
                                 "rotated picture (one per step)", examples=[[0.146, 0.52, 1.9, 3.6]])
    reference: FeatureVisReference = Field(..., description="the objective on real inputs, to compare with")
    ratio: float | None = Field(..., description="end / reference mean; null when that mean is zero or negative "
                                "(a ratio would mean nothing)", examples=[9.7])
    ratio_to_best: float | None = Field(..., description="end / the best real input's value; null when that is zero "
                                        "or negative", examples=[2.9])
    image_url: str = Field(..., description="GET: the picture as a PNG (grey or RGB, the model's input size, "
                           "pixels in [0, 1] as 0-255)", examples=["/api/jobs/5d41402abc4b2a76/files/image.png"])
    input_npy_url: str = Field(..., description="GET: the model's input for the picture, (1, C, H, W) float32, "
                               "normalised as the model expects (.npy)",
                               examples=["/api/jobs/5d41402abc4b2a76/files/input.npy"])
    seconds: float = Field(..., description="the optimisation's wall time", examples=[0.41])
