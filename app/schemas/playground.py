"""The sliding-window playground: a small convolution or pooling, step by step."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.schemas.arithmetic import AxisOutput

Grid = list[Any]  # (H, W) or (C, H, W) nested lists of numbers; the engine checks shape and values
PerAxis = int | list[int]
Padding = int | list[int] | list[list[int]] | str


class PlaygroundRequest(BaseModel):
    """A grid (up to 32×32) and the window that slides over it. `kernel` and `bias` are for `conv`;
    `kernel_size`, `ceil_mode` and `count_include_pad` for the pools."""

    input: Grid = Field(..., max_length=32, description="the input grid: (H, W), or (C, H, W) for conv (C ≤ 16)",
                        examples=[[[1, 2, 0, 1], [0, 1, 3, 1], [2, 1, 0, 0], [1, 0, 1, 2]]])
    kernel: Grid | None = Field(None, max_length=32, description="conv: the weights, (kh, kw) or (C, kh, kw)",
                                examples=[[[1, 0], [0, -1]]])
    bias: float = Field(0.0, examples=[0.0], description="conv: added to every window's sum")
    kernel_size: PerAxis | None = Field(None, description="pools: the window, an int or [kh, kw]", examples=[2])
    stride: PerAxis | None = Field(None, description="an int or [sh, sw]; default 1 for conv, kernel_size for pools",
                                   examples=[1])
    padding: Padding = Field(0, description="an int, [ph, pw], [[top, bottom], [left, right]], 'same' or 'valid'",
                             examples=[0])
    dilation: PerAxis = Field(1, examples=[1], description="spacing between kernel taps")
    ceil_mode: bool = Field(False, examples=[False],
                            description="pools: round the output size up (PyTorch's ceil_mode)")
    count_include_pad: bool = Field(True, examples=[True], description="avg_pool: count padding in the divisor")


class PlaygroundStep(BaseModel):
    """One position of the sliding window (coordinates in the padded input; padded row r = input row r − top)."""

    model_config = {"json_schema_extra": {"examples": [
        # the second step of a 2×2 convolution with stride 2 over a 4×4 input, bias 0
        {"out": [0, 1], "origin": [0, 2], "rows": [0, 1], "cols": [2, 3], "values": [[0.0, 1.0], [3.0, 1.0]],
         "products": [[0.0, 0.0], [0.0, -1.0]], "sum": -1.0, "bias": 0.0, "divisor": None, "argmax": None,
         "result": -1.0},
    ]}}

    out: tuple[int, int] = Field(..., description="output position (row, column)")
    origin: tuple[int, int] = Field(..., description="padded-input position of the window's first tap")
    rows: list[int] = Field(..., description="padded-input rows the taps read")
    cols: list[int] = Field(..., description="padded-input columns the taps read")
    values: list[Any] = Field(..., description="input values under the window (null: a tap reading nothing)")
    products: list[Any] | None = Field(None, description="conv: values × kernel, element-wise")
    sum: float | None = Field(None, description="conv: sum of the products; avg_pool: sum of the values")
    bias: float | None = Field(None, description="conv: the bias added")
    divisor: int | None = Field(None, description="avg_pool: what the sum is divided by")
    argmax: tuple[int, int] | None = Field(None, description="max_pool: padded-input position of the maximum")
    result: float = Field(..., description="the output value at `out`")


class PlaygroundResponse(BaseModel):
    """The output and every step, for the front-end to animate."""

    op: str = Field(..., description="'conv', 'max_pool' or 'avg_pool'", examples=["conv"])
    input: list[Any] = Field(...,
                             description="the input grid as numbers: (H, W), or (C, H, W) as sent for conv",
                             examples=[[[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 1.0, 0.0]]])
    padded_input: list[Any] = Field(..., examples=[[[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 1.0, 0.0]]],
                                    description="the input with its padding (null where max pooling pads with −∞)")
    padding: list[tuple[int, int]] = Field(..., examples=[[[0, 0], [0, 0]]],
                                           description="[before, after] per axis (H, W)")
    kernel_size: tuple[int, int] = Field(...,
                                         description="the window (kh, kw): the kernel's size for conv",
                                         examples=[[2, 2]])
    kernel: list[Any] | None = Field(...,
                                     description="conv: the weights, (kh, kw) or (C, kh, kw) as sent; null for the "
                                                 "pools",
                                     examples=[[[1.0, 0.0], [0.0, -1.0]]])
    stride: tuple[int, int] = Field(..., description="(sh, sw)", examples=[[1, 1]])
    dilation: tuple[int, int] = Field(..., description="(dh, dw): spacing between kernel taps", examples=[[1, 1]])
    output: list[Any] = Field(...,
                              description="the output grid (H_out, W_out); conv sums over the channels",
                              examples=[[[0.0, -1.0], [-1.0, 1.0]]])
    output_size: list[AxisOutput] = Field(..., description="the output-size arithmetic for H and W")
    steps: list[PlaygroundStep] = Field(..., description="every window position, row by row (H_out × W_out steps)")
