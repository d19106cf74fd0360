"""Adversarial examples: an input changed by at most ε per pixel so that the network gets it wrong, and the
accuracy of a digit model against ε."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.attention import AttentionResponse
from app.schemas.models import ClassScore

PNG_EXAMPLE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABwAAAAc..."


class PixelSpaceInfo(BaseModel):
    """Where the attack works: on the pixels p in [0, 1] that the model's normalisation reads,
    x = (p − mean) / std per channel (after the picture is made grey or inverted, when the model asks for that)."""

    mean: list[float] = Field(..., description="per channel", examples=[[0.1314]])
    std: list[float] = Field(..., description="per channel", examples=[[0.3089]])
    grayscale: bool = Field(..., description="the picture is made grey before the normalisation", examples=[True])
    invert: bool = Field(..., description="the picture's pixels are inverted (1 − p) before the normalisation: the "
                                          "perturbation's picture is then drawn negated, as the picture changes",
                         examples=[False])


class AdversarialSide(BaseModel):
    """The original or the adversarial input: the tensor, the picture, the prediction and the attention map."""

    npy_url: str = Field(..., description="GET: the model input (normalised, as the model reads it) as a float32 "
                                          ".npy, shape [1, C, H, W]; POST it to any endpoint that takes an input",
                         examples=["/api/adversarial/tensors/6f1ed002ab5595859014ebf0951522d9.npy"])
    picture_png: str = Field(..., description="the picture the model saw (its pixels, as a PNG data URL)",
                             examples=[PNG_EXAMPLE])
    predictions: list[ClassScore] = Field(..., description="the 5 most probable classes (softmax of the logits)")
    loss: float = Field(..., description="the cross-entropy of the attacked class (`attacked_class`) at this input",
                        examples=[0.0003])
    attention: AttentionResponse | None = Field(
        None, description="the attention map (`attention_method`, default layer) for this input's top class, as "
                          "POST /api/models/{id}/attention answers it; null when no method applies")


class PerturbationInfo(BaseModel):
    """δ = adversarial pixels − original pixels, in pixel units (pixels in [0, 1]); |δ| ≤ ε everywhere."""

    npy_url: str = Field(..., description="GET: δ as a float64 .npy, shape [1, C, H, W], in pixel units; its "
                                          "largest |value| is at most epsilon",
                         examples=["/api/adversarial/tensors/0c7d2e1f0a9b8c7d3f2a9c0d6b1e4f5a.npy"])
    png: str = Field(..., description="δ amplified: δ × amplification, in [−1, 1], on a diverging colour scale "
                                      "(blue −scale, white 0, red +scale); the mean over channels for a colour "
                                      "model", examples=[PNG_EXAMPLE])
    rgb_png: str | None = Field(None, description="colour models only: each channel 0.5 + 0.5 × δ × amplification "
                                                  "(grey: no change)", examples=[None])
    scale: float = Field(..., description="the |δ| drawn at full colour: epsilon", examples=[0.2])
    amplification: float = Field(..., description="1 / scale: the factor the PNGs multiply δ by", examples=[5.0])
    linf: float = Field(..., description="max |δ|, the L∞ norm (at most epsilon)", examples=[0.2])
    l2: float = Field(..., description="the L2 norm of δ over every pixel", examples=[4.1])
    changed_fraction: float = Field(..., description="the share of pixels δ changes", examples=[0.42])


class AdversarialResponse(BaseModel):
    """An adversarial example: the original, the perturbation and the adversarial input, both predictions and
    the attention maps before and after."""

    model_id: str = Field(..., description="the model attacked", examples=["digits_classic"])
    method: Literal["fgsm", "pgd"] = Field(..., description="FGSM (one step) or PGD (projected steps)",
                                           examples=["fgsm"])
    epsilon: float = Field(..., description="the largest change of a pixel in [0, 1] (L∞)", examples=[0.2])
    steps: int = Field(..., description="gradient steps taken (1 for FGSM)", examples=[1])
    alpha: float = Field(..., description="the step size in pixel units (epsilon for FGSM)", examples=[0.2])
    random_start: bool = Field(..., description="PGD started from a random point of the ε-ball", examples=[False])
    seed: int | None = Field(None, description="the random start's seed (null without a random start)",
                             examples=[None])
    targeted: bool = Field(..., description="the attack pushed towards `target` (lowering its loss) rather than "
                                            "away from the original prediction (raising its loss)", examples=[False])
    target: int | None = Field(None, description="the target class of a targeted attack", examples=[None])
    target_label: str | None = Field(None, description="the target's label", examples=[None])
    attacked_class: int = Field(..., description="the class whose loss the attack changed: the original prediction "
                                                 "(untargeted) or the target", examples=[7])
    attacked_label: str = Field(..., description="the attacked class's label", examples=["7"])
    fooled: bool = Field(..., description="the top class changed", examples=[True])
    reached_target: bool | None = Field(None, description="targeted: the top class is now the target",
                                        examples=[None])
    pixel_space: PixelSpaceInfo = Field(..., description="the pixels the attack changes, and how the model "
                                                         "normalises them")
    original: AdversarialSide = Field(..., description="the input as sent")
    adversarial: AdversarialSide = Field(..., description="the input the attack made")
    perturbation: PerturbationInfo = Field(..., description="the change, in pixel units")
    attention_method: str | None = Field(None, description="the attention method of both maps", examples=["gradcam"])
    attention_reason: str | None = Field(None, description="why there are no attention maps, when there are none",
                                         examples=[None])
    elapsed_ms: float = Field(..., description="time taken by the attack", examples=[12.5])


class RobustnessResponse(BaseModel):
    """Accuracy against ε on the shipped held-out digits, every digit attacked (untargeted) at every ε."""

    model_id: str = Field(..., description="the digit model attacked", examples=["digits_classic"])
    method: Literal["fgsm", "pgd"] = Field(..., description="the attack at every point", examples=["fgsm"])
    steps: int = Field(..., description="PGD's steps (1 for FGSM)", examples=[1])
    alpha_rule: str = Field(..., description="the step size at each ε", examples=["alpha = epsilon"])
    n: int = Field(..., description="held-out digits attacked: the first n of the test split", examples=[1000])
    correct: int = Field(..., description="of those, classified right with no attack", examples=[986])
    epsilons: list[float] = Field(..., description="the ε of each point, pixels in [0, 1]",
                                  examples=[[0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]])
    accuracy: list[float] = Field(..., description="the share of the n digits classified right at each ε (at 0: the "
                                                   "clean accuracy)",
                                  examples=[[0.986, 0.886, 0.612, 0.33, 0.188, 0.129, 0.09]])
    flip_rate: list[float] = Field(..., description="the share of the correctly classified digits that the attack "
                                                    "makes wrong at each ε",
                                   examples=[[0.0, 0.101, 0.379, 0.665, 0.809, 0.869, 0.909]])
    elapsed_ms: float = Field(..., description="time the computation took", examples=[1800.0])
