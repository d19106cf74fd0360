"""The error body every 4xx (and the 503 of a busy or read-only server, the 507 of a full disk) carries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ErrorResponse(BaseModel):
    """``{"detail": "<what was wrong and what would work>", ...}``, sometimes with fields naming the culprit."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    detail: str = Field(description="what was wrong and what would work, in the caller's terms",
                        examples=["stride 2 does not divide 32 − 5 + 0 = 27: the output would be 14.5"])
    node: str | None = Field(None, examples=["conv1"], description="graph specs: the node at fault")
    reason: str | None = Field(None, description="graph specs: why the node cannot be built",
                               examples=["kernel 11 with dilation 1 spans 11 pixels along the height, but the padded "
                                         "input is only 8 wide (8 + padding 0 + 0): use a smaller kernel_size or "
                                         "dilation, or more padding"])
    kind: str | None = Field(None, examples=["shape"], description="engine errors: 'shape', 'weights' or 'engine'")
    errors: list[dict] | None = Field(None, description="schema violations: one entry per field (loc, msg, type)",
                                      examples=[[{"type": "greater_than_equal", "loc": ["body", "axes", 0, "in_size"],
                                                  "msg": "Input should be greater than or equal to 1"}]])
    problem: str | None = Field(None, examples=["its weights file (weights.npz) is truncated or damaged"],
                                description="409: why the stored model cannot be loaded")
    storage: str | None = Field(None, examples=["full"],
                                description="503 and 507 from the disk: 'full' or 'read_only'")
