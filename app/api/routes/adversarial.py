"""Fooling the network: POST /api/models/{model_id}/adversarial (an adversarial example of one input, FGSM or PGD),
GET /api/adversarial/tensors/{name}.npy (the tensors its answer links to), and GET
/api/models/{model_id}/adversarial/robustness (a digit model's accuracy against ε; an analysis job the first time).
See docs/learned.md.

The attack perturbs the pixels in [0, 1] that the model's normalisation reads, by at most ``epsilon`` each (L∞).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import (
    AnalysisJobsDep,
    BackgroundComputeDep,
    ComputeDep,
    IdentityDep,
    ModelDep,
    ModelInputDep,
    SettingsDep,
    remember_owner,
)
from app.schemas.adversarial import AdversarialResponse, RobustnessResponse
from app.schemas.jobs import AnalysisJobCreated, job_view
from app.services.adversarial import (
    MAX_STEPS,
    ROBUSTNESS_MAX_STEPS,
    AdversarialRequest,
    check_digit_model,
    create_adversarial,
    resolve_robustness_steps,
    robustness_task,
    tensor_files,
)
from app.services.inputs import INPUT_OPENAPI
from app.services.owners import Identity, new_token
from app.services.tensors import NPY_MEDIA_TYPE

router = APIRouter(tags=["learned"])

MethodQuery = Annotated[Literal["fgsm", "pgd"], Query(
    description="fgsm: one step of epsilon along the gradient's sign (Goodfellow et al., 2015); pgd: `steps` steps "
                "of `alpha`, each projected back onto the ε-ball and [0, 1] (Madry et al., 2018)")]
CACHE_HEADERS = {"Cache-Control": "public, max-age=86400, immutable"}  # a tensor's name is a hash of its bytes


@router.post("/models/{model_id}/adversarial", response_model=AdversarialResponse, openapi_extra=INPUT_OPENAPI)
def create_adversarial_example(
    model: ModelDep,
    model_input: ModelInputDep,
    settings: SettingsDep,
    compute: ComputeDep,
    method: MethodQuery = "fgsm",
    epsilon: Annotated[float, Query(gt=0, le=1, description="the largest change of a pixel, pixels in [0, 1]")] = 0.1,
    steps: Annotated[int | None, Query(ge=1, le=MAX_STEPS, description="PGD: steps (default 10)")] = None,
    alpha: Annotated[float | None, Query(gt=0, le=1, description="PGD: the step size in pixel units (default "
                                                                 "2.5 · epsilon / steps)")] = None,
    target: Annotated[int | None, Query(ge=0, description="a class to push the input towards (targeted); default: "
                                                          "push it away from its prediction")] = None,
    random_start: Annotated[bool, Query(description="PGD: start from a random point of the ε-ball")] = False,
    seed: Annotated[int | None, Query(ge=0, le=2**32 - 1, description="PGD: the random start's seed (default 0)")
                    ] = None,
) -> AdversarialResponse:
    """An adversarial example of an image or .npy input: the original, the perturbation (amplified, with its
    scale) and the adversarial input as .npy links and pictures, both predictions and both attention maps."""
    request = AdversarialRequest(method, epsilon, steps, alpha, target, random_start, seed)
    return create_adversarial(model, model_input, request, settings, compute)


@router.get("/adversarial/tensors/{name}.npy", response_class=Response, responses={
    200: {"content": {NPY_MEDIA_TYPE: {}}, "description": "the tensor (.npy): float32 inputs, float64 perturbation"},
    404: {"description": "not a name from an answer, or expired (the server keeps the latest few hundred)"}})
def read_adversarial_tensor(
    name: Annotated[str, Path(description="32 hex digits, from an answer's npy_url",
                              examples=["6f1ed002ab5595859014ebf0951522d9"])],
    settings: SettingsDep,
) -> Response:
    """One tensor of an adversarial example (its name is a hash of its bytes: the link never changes meaning)."""
    return Response(tensor_files(settings).read(name), media_type=NPY_MEDIA_TYPE,
                    headers={**CACHE_HEADERS, "Content-Disposition": f'attachment; filename="{name}.npy"'})


@router.get("/models/{model_id}/adversarial/robustness", response_model=RobustnessResponse, responses={
    202: {"model": AnalysisJobCreated, "description": "computing: follow events_url, then GET result_url"},
    429: {"description": "as many analysis jobs are running as the server allows: wait for one to finish"}})
def read_adversarial_robustness(
    model: ModelDep,
    jobs: AnalysisJobsDep,
    background: BackgroundComputeDep,
    identity: IdentityDep,
    request: Request,
    method: MethodQuery = "fgsm",
    n: Annotated[int, Query(ge=100, le=2000, description="held-out digits attacked (the first n of the test "
                                                         "split)")] = 1000,
    steps: Annotated[int | None, Query(ge=1, le=ROBUSTNESS_MAX_STEPS, description="PGD: steps (default 10)")] = None,
) -> RobustnessResponse | JSONResponse:
    """A digit model's accuracy against ε (0 to 0.3) on held-out digits, every digit attacked at every ε: 200 when
    it was computed before, else 202 with the analysis job computing it."""
    check_digit_model(model)
    task = robustness_task(model, method, n, resolve_robustness_steps(method, steps))
    cached = jobs.cached_result(task)
    if cached is not None:
        return RobustnessResponse(**cached)
    token = identity.token or new_token()
    owner = Identity(token, identity.admin)
    status = jobs.submit(task, background, owner=owner.owner)
    cached = jobs.cached_result(task) if status["status"] == "done" else None  # finished meanwhile
    if cached is not None:
        return RobustnessResponse(**cached)
    created = AnalysisJobCreated(**job_view(status, owner.owner).model_dump())
    response = JSONResponse(created.model_dump(), status_code=202, headers={"Location": created.status_url})
    remember_owner(request, response, token)
    return response
