"""GET /v1/items (a page of them) and GET / DELETE /v1/items/{modality}/{id}: what is
indexed, and removing it."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from schemas.api import ItemMetadata, ItemPage
from schemas.items import Modality
from services.api.catalog import Catalog
from services.api.dependencies import get_catalog
from services.api.problems import error_responses
from services.api.security import API_KEY

router = APIRouter(prefix="/v1/items", tags=["items"], dependencies=[API_KEY])
ERRORS = error_responses(401, 404, 422)
ModalityPath = Annotated[Modality, Path(description="the item's modality: `face` or `audio`")]
ItemIdPath = Annotated[str, Path(description="the item's id, its Kafka key (may hold `/`)")]
MAX_PAGE = 500


@router.get("", responses=error_responses(401, 422))
async def list_items(
    modality: Annotated[Modality, Query(description="which items: `face` or `audio`")],
    catalog: Annotated[Catalog, Depends(get_catalog)],
    label: Annotated[str | None, Query(description="only items with this label")] = None,
    offset: Annotated[int, Query(ge=0, description="how many items to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="the most items to return")] = 50,
) -> ItemPage:
    """The stored items of a modality, ordered by id, a page at a time, with how many match
    in all; `label` keeps only those produced with it."""
    return await catalog.items(modality, label, offset, limit)


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
