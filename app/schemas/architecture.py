"""A graph spec to analyse."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

MAX_NODES = 2000


class GraphSpec(BaseModel):
    """The engine's graph spec (docs/graph-spec.md): the input's shape and the nodes in order."""

    input_shape: list[int] = Field(..., min_length=1, max_length=4,
                                   description="one input without the batch axis, e.g. [3, 224, 224]",
                                   examples=[[3, 32, 32]])
    nodes: list[dict[str, Any]] = Field(..., min_length=1, max_length=MAX_NODES,
                                        description="nodes: id, op, optional inputs (default: the previous node), "
                                                    "attributes named as in PyTorch")

    model_config = {"json_schema_extra": {"examples": [{
        "input_shape": [3, 32, 32],
        "nodes": [
            {"id": "conv1", "op": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
            {"id": "relu1", "op": "relu"},
            {"id": "pool1", "op": "max_pool2d", "kernel_size": 2, "stride": 2},
            {"id": "conv2", "op": "conv2d", "out_channels": 32, "kernel_size": 3, "stride": 2},
            {"id": "gap", "op": "global_avg_pool"},
            {"id": "fc", "op": "linear", "out_features": 10},
        ],
    }]}}
