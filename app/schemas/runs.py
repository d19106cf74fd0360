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
    time: Literal["rows"] | None = Field(
        None, examples=[None], description="'rows': the activation is a sequence (T, F), drawn as one tile of T "
                                           "rows and F columns: pixel row t is time step t (in input order), column "
                                           "f feature f. null: not a sequence")


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
    time_axis: int | None = Field(None, examples=[None],
                                  description="the axis of `shape` that indexes time steps (0 for a sequence (T, F) "
                                              "a recurrent node makes or reads); null without one")
    per_step_shape: list[int] | None = Field(None, examples=[None],
                                             description="with a time axis: one step's shape (`shape` without it)")
    steps_url: str | None = Field(None, examples=[None],
                                  description="rnn, lstm, gru and sequence_attention nodes: every step's states, "
                                              "gates (or attention scores and weights) and the prediction so far")


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

