"""A unit's receptive field in the input: its box, centre, and effective receptive field."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.models import ReceptiveFieldInfo


class ReceptiveFieldRequest(BaseModel):
    """Which unit: a node and an index into its activation."""

    node: str = Field(..., description="node id", examples=["conv2"])
    index: list[int] = Field(..., min_length=1, max_length=4,
                             description="the unit: spatial position ([y, x] in 2D) or a full index ([c, y, x]); "
                                         "with a spatial position the effective map is for the sum over channels",
                             examples=[[3, 7, 7]])
    run_id: str | None = Field(None, examples=["8c3e559bdc60c9a30ecae2c61460056f"],
                               description="compute the effective receptive field on this run's input "
                                                 "(default: an all-zero input, the mean image after normalisation)")
    effective: bool = Field(True, examples=[True],
                            description="also compute the effective receptive field (one backward pass)")


class AxisBox(BaseModel):
    """The unit's box along one axis, inclusive; start/end may lie in the padding."""

    axis: str = Field(...,
                      description="the spatial axis' name, as in the architecture's spatial_axes ('H', 'W'; 'L' in "
                                  "1D, 'D' in 3D)",
                      examples=["H"])
    start: int = Field(..., description="first input position read (negative: in the padding)", examples=[-1])
    end: int = Field(..., description="last input position read", examples=[6])
    clipped_start: int = Field(..., description="start clipped to the input", examples=[0])
    clipped_end: int = Field(..., description="end clipped to the input", examples=[6])
    centre: float = Field(..., description="i·S − P + (r − 1)/2", examples=[2.5])
    padding_before: int = Field(..., examples=[1], description="positions of the box before the input")
    padding_after: int = Field(..., examples=[0], description="positions of the box past the input's end")


class EffectiveField(BaseModel):
    """The gradient of the unit with respect to the input: which pixels actually move it, and how much."""

    input: str = Field(..., examples=["zeros"],
                       description="'run <id>' or 'zeros': the input the gradient was taken at")
    shape: list[int] = Field(..., description="the map's spatial shape (the input's)", examples=[[28, 28]])
    max_abs: float = Field(..., examples=[0.0731], description="largest |gradient| (summed over input channels)")
    nonzero_box: list[tuple[int, int]] | None = Field(
        ..., description="per axis, the [first, last] positions with non-zero gradient (null if all zero)",
        examples=[[[0, 6], [4, 11]]])
    png: str = Field(..., examples=["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."],
                     description="the |gradient| map as a greyscale PNG data URL (white = max_abs)")
    values: list[list[float]] | None = Field(
        None, description="the |gradient| map itself, for maps of at most 4096 positions (2D inputs)",
        examples=[[[0.0591, 0.1895, 0.2396], [0.0663, 0.0032, 0.0051], [0.0211, 0.0012, 0.0414]]])


class ReceptiveFieldResponse(BaseModel):
    """Where one unit looks in the input."""

    model_id: str = Field(..., description="the model's id", examples=["digits_classic"])
    node: str = Field(..., description="the node the unit belongs to", examples=["conv2"])
    index: list[int] = Field(..., examples=[[5, 5]], description="the unit's spatial position")
    receptive_field: ReceptiveFieldInfo = Field(...,
                                                description="the node's receptive field: size r, stride S, padding P "
                                                            "per axis")
    box: list[AxisBox] = Field(..., description="per spatial axis, the unit's box in the input")
    note: str = Field("", examples=[""],
                      description="e.g. that the box extends into the padding, or that a global gate (squeeze-"
                                  "excite) also modulates the unit, and where it joins")
    layers: dict[str, list[list[int]]] = Field(
        default_factory=dict,
        description="where the unit looks on every earlier layer: per node id ('input' and the node itself "
                    "included), per spatial axis, the [first, last] positions it depends on (clipped to the layer); "
                    "for a unit modulated by a global gate, the layers of its main path only",
        examples=[{"input": [[0, 7], [2, 9]], "conv1": [[0, 5], [2, 7]], "pool1": [[0, 2], [1, 3]]}])
    effective: EffectiveField | None = Field(None,
                                             description="the effective receptive field (null when effective=false)")
