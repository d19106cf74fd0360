"""Models: listing, architecture, prediction, upload."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ClassScore(BaseModel):
    """One class and the model's probability for it."""

    index: int = Field(..., description="class index in the model's output", examples=[281])
    label: str = Field(..., description="human-readable class name", examples=["tabby cat"])
    probability: float = Field(..., description="softmax probability in [0, 1]", examples=[0.62])
    logit: float = Field(..., description="the raw score before softmax (the model's output if it ends in softmax)")
