"""GET /v1/dead-letters: the newest records that could not be indexed, with their reasons."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from pipeline.ingest.dead_letter import DeadLetter as Record
from pipeline.ingest.dead_letter import newest_dead_letters
from pipeline.settings import Settings
from schemas.api import DeadLetter, DeadLetterList, SourcePosition
from schemas.items import DLQ_TOPIC
from services.api.dependencies import get_settings
from services.api.problems import error_responses
from services.api.security import API_KEY

router = APIRouter(prefix="/v1", tags=["health"], dependencies=[API_KEY])
MAX_DEAD_LETTERS = 200


def _shown(record: Record) -> DeadLetter:
    source = (
        None
        if None in (record.source_topic, record.source_partition, record.source_offset)
        else SourcePosition(
            topic=record.source_topic,
            partition=record.source_partition,
            offset=record.source_offset,
        )
    )
    return DeadLetter(
        key=record.key,
        modality=record.modality,
        reason=record.reason,
        source=source,
        dead_lettered_at=record.dead_lettered_at,
        partition=record.partition,
        offset=record.offset,
    )


@router.get("/dead-letters", responses=error_responses(401, 422))
async def list_dead_letters(
    settings: Annotated[Settings, Depends(get_settings)],
    limit: Annotated[
        int, Query(ge=1, le=MAX_DEAD_LETTERS, description="the most dead letters to return")
    ] = 20,
) -> DeadLetterList:
    """The newest records the ingest actors could not index, newest first: each one's item
    id, modality, the reason, and the item record it came from, read from the dead-letter
    topic (`twinstream.dlq`). The payload bytes are never returned."""
    # A blocking Kafka read: off the event loop.
    records = await run_in_threadpool(newest_dead_letters, settings, limit)
    return DeadLetterList(dead_letters=[_shown(r) for r in records], topic=DLQ_TOPIC)
