"""GET /v1/models: the versions per modality with their metrics and thresholds."""

from typing import Annotated

from fastapi import APIRouter, Depends

from schemas.api import ModelList
from services.api.catalog import Catalog
from services.api.dependencies import get_catalog
from services.api.problems import error_responses
from services.api.security import API_KEY

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[API_KEY])


@router.get("/models", responses=error_responses(401))
async def list_models(catalog: Annotated[Catalog, Depends(get_catalog)]) -> ModelList:
    return await catalog.models()
