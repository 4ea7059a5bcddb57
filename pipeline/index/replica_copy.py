"""One API replica's copy of a modality's active index, kept current from the holder's feed.

The copy answers searches and id lookups in the replica's own process while its lease runs
(pipeline/index/feed.py says why that is safe); a query that finds it behind, on another
version or out of its lease goes to the holder as before, so the copy only ever saves a
round trip and never changes an answer's version.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from pipeline.index.feed import LEASE_S, Deleted, FeedPosition, FeedReply
from pipeline.index.vector_index import VectorIndex

log = logging.getLogger(__name__)

# After a failed poll (holder restarting, say); the lease runs out meanwhile.
RETRY_S = 0.5
# The copy stops answering this much before the holder stops waiting for it.
LEASE_MARGIN_S = 0.5

Poll = Callable[[str, FeedPosition | None], Awaitable[FeedReply]]


class IndexCopy:
    def __init__(self, poll: Poll, lease_s: float = LEASE_S) -> None:
        self._poll = poll
        self._lease_s = lease_s - LEASE_MARGIN_S
        self._id = uuid.uuid4().hex
        self._index: VectorIndex | None = None
        self._position: FeedPosition | None = None
        self._valid_until = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin following the feed (on the replica's event loop; once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def version(self) -> str | None:
        """The version the copy searches, while its lease runs."""
        if self._position is None or time.monotonic() >= self._valid_until:
            return None
        return self._position.version

    def index(self, version: str) -> VectorIndex | None:
        """The copy, if it may answer for `version` now."""
        return self._index if self.version == version else None

    async def _follow(self) -> None:
        while True:
            sent = time.monotonic()
            try:
                reply = await self._poll(self._id, self._position)
                try:
                    await self._apply(reply)
                except Exception:
                    # Half-applied changes are no copy: stop answering, ask for a whole index.
                    self._position = None
                    raise
            except Exception:
                # Unreachable holder or bad reply: the copy answers until its lease runs out.
                log.warning("index feed failed; searches go to the holder", exc_info=True)
                await asyncio.sleep(RETRY_S)
                continue
            self._valid_until = sent + self._lease_s

    async def _apply(self, reply: FeedReply) -> None:
        if reply.state is not None:
            # Off the event loop: a large index takes a while to deserialize. The old copy
            # answers meanwhile, within its lease.
            self._index = await asyncio.to_thread(VectorIndex.from_state, reply.state)
        index = self._index
        if index is None:
            raise RuntimeError("the feed sent changes before a whole index")
        for change in reply.changes:
            if isinstance(change, Deleted):
                index.delete(change.item_ids)
            else:
                index.upsert(change.item_ids, change.vectors, change.labels)
        self._position = reply.position
