"""POST /v1/search: who/what in the index is this?"""

from typing import Annotated

from fastapi import APIRouter, Depends

from schemas.api import Problem, SearchRequest, SearchResponse
from services.api.dependencies import get_engine
from services.api.engine import QueryEngine
from services.api.security import API_KEY

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[API_KEY])


@router.post(
    "/search", responses={401: {"model": Problem}, 404: {"model": Problem}, 422: {"model": Problem}}
)
async def search(
    request: SearchRequest, engine: Annotated[QueryEngine, Depends(get_engine)]
) -> SearchResponse:
    return await engine.search(request)
