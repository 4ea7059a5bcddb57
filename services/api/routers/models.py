"""GET /v1/models and POST /v1/models/{version}/activate: the versions per modality with
their metrics and thresholds, and switching between them (rollback included)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from schemas.api import ModelInfo, ModelList
from services.api.catalog import Catalog
from services.api.dependencies import get_catalog, get_training
from services.api.problems import error_responses
from services.api.security import API_KEY
from services.api.training import Training

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[API_KEY])


@router.get("/models", responses=error_responses(401))
async def list_models(catalog: Annotated[Catalog, Depends(get_catalog)]) -> ModelList:
    """Every trained version per modality, newest first, with its held-out metrics and
    threshold; `active` marks the one serving."""
    return await catalog.models()


@router.post(
    "/models/{version}/activate",
    responses=error_responses(401, 404, 409, 422),
)
async def activate_model(
    version: Annotated[str, Path(description="the version to serve, e.g. `face-v3`")],
    training: Annotated[Training, Depends(get_training)],
) -> ModelInfo:
    """Re-embed the retained items with this version, then switch model and index together;
    answers once every query is served by it. 409 while the modality retrains or switches."""
    return await training.activate(version)
