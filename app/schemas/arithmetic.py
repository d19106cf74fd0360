"""Output-size arithmetic (engine/arithmetic.py) over HTTP."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

MAX_SIZE = 100_000  # bounds the work of finding suggestions (it scans divisors)
#: a padding length; its bounds are checked by the engine too, with an explanation
Length = Annotated[int, Field(ge=0, le=MAX_SIZE)]


class AxisInput(BaseModel):
    """One spatial axis: its length and the window that slides along it."""

    in_size: int = Field(..., ge=1, le=MAX_SIZE, description="input length along this axis (W, H, ...)",
                         examples=[32])
    kernel_size: int = Field(..., ge=1, le=MAX_SIZE, description="kernel length K along this axis", examples=[5])
    stride: int = Field(1, ge=1, le=MAX_SIZE, description="step S between windows", examples=[2])
    padding: Length | tuple[Length, Length] = Field(
        0, description="zeros added: one int for both sides, or [before, after]", examples=[0, [1, 2]])
    dilation: int = Field(1, examples=[1],
                          ge=1, le=MAX_SIZE, description="spacing D between kernel taps (1 = contiguous)")
    output_padding: int = Field(0, examples=[0], ge=0, le=MAX_SIZE,
                                description="extra length on one side (transposed convolution only)")
    axis: Literal["W", "H", "D", "L"] | None = Field(
        None, description="name used in the formula; default by position: [W], [H, W] or [D, H, W]",
        examples=["W"])


class OutputSizeRequest(BaseModel):
    """A convolution, pooling or transposed convolution, described per axis."""

    kind: Literal["conv", "pool", "transposed"] = Field(
        "conv", description="conv (convolution), pool (max or average pooling), transposed (transposed convolution)")
    ceil_mode: bool = Field(False, description="pooling only: round the division up (PyTorch's ceil_mode)")
    axes: list[AxisInput] = Field(..., min_length=1, max_length=3, description="one entry per spatial axis")

    model_config = {"json_schema_extra": {"examples": [
        {"kind": "conv", "axes": [{"in_size": 32, "kernel_size": 5, "stride": 2, "padding": 0},
                                  {"in_size": 32, "kernel_size": 5, "stride": 2, "padding": 0}]},
    ]}}


class Suggestion(BaseModel):
    """A change that would make the division exact."""

    parameter: Literal["padding", "stride", "in_size"] = Field(..., examples=["padding"], description="what to change")
    value: Any = Field(..., description="its new value ([before, after] for padding)", examples=[[0, 1], 3])
    text: str = Field(..., description="the change in words", examples=["padding 1 more on one side, e.g. [0, 1]"])
    size: int = Field(..., description="the output length it would give", examples=[15])


class AxisOutput(BaseModel):
    """The output length along one axis, how it is computed, and what to do when it is not whole."""

    axis: str = Field(..., description="the axis' name in the formula", examples=["W"])
    size: int = Field(..., description="output length", examples=[14])
    formula: str = Field(..., description="the general formula",
                         examples=["⌊(W − d·(F − 1) − 1 + P_before + P_after) / S⌋ + 1"])
    worked: str = Field(..., description="the formula with these numbers",
                        examples=["⌊(32 − 1·(5 − 1) − 1 + 0 + 0) / 2⌋ + 1 = ⌊27 / 2⌋ + 1 = ⌊13.5⌋ + 1 = 14"])
    exact: bool = Field(..., examples=[False], description="did the stride divide evenly (no input left over)")
    fraction: tuple[int, int] | None = Field(
        ..., description="numerator and stride of the division (null for transposed convolution)", examples=[[27, 2]])
    explanation: str = Field("", description="when not exact: what happens to the remainder, in words",
                             examples=["stride 2 does not divide 32 − 5 + 0 = 27: the output would be 14.5 positions; "
                                       "floor drops the last partial window, so the last 1 column of the input is "
                                       "never read"])
    suggestions: list[Suggestion] = Field(default_factory=list, description="when not exact: changes that fix it")
    notes: list[str] = Field(default_factory=list, examples=[[]],
                             description="other remarks (framework limits, ambiguities)")


class OutputSizeResponse(BaseModel):
    """Output sizes for every axis."""

    output_shape: list[int] = Field(..., description="output length per axis, in the order given", examples=[[14, 14]])
    exact: bool = Field(..., examples=[False], description="true when every axis divides evenly")
    axes: list[AxisOutput] = Field(...,
                                   description="per axis, in the order given: size, formula with the numbers, and any "
                                               "remainder explained")


class VolumeRequest(BaseModel):
    """The lecture's volume view: a W×H×D input through K filters of size F×F×D."""

    width: int = Field(..., description="input width W", ge=1, le=MAX_SIZE, examples=[32])
    height: int = Field(..., description="input height H", ge=1, le=MAX_SIZE, examples=[32])
    depth: int = Field(..., ge=1, le=MAX_SIZE, description="input depth D (channels)", examples=[3])
    kernel: int = Field(..., ge=1, le=MAX_SIZE, description="filter width and height F", examples=[5])
    stride: int = Field(1, description="stride S along width and height", ge=1, le=MAX_SIZE, examples=[1])
    padding: int = Field(0, description="zeros P added on every side along width and height",
                         ge=0, le=MAX_SIZE, examples=[2])
    num_filters: int = Field(1, ge=1, le=MAX_SIZE, description="number of filters K (the output depth)",
                             examples=[10])
    dilation: int = Field(1, description="spacing between filter taps along every axis (1 = contiguous)", examples=[1],
                          ge=1, le=MAX_SIZE)
    bias: bool = Field(True, examples=[True], description="one bias per filter")
    depth_kernel: int | None = Field(None, examples=[None], ge=1, le=MAX_SIZE,
                                     description="slide along depth too (a 3D convolution) with this kernel depth")
    depth_stride: int = Field(1, description="3D convolution only: stride along depth", examples=[1], ge=1, le=MAX_SIZE)
    depth_padding: int = Field(0, description="3D convolution only: zeros added on both sides of depth", examples=[0],
                               ge=0, le=MAX_SIZE)
    channels: int = Field(1, examples=[1],
                          ge=1, le=MAX_SIZE, description="3D convolution only: channels of the input volume")


class VolumeResponse(BaseModel):
    """Output volume, filter shape, parameter count and multiply-accumulates, with the working shown."""

    in_shape: list[int] = Field(..., description="W × H × D (W × H × D × C with depth_kernel)", examples=[[32, 32, 3]])
    out_shape: list[int] = Field(..., description="W_out × H_out × K (W_out × H_out × D_out × K with depth_kernel)",
                                 examples=[[32, 32, 10]])
    filter_shape: list[int] = Field(..., description="one filter: F × F × D (F × F × F_d × C with depth_kernel)",
                                    examples=[[5, 5, 3]])
    num_filters: int = Field(..., description="K", examples=[10])
    weights: int = Field(..., description="weights of all filters: F·F·D·K (F·F·F_d·C·K)", examples=[750])
    biases: int = Field(..., description="K with bias, else 0", examples=[10])
    params: int = Field(..., description="weights + biases", examples=[760])
    macs: int = Field(..., examples=[768000], description="multiply-accumulates for one input")
    axes: dict[str, AxisOutput] = Field(...,
                                        description="per axis ('W', 'H', and 'D' with depth_kernel): size, formula, "
                                                    "remainder")
    explanation: list[str] = Field(..., description="the working, one line per step",
                                   examples=[["parameters: (5·5·3 + 1)·10 = 76·10 = 760",
                                              "multiply-accumulates: 75 per output value × 10240 values = 768000"]])
