"""POST /v1/search: who/what in the index is this?"""

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from schemas.api import DEFAULT_K, MAX_K, SearchRequest, SearchResponse
from schemas.items import Modality
from services.api.dependencies import get_engine
from services.api.engine import QueryEngine
from services.api.problems import error_responses
from services.api.security import API_KEY
from services.api.uploads import uploaded_ref

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[API_KEY])


@router.post("/search", responses=error_responses(401, 404, 413, 422))
async def search(
    request: SearchRequest, engine: Annotated[QueryEngine, Depends(get_engine)]
) -> SearchResponse:
    """The `k` indexed items nearest to an indexed item (`id`) or to file bytes (`data`),
    nearest first, by the active model. 404 for an unknown id; 422 for bytes that are not
    a usable image or WAV file."""
    return await engine.search(request)


@router.post("/search/upload", responses=error_responses(401, 413, 422))
async def search_upload(
    modality: Annotated[Modality, Form(description="which index to search")],
    item: Annotated[UploadFile, File(description="image or WAV file")],
    engine: Annotated[QueryEngine, Depends(get_engine)],
    k: Annotated[int, Form(ge=1, le=MAX_K, description="how many matches at most")] = DEFAULT_K,
    label: Annotated[str | None, Form(description="only match items with this label")] = None,
) -> SearchResponse:
    """`/v1/search` for a file sent as multipart/form-data (`curl -F item=@x.png`)."""
    request = SearchRequest(
        modality=modality, item=await uploaded_ref("item", item), k=k, label=label
    )
    return await engine.search(request)
