"""POST /api/playground/{op}: a convolution or pooling on a small grid, worked out one window at a time."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path

from app.errors import ApiError
from app.schemas.arithmetic import AxisOutput
from app.schemas.playground import PlaygroundRequest, PlaygroundResponse
from engine.playground import Playground, conv_steps, pool_steps

router = APIRouter(prefix="/playground", tags=["playground"])

OpPath = Annotated[Literal["conv", "max_pool", "avg_pool"], Path(description="conv, max_pool or avg_pool")]


def _response(result: Playground) -> PlaygroundResponse:
    data = result.to_dict()
    data["output_size"] = [AxisOutput(axis=name, **size) for name, size in zip("HW", data["output_size"])]
    return PlaygroundResponse(**data)


@router.post("/{op}", response_model=PlaygroundResponse)
def create_playground(op: OpPath, request: PlaygroundRequest) -> PlaygroundResponse:
    """The output and every sliding-window step: position, values, products, sum, bias (or max / divisor), result."""
    if op == "conv":
        if request.kernel is None:
            raise ApiError(422, "conv needs a 'kernel': a grid of weights, (kh, kw) or (C, kh, kw)")
        stride = 1 if request.stride is None else request.stride
        result = conv_steps(request.input, request.kernel, request.bias, stride, request.padding, request.dilation)
    else:
        if request.kernel_size is None:
            raise ApiError(422, f"{op} needs a 'kernel_size': an int or [kh, kw]")
        result = pool_steps(request.input, request.kernel_size, request.stride, request.padding, request.dilation,
                            kind="max" if op == "max_pool" else "avg", ceil_mode=request.ceil_mode,
                            count_include_pad=request.count_include_pad)
    return _response(result)
