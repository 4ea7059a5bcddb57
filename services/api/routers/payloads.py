"""GET /v1/payloads/{modality}/{id}: an indexed item's bytes, for people to look at or hear."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from schemas.items import Modality
from services.api.catalog import Catalog
from services.api.dependencies import get_catalog
from services.api.problems import error_responses
from services.api.security import API_KEY
from services.api.thumbnails import for_browser

# Its own prefix, not `/v1/items/{id}/payload`: ids may hold `/`, and one ending in
# `/payload` would otherwise be two resources at once.
router = APIRouter(prefix="/v1/payloads", tags=["items"], dependencies=[API_KEY])
MIN_SIDE, MAX_SIDE = 16, 4096
PAYLOAD = {
    200: {
        "description": "the item's bytes: PNG or JPEG for a face, the stored file for audio",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in ("image/png", "image/jpeg", "audio/wav", "application/octet-stream")
        },
    },
    **error_responses(401, 404, 422),
}


@router.get("/{modality}/{item_id:path}", response_class=Response, responses=PAYLOAD)
async def item_payload(
    modality: Annotated[Modality, Path(description="the item's modality: `face` or `audio`")],
    item_id: Annotated[str, Path(description="the item's id, its Kafka key (may hold `/`)")],
    catalog: Annotated[Catalog, Depends(get_catalog)],
    max_side: Annotated[
        int | None,
        Query(
            ge=MIN_SIDE,
            le=MAX_SIDE,
            description="faces: scale down to at most this many pixels on the longer side",
        ),
    ] = None,
) -> Response:
    """The item's stored bytes, for a person to look at or listen to. A face comes back as
    PNG (JPEG if it was produced as JPEG), upright, scaled down to `max_side` when given;
    audio comes back as it was produced, with its content type (`max_side` does not apply).
    404 for an unknown item or one whose bytes are no longer retained."""
    data, content_type = await catalog.payload(modality, item_id)
    # Off the event loop: decoding and scaling a large photo takes a while.
    body, media_type = await asyncio.to_thread(for_browser, modality, data, content_type, max_side)
    return Response(body, media_type=media_type, headers={"cache-control": "private, no-cache"})
