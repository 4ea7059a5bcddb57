"""The ingest actors' stats as an API replica reads them, for metrics and readiness alike."""

import asyncio

from pipeline.index.handles import ingest_handles
from pipeline.ingest.stats import IngestStats

# A restarting ingest actor answers late; the others are reported meanwhile.
INGEST_STATS_TIMEOUT_S = 2.0


async def ingest_stats() -> dict[str, IngestStats]:
    """Each answering actor's stats, by actor name."""
    handles = await asyncio.to_thread(ingest_handles)
    replies = await asyncio.gather(
        *(asyncio.wait_for(h.stats.remote(), INGEST_STATS_TIMEOUT_S) for h in handles.values()),
        return_exceptions=True,
    )
    return {
        name: reply
        for name, reply in zip(handles, replies, strict=True)
        if isinstance(reply, IngestStats)
    }
