"""POST /v1/similarity: are these two the same person / the same sound?"""

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from schemas.api import SimilarityRequest, SimilarityResponse
from schemas.items import Modality
from services.api.dependencies import get_engine
from services.api.engine import QueryEngine
from services.api.problems import error_responses
from services.api.security import API_KEY
from services.api.uploads import uploaded_ref

router = APIRouter(prefix="/v1", tags=["similarity"], dependencies=[API_KEY])


@router.post("/similarity", responses=error_responses(401, 404, 413, 422))
async def similarity(
    request: SimilarityRequest, engine: Annotated[QueryEngine, Depends(get_engine)]
) -> SimilarityResponse:
    """The active model's distance between two items, each an indexed item (`id`) or file
    bytes (`data`), and whether it calls them the same person or sound. 404 for an unknown
    id; 422 for bytes that are not a usable image or WAV file."""
    return await engine.similarity(request)


@router.post("/similarity/upload", responses=error_responses(401, 413, 422))
async def similarity_upload(
    modality: Annotated[Modality, Form(description="whose model compares them")],
    a: Annotated[UploadFile, File(description="image or WAV file")],
    b: Annotated[UploadFile, File(description="image or WAV file")],
    engine: Annotated[QueryEngine, Depends(get_engine)],
) -> SimilarityResponse:
    """`/v1/similarity` for two files sent as multipart/form-data (`curl -F a=@x.png`)."""
    request = SimilarityRequest(
        modality=modality, a=await uploaded_ref("a", a), b=await uploaded_ref("b", b)
    )
    return await engine.similarity(request)
