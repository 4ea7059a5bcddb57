"""POST /v1/similarity: are these two the same person / the same sound?"""

from typing import Annotated

from fastapi import APIRouter, Depends

from schemas.api import Problem, SimilarityRequest, SimilarityResponse
from services.api.dependencies import get_engine
from services.api.engine import QueryEngine
from services.api.security import API_KEY

router = APIRouter(prefix="/v1", tags=["similarity"], dependencies=[API_KEY])


@router.post(
    "/similarity",
    responses={401: {"model": Problem}, 404: {"model": Problem}, 422: {"model": Problem}},
)
async def similarity(
    request: SimilarityRequest, engine: Annotated[QueryEngine, Depends(get_engine)]
) -> SimilarityResponse:
    return await engine.similarity(request)
