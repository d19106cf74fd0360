"""Two runs of one model compared at one node: the difference of their activations and its summary."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.runs import TileLayout

RUN_EXAMPLE = "3f2a9c0d6b1e4f5a8c7d2e1f0a9b8c7d"
OTHER_EXAMPLE = "9b1e0c7d3a2f4e5d6c7b8a9f0e1d2c3b"
BASE_EXAMPLE = f"/api/runs/{RUN_EXAMPLE}/compare/{OTHER_EXAMPLE}/nodes/conv2"


class ChannelChange(BaseModel):
    """One of the channels (tiles) that changed most between the two inputs."""

    channel: int = Field(..., description="the channel: the tile's index in the PNGs (a vector is one tile, 0)",
                         examples=[5])
    mean_abs: float = Field(..., description="mean |a − b| over the channel's numbers", examples=[0.83])
    max_abs: float = Field(..., description="largest |a − b| in the channel: its tile's m", examples=[3.9])
    largest_at: list[int] = Field(..., description="where in the tile that largest |a − b| is, [row, column] (the "
                                                   "first in row order on a tie; a vector's row is 0)",
                                  examples=[[4, 7]])


class NodeDifference(BaseModel):
    """One node's activation for two inputs of the same model, A (``run_id``) and B (``other_run_id``): the difference
    a − b as a signed tiled PNG and a .npy, and how much and where it differs."""

    id: str = Field(..., description="node id ('input' for the model's input)", examples=["conv2"])
    op: str = Field(..., description="the node's op ('input' for the input)", examples=["conv2d"])
    shape: list[int] = Field(..., description="activation shape without the batch axis (both runs')",
                             examples=[[16, 10, 10]])
    model_id: str = Field(..., description="the model both runs belong to", examples=["digits_classic"])
    run_id: str = Field(..., description="run A: a in a − b", examples=[RUN_EXAMPLE])
    other_run_id: str = Field(..., description="run B: b in a − b", examples=[OTHER_EXAMPLE])
    max_abs: float = Field(..., description="largest |a − b| over every number of the node", examples=[3.9])
    mean_abs: float = Field(..., description="mean |a − b| over every number of the node", examples=[0.41])
    norm_a: float = Field(..., description="‖a‖: Euclidean norm of A's activation (all its numbers)", examples=[61.2])
    norm_b: float = Field(..., description="‖b‖: Euclidean norm of B's activation", examples=[58.7])
    norm_difference: float = Field(..., description="‖a − b‖", examples=[27.5])
    cosine_similarity: float = Field(
        ..., description="a · b / (‖a‖ ‖b‖) of the flattened activations, in [−1, 1]: 1 the same direction, 0 "
                         "orthogonal; 1 when both are all zeros (they are equal), 0 when only one is", examples=[0.89])
    relative_change: float | None = Field(
        ..., description="‖a − b‖ / ‖a‖: the change as a share of A's activation; null when a is all zeros",
        examples=[0.45])
    channel_mean_abs: list[float] = Field(..., description="per channel (tile), mean |a − b|",
                                          examples=[[0.12, 0.83, 0.0]])
    channel_max_abs: list[float] = Field(..., description="per channel (tile), max |a − b|",
                                         examples=[[1.1, 3.9, 0.0]])
    top_channels: list[ChannelChange] = Field(..., description="the channels that changed most, largest mean "
                                                               "|a − b| first (ties: the lower channel first)")
    png_url: str = Field(..., description="a − b tiled into one greyscale PNG: in each tile grey 0, 128 and 255 stand "
                                          "for −m, 0 and +m (layout.ranges); X-Tile-Layout header as for feature maps",
                         examples=[f"{BASE_EXAMPLE}.png"])
    npy_url: str = Field(..., description="a − b as float32 .npy, shape [1, *shape]", examples=[f"{BASE_EXAMPLE}.npy"])
    run_png_url: str = Field(..., description="A's feature maps at this node (the explorer's grey PNG)",
                             examples=[f"/api/runs/{RUN_EXAMPLE}/nodes/conv2.png"])
    other_png_url: str = Field(..., description="B's feature maps at this node",
                               examples=[f"/api/runs/{OTHER_EXAMPLE}/nodes/conv2.png"])
    layout: TileLayout = Field(..., description="the difference PNG's grid; ranges: per tile the symmetric [−m, +m], "
                                                "m = the tile's largest |a − b| (scale=channel) or the layer's "
                                                "(scale=layer); a tile with no difference at all has [−1, 1], so its "
                                                "grey 128 is 0 and a signed colour scale draws it white")
    time_axis: int | None = Field(None, description="0 when the node is a sequence (T, F) drawn as one tile, time "
                                                    "steps as rows; null otherwise", examples=[None])
