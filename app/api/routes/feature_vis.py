"""Feature visualisation by optimisation: the picture that makes a channel, a unit or a class's logit fire most.

``POST /api/models/{id}/feature-visualisation`` checks the request against the model at once (404 for an unknown
node, 422 for a channel out of range, a model that does not read pictures, a size it cannot take), then answers
**200** with the result when an identical request was computed before, else **202** with the analysis job
computing it: follow its ``events_url`` (each ``progress`` event carries ``preview_url``, the picture so far), then
GET its ``result_url`` (the same ``FeatureVisualisation``). See docs/learned.md.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import AnalysisJobsDep, BackgroundComputeDep, IdentityDep, ModelDep
from app.schemas.feature_vis import FeatureVisRequest, FeatureVisualisation
from app.schemas.jobs import AnalysisJobCreated, job_view
from app.services import feature_vis as service
from app.web.pages import samples_dir

router = APIRouter(tags=["learned"])


@router.post("/models/{model_id}/feature-visualisation", response_model=FeatureVisualisation, responses={
    202: {"model": AnalysisJobCreated,
          "description": "the picture is being optimised: follow events_url (progress events carry preview_url, the "
                         "picture so far), then GET result_url"},
    404: {"description": "no such model, or no such node (the message lists the model's nodes)"},
    422: {"description": "not exactly one of channel, unit, class_index; a channel, unit or class out of range; a "
                         "model whose input is not a picture; a size the network cannot take; steps out of 1-512"},
    429: {"description": "as many analysis jobs are running as the server allows: wait, then ask again"},
})
def create_feature_visualisation(model: ModelDep, request: FeatureVisRequest, jobs: AnalysisJobsDep,
                                 background: BackgroundComputeDep,
                                 identity: IdentityDep) -> FeatureVisualisation | JSONResponse:
    """The input that maximises a channel, a unit or a class logit, by gradient ascent (cached, or a job)."""
    plan = service.plan(model, request)
    result, status = service.find_or_start(plan, samples_dir(), jobs, background, identity.owner)
    if result is not None:
        return FeatureVisualisation(**result)
    created = AnalysisJobCreated(**job_view(status, identity.owner).model_dump())
    return JSONResponse(created.model_dump(), status_code=202, headers={"Location": created.status_url})
