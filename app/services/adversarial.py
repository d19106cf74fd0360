"""Adversarial examples for the API: one input attacked with FGSM or PGD (``engine.learned.adversarial``), and a
digit model's accuracy against ε on the shipped held-out digits.

``create_adversarial`` checks everything before the input is read (the model takes images and outputs class
scores, the options fit the method, the target is a class, the work fits the budget), reads the input, maps it to
the pixels in [0, 1] the model's normalisation reads, attacks it holding a compute slot, stores the three tensors
(``TensorFiles``: the links in the answer), draws the pictures, and asks the attention service for the map of each
input's top class (Grad-CAM where it applies, else the vanilla gradient).

``robustness_task`` is the analysis job (``app.services.analysis_jobs``) computing accuracy against ε.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core.config import Settings
from app.errors import ApiError
from app.schemas.adversarial import (
    AdversarialResponse,
    AdversarialSide,
    PerturbationInfo,
    PixelSpaceInfo,
    RobustnessResponse,
)
from app.schemas.attention import AttentionResponse
from app.schemas.models import ClassScore
from app.services.analysis_jobs import AnalysisTask, JobContext
from app.services.attention import AttentionRequest, method_arguments, response_of, run_method
from app.services.compute import forward_gmacs
from app.services.errors import UnknownClassError
from app.services.finite import check_finite
from app.services.inputs import ModelInput, PreparedInput, prepare_input
from app.services.models import StoredModel
from app.services.overlay import colour, picture_of, png_data_url
from app.services.predictions import label_of, softmax
from app.services.tensor_files import TensorFiles
from engine.attention import check_applicable
from engine.attention.common import score_node
from engine.datasets.mnist import load_mnist
from engine.errors import EngineError
from engine.learned.adversarial import (
    METHODS,
    Attack,
    PixelSpace,
    check_pixels,
    default_alpha,
    fgsm,
    per_sample_losses,
    pgd,
    predict,
    robustness_curve,
)

MAX_STEPS = 100
DEFAULT_STEPS = 10
TOP_K = 5
#: the attention maps before and after: Grad-CAM where the model has a layer for it, else the vanilla gradient
ATTENTION_METHODS = ("gradcam", "saliency")
#: forward passes' worth of work besides the attack: the two predictions and two attention maps (forward + backward)
EXTRA_PASSES = 2 + 2 * 3
LIMIT_NAME = "the server's CNN_VIS_MAX_ATTENTION_GMACS"
TENSORS_DIR = "adversarial"
TENSORS_URL = "/api/adversarial/tensors"

ROBUSTNESS_KIND = "adversarial-robustness"
ROBUSTNESS_EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
ROBUSTNESS_MAX_STEPS = 20
DIGIT_TASK = "digit classification"
DIGIT_SHAPE = (1, 28, 28)

Compute = Callable[..., AbstractContextManager[None]]


@dataclass(frozen=True)
class AdversarialRequest:
    """The attack: ``method`` ("fgsm" or "pgd"), ``epsilon`` in (0, 1]; PGD's ``steps`` (default 10), ``alpha``
    (default 2.5·ε/steps), ``random_start`` and its ``seed`` (default 0); a ``target`` class makes it targeted."""

    method: str = "fgsm"
    epsilon: float = 0.1
    steps: int | None = None
    alpha: float | None = None
    target: int | None = None
    random_start: bool = False
    seed: int | None = None


def tensor_files(settings: Settings) -> TensorFiles:
    """The store of the answers' ``.npy`` links, in the data directory (every worker of the machine reads it)."""
    return TensorFiles(settings.data_dir / TENSORS_DIR,
                       how_to_remake="send POST /api/models/{model_id}/adversarial again")


# --- checks, before the input is read -------------------------------------------------------------------------


def pixel_space(model: StoredModel) -> PixelSpace:
    """The model's pixels-to-input map; 422 for a model that does not take pictures or says no mean and std for
    its channels."""
    shape = model.graph.input_shape
    if len(shape) != 3:
        raise ApiError(422, f"adversarial examples here perturb the pixels of an image (C, H, W); model '{model.id}' "
                            f"takes {list(shape)}: choose an image model such as digits_classic")
    pre = model.bundle.preprocessing
    if len(pre.mean) not in (1, shape[0]) or len(pre.std) != len(pre.mean):
        raise ApiError(422, f"model '{model.id}' has {shape[0]} input channels but its preprocessing gives "
                            f"{len(pre.mean)} means and {len(pre.std)} stds, so its pixels are unknown: set one "
                            "mean and std per channel when uploading it")
    try:
        return PixelSpace(tuple(pre.mean) * (shape[0] // len(pre.mean)), tuple(pre.std) * (shape[0] // len(pre.std)))
    except ValueError as exc:
        raise ApiError(422, f"model '{model.id}': {exc}, so its pixels are unknown") from None


def class_count(model: StoredModel) -> int:
    """K, for a model whose score node gives class scores (K,); 422 for any other output."""
    shape = model.graph.by_id[score_node(model.graph)].output_shape
    if len(shape) != 1:
        raise ApiError(422, f"model '{model.id}' outputs {list(shape)}, not a vector of class scores: the attack "
                            "raises one class's cross-entropy, so it needs a classifier")
    return int(shape[0])


def resolve_steps(request: AdversarialRequest) -> tuple[int, float]:
    """``(steps, alpha)`` of the attack; 422 for an option the method does not take."""
    if not 0 < request.epsilon <= 1:
        raise ApiError(422, f"epsilon is the largest change of a pixel in [0, 1]: use a value in (0, 1], such as 0.1; "
                            f"got {request.epsilon}")
    if request.method == "fgsm":
        given = [name for name in ("steps", "alpha", "seed") if getattr(request, name) is not None]
        given += ["random_start"] if request.random_start else []
        if given:
            raise ApiError(422, f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} PGD's: FGSM takes one step "
                                "of epsilon; use method=pgd to take several")
        return 1, request.epsilon
    if request.seed is not None and not request.random_start:
        raise ApiError(422, "seed sets PGD's random start: add random_start=true, or leave seed out")
    steps = DEFAULT_STEPS if request.steps is None else request.steps
    if not 1 <= steps <= MAX_STEPS:
        raise ApiError(422, f"steps must be from 1 to {MAX_STEPS}, got {steps}")
    alpha = default_alpha(request.epsilon, steps) if request.alpha is None else request.alpha
    if not 0 < alpha <= 1:
        raise ApiError(422, f"alpha is PGD's step in pixel units: use a value in (0, 1], got {alpha}")
    return steps, alpha


def check_work(model: StoredModel, steps: int, settings: Settings) -> float:
    """The work in GMACs (a forward and a backward pass count 3 forward passes per step); 422 past the budget."""
    one = forward_gmacs(model.graph)
    gmacs = one * (3 * steps + EXTRA_PASSES)
    if gmacs > settings.max_attention_gmacs:
        fits = int((settings.max_attention_gmacs / one - EXTRA_PASSES) // 3)
        hint = f"use at most {fits} steps" if fits >= 1 else "this model is too large for it"
        raise ApiError(422, f"{steps} steps on model '{model.id}' are about {gmacs:.1f} billion multiply-accumulates, "
                            f"over the {settings.max_attention_gmacs:g} allowed ({LIMIT_NAME}): {hint}")
    return gmacs


def attention_method(model: StoredModel) -> tuple[str | None, str | None]:
    """The first of ``ATTENTION_METHODS`` that applies to the model, or None and why none does."""
    reason = None
    for name in ATTENTION_METHODS:
        layer, options = method_arguments(model, AttentionRequest(name))
        try:
            check_applicable(model.graph, name, layer, options)
        except EngineError as exc:
            reason = str(exc)
            continue
        return name, None
    return None, reason


# --- the attack -----------------------------------------------------------------------------------------------


def top_classes(model: StoredModel, logits: np.ndarray) -> list[ClassScore]:
    """The ``TOP_K`` most probable classes of one input's logits ``(K,)``."""
    probabilities = softmax(logits)
    order = np.argsort(-probabilities, kind="stable")[:TOP_K]
    return [ClassScore(index=int(i), label=label_of(model, int(i)), probability=float(probabilities[i]),
                       logit=float(logits[i])) for i in order]


def perturbation_info(delta: np.ndarray, epsilon: float, invert: bool, url: str) -> PerturbationInfo:
    """``δ: (C, H, W)`` in pixel units, its norms and its pictures amplified by ``1/ε`` (negated for an inverting
    model, so that it shows how the picture changed)."""
    amplification = 1.0 / epsilon
    shown = (-delta if invert else delta) * amplification
    png = png_data_url(colour(shown.mean(axis=0), signed=True))
    rgb_png = None
    if delta.shape[0] == 3:
        rgb = np.clip(0.5 + 0.5 * shown.transpose(1, 2, 0), 0, 1)
        rgb_png = png_data_url((rgb * 255 + 0.5).astype(np.uint8))
    return PerturbationInfo(npy_url=url, png=png, rgb_png=rgb_png, scale=epsilon, amplification=amplification,
                            linf=float(np.abs(delta).max()), l2=float(np.sqrt((delta ** 2).sum())),
                            changed_fraction=float(np.count_nonzero(delta) / delta.size))


def attention_of(model: StoredModel, x: np.ndarray, method: str, settings: Settings, compute: Compute
                 ) -> AttentionResponse:
    """``method``'s map of ``x: (1, C, H, W)`` for its top class, as the attention route answers it."""
    request = AttentionRequest(method)
    gmacs = 3 * forward_gmacs(model.graph)
    result, elapsed_ms = run_method(model, x, request, int(settings.max_attention_gmacs * 1e9),
                                    lambda: compute(gmacs=gmacs))
    response = response_of(model, PreparedInput(x, None), request, result, elapsed_ms)
    assert isinstance(response, AttentionResponse)  # pixel_space() admitted images only
    return response


def run_attack(model: StoredModel, space: PixelSpace, pixels: np.ndarray, label: int, request: AdversarialRequest,
               steps: int, alpha: float) -> Attack:
    """The attack on one input's pixels ``(1, C, H, W)``: away from ``label``, or towards the target."""
    targeted = request.target is not None
    labels = np.array([request.target if targeted else label])
    graph, params = model.graph, model.bundle.params
    if request.method == "fgsm":
        return fgsm(graph, params, space, pixels, labels, request.epsilon, targeted=targeted)
    return pgd(graph, params, space, pixels, labels, request.epsilon, steps, alpha, request.random_start,
               request.seed or 0, targeted=targeted)


def create_adversarial(model: StoredModel, model_input: ModelInput, request: AdversarialRequest, settings: Settings,
                       compute: Compute) -> AdversarialResponse:
    """The adversarial example of ``model_input`` (see the module's docstring for the order of the checks)."""
    space = pixel_space(model)
    classes = class_count(model)
    if request.method not in METHODS:
        raise ApiError(422, f"unknown method '{request.method}': choose fgsm or pgd")
    steps, alpha = resolve_steps(request)
    if request.target is not None and not 0 <= request.target < classes:
        raise UnknownClassError(model.id, request.target, classes)
    gmacs = check_work(model, steps, settings)
    prepared = prepare_input(model_input, model, settings.max_upload_bytes, settings.max_image_pixels,
                             settings.max_tensor_elements)
    try:
        pixels = check_pixels(space.to_pixels(prepared.x))
    except ValueError as exc:
        raise ApiError(422, f"{exc} (mean {list(space.mean)}, std {list(space.std)})") from None
    x = space.to_input(pixels)
    with compute(gmacs=gmacs):
        logits = predict(model.graph, model.bundle.params, x)
        check_finite(model.id, logits.astype(np.float64), "in the class scores")
        label = int(logits[0].argmax())
        if request.target is not None and request.target == label:
            raise ApiError(422, f"the model already predicts class {label} ('{label_of(model, label)}') for this "
                                "input: choose another target, or leave target out to attack its prediction")
        start = time.perf_counter()
        attack = run_attack(model, space, pixels, label, request, steps, alpha)
        elapsed_ms = (time.perf_counter() - start) * 1000
    check_finite(model.id, attack.logits.astype(np.float64), "in the adversarial input's class scores")
    attacked = request.target if request.target is not None else label
    files = tensor_files(settings)
    urls = [f"{TENSORS_URL}/{files.save(array)}.npy" for array in (x, attack.x, attack.perturbation)]
    method, reason = attention_method(model)
    maps = [attention_of(model, tensor, method, settings, compute) if method else None for tensor in (x, attack.x)]
    before = per_sample_losses(logits, np.array([attacked]))[0]
    after_label = int(attack.logits[0].argmax())
    pre = model.bundle.preprocessing
    sides = [AdversarialSide(npy_url=url, picture_png=png_data_url(picture_of(tensor[0], pre)),
                             predictions=top_classes(model, scores[0]), loss=float(loss), attention=attention)
             for url, tensor, scores, loss, attention in zip(urls, (x, attack.x), (logits, attack.logits),
                                                             (before, attack.losses[0]), maps)]
    return AdversarialResponse(
        model_id=model.id, method=request.method, epsilon=request.epsilon, steps=steps, alpha=alpha,  # type: ignore[arg-type]
        random_start=request.random_start, seed=(request.seed or 0) if request.random_start else None,
        targeted=request.target is not None, target=request.target,
        target_label=None if request.target is None else label_of(model, request.target),
        attacked_class=attacked, attacked_label=label_of(model, attacked), fooled=after_label != label,
        reached_target=None if request.target is None else after_label == request.target,
        pixel_space=PixelSpaceInfo(mean=list(space.mean), std=list(space.std), grayscale=pre.grayscale,
                                   invert=pre.invert),
        original=sides[0], adversarial=sides[1],
        perturbation=perturbation_info(attack.perturbation[0], request.epsilon, pre.invert, urls[2]),
        attention_method=method, attention_reason=reason, elapsed_ms=elapsed_ms)


# --- accuracy against ε on the held-out digits ----------------------------------------------------------------


def check_digit_model(model: StoredModel) -> None:
    """422 unless the model reads the shipped digits: a digit classifier taking (1, 28, 28) with 10 classes."""
    shape = tuple(model.graph.input_shape)
    if model.bundle.task != DIGIT_TASK or shape != DIGIT_SHAPE or class_count(model) != 10:
        raise ApiError(422, f"the robustness curve attacks the shipped held-out MNIST digits, so it needs a digit "
                            f"classifier taking [1, 28, 28] with 10 classes; model '{model.id}' is "
                            f"'{model.bundle.task}' taking {list(shape)}: choose a digit model such as "
                            "digits_classic, or one trained in the lab")


def resolve_robustness_steps(method: str, steps: int | None) -> int:
    if method not in METHODS:
        raise ApiError(422, f"unknown method '{method}': choose fgsm or pgd")
    if method == "fgsm":
        if steps is not None:
            raise ApiError(422, "steps is PGD's: FGSM takes one step of epsilon; use method=pgd to take several")
        return 1
    steps = DEFAULT_STEPS if steps is None else steps
    if not 1 <= steps <= ROBUSTNESS_MAX_STEPS:
        raise ApiError(422, f"steps must be from 1 to {ROBUSTNESS_MAX_STEPS} for the curve, got {steps}")
    return steps


def robustness_task(model: StoredModel, method: str, n: int, steps: int) -> AnalysisTask:
    """The analysis job computing ``method``'s accuracy against ε on the first ``n`` held-out digits."""
    space = pixel_space(model)

    def run(ctx: JobContext) -> dict[str, Any]:
        pixels, labels = load_mnist("test", normalize=False, limit=n)
        start = time.perf_counter()
        curve = robustness_curve(model.graph, model.bundle.params, space, pixels, labels, ROBUSTNESS_EPSILONS,
                                 method=method, steps=steps, progress=ctx.progress)  # type: ignore[arg-type]
        rule = "alpha = epsilon" if method == "fgsm" else f"alpha = 2.5 · epsilon / {steps}, from δ = 0"
        return RobustnessResponse(
            model_id=model.id, method=method, steps=steps, alpha_rule=rule, n=curve.n,  # type: ignore[arg-type]
            correct=curve.correct, epsilons=curve.epsilons.tolist(), accuracy=curve.accuracy.tolist(),
            flip_rate=curve.flip_rate.tolist(), elapsed_ms=(time.perf_counter() - start) * 1000).model_dump()

    return AnalysisTask(kind=ROBUSTNESS_KIND, model_id=model.id, version=model.version,
                        key={"method": method, "n": n, "steps": steps, "epsilons": list(ROBUSTNESS_EPSILONS)},
                        run=run)
