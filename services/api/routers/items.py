"""GET / DELETE /v1/items/{modality}/{id}: what is indexed, and removing it."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from schemas.api import ItemMetadata
from schemas.items import Modality
from services.api.catalog import Catalog
from services.api.dependencies import get_catalog
from services.api.problems import error_responses
from services.api.security import API_KEY

router = APIRouter(prefix="/v1/items", tags=["items"], dependencies=[API_KEY])
ERRORS = error_responses(401, 404, 422)
ModalityPath = Annotated[Modality, Path(description="the item's modality: `face` or `audio`")]
ItemIdPath = Annotated[str, Path(description="the item's id, its Kafka key (may hold `/`)")]


@router.get("/{modality}/{item_id:path}", responses=ERRORS)
async def get_item(
    modality: ModalityPath, item_id: ItemIdPath, catalog: Annotated[Catalog, Depends(get_catalog)]
) -> ItemMetadata:
    """What is indexed under this id: label, model version, when, and the Kafka record it
    came from. 404 if it is not in the index."""
    return await catalog.item(modality, item_id)


@router.delete("/{modality}/{item_id:path}", status_code=204, responses=ERRORS)
async def delete_item(
    modality: ModalityPath, item_id: ItemIdPath, catalog: Annotated[Catalog, Depends(get_catalog)]
) -> Response:
    """Gone from search once this returns; the tombstone is written to Kafka too."""
    await catalog.delete(modality, item_id)
    return Response(status_code=204)
