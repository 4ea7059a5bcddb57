"""GET /v1/models and POST /v1/models/{version}/activate: the versions per modality with
their metrics and thresholds, and switching between them (rollback included)."""

from typing import Annotated

from fastapi import APIRouter, Depends

from schemas.api import ModelInfo, ModelList, Problem
from services.api.catalog import Catalog
from services.api.dependencies import get_catalog, get_training
from services.api.security import API_KEY
from services.api.training import Training

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[API_KEY])


@router.get("/models", responses={401: {"model": Problem}})
async def list_models(catalog: Annotated[Catalog, Depends(get_catalog)]) -> ModelList:
    return await catalog.models()


@router.post(
    "/models/{version}/activate",
    responses={401: {"model": Problem}, 404: {"model": Problem}, 409: {"model": Problem}},
)
async def activate_model(
    version: str, training: Annotated[Training, Depends(get_training)]
) -> ModelInfo:
    """Re-embed the retained items with this version, then switch model and index together;
    answers once every query is served by it. 409 while the modality retrains or switches."""
    return await training.activate(version)
