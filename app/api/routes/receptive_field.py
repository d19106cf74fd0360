"""POST /api/models/{model_id}/receptive-field: a unit's box and centre in the input, and its effective field."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ComputeDep, ModelDep, ModelStoreDep, RunStoreDep
from app.schemas.receptive_field import ReceptiveFieldRequest, ReceptiveFieldResponse
from app.services.receptive_fields import receptive_field_of

router = APIRouter(prefix="/models", tags=["receptive fields"])


@router.post("/{model_id}/receptive-field", response_model=ReceptiveFieldResponse)
def read_receptive_field(request: ReceptiveFieldRequest, model: ModelDep, runs: RunStoreDep, models: ModelStoreDep,
                         compute: ComputeDep) -> ReceptiveFieldResponse:
    """The unit's box and centre in the input (Araujo et al., 2019), and its effective receptive field."""
    return receptive_field_of(model, request, runs, models, compute)
