"""The change feed that keeps copies of an active index in step with its holder.

An API replica searches its own copy of each active index instead of calling the holder for
every query (a Ray round trip of 2–3 ms on two cores, more than the search). The holder
records every change to its active index here, in order; each copy pulls what it has not
applied yet with a long poll that also tells the holder how far it got. A change that must
be visible everywhere before it is acknowledged — an API delete, a model switch — returns
only once every live copy has reported it applied.

Liveness is a lease. The holder stops waiting for a copy that has not polled for `lease_s`;
a copy stops answering from itself `lease_s` after it sent its last answered poll — never
later than the holder stops waiting for it, since a poll is answered after it was sent. A
holder that restarts does not know its predecessor's copies, so for its first `lease_s` it
acknowledges nothing: by then each of them has either polled it or stopped answering.
"""

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# A copy's poll waits this long at most for a change; the lease must outlast it.
POLL_WAIT_S = 1.0
LEASE_S = 3.0
# Upserted items the feed keeps for copies that fell behind; one further behind gets the
# whole index instead (at 128 float32s a vector, 64k of them are 32 MB).
MAX_LOGGED_ITEMS = 65_536


@dataclass(frozen=True)
class Upserted:
    item_ids: list[str]
    vectors: np.ndarray
    labels: list[str | None]


@dataclass(frozen=True)
class Deleted:
    item_ids: list[str]


Change = Upserted | Deleted


@dataclass(frozen=True)
class FeedPosition:
    """What a copy holds: every change of `version` up to `seq`, from the holder run `epoch`."""

    epoch: str
    version: str
    seq: int


@dataclass(frozen=True)
class FeedReply:
    """What a copy applies to reach `position`: `changes` in order, or — when it had nothing
    the feed can continue from — a whole index (`VectorIndex.to_state()`) first."""

    position: FeedPosition
    changes: list[Change]
    state: dict | None = None


@dataclass
class _Copy:
    acked: int = -1
    parked: int = 0
    seen: float = 0.0


@dataclass
class ChangeFeed:
    version: str
    lease_s: float = LEASE_S
    poll_wait_s: float = POLL_WAIT_S
    max_logged_items: int = MAX_LOGGED_ITEMS
    epoch: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.seq = 0
        # (seq, change, items in it); a copy at `_first` or later can continue from the log.
        self._log: deque[tuple[int, Change, int]] = deque()
        self._logged_items = 0
        self._first = 0
        self._copies: dict[str, _Copy] = {}
        self._started = time.monotonic()
        # Replaced on every change / every poll, so each waiter wakes once per event.
        self._changed = asyncio.Event()
        self._polled = asyncio.Event()

    # --- the holder's side ----------------------------------------------------------------

    def record(self, change: Change) -> None:
        self.seq += 1
        self._forget_lapsed(time.monotonic())
        if not self._copies:
            # Nobody to feed (replicas without copies): log nothing, and a copy that comes
            # later starts from the whole index, as one the log no longer reaches does.
            self._first = self.seq
            self._log.clear()
            self._logged_items = 0
            self._wake()
            return
        size = len(change.item_ids)
        self._log.append((self.seq, change, size))
        self._logged_items += size
        while self._logged_items > self.max_logged_items:
            seq, _, size = self._log.popleft()
            self._logged_items -= size
            self._first = seq
        self._wake()

    def restart(self, version: str) -> None:
        """A new active index: every copy starts over from its whole state."""
        self.version = version
        self.seq += 1
        self._log.clear()
        self._logged_items = 0
        self._first = self.seq
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def synced(self) -> None:
        """Return once every live copy has applied every change recorded so far."""
        seq = self.seq
        while True:
            now = time.monotonic()
            self._forget_lapsed(now)
            waits = [self._started + self.lease_s - now]
            waits += [
                c.seen + self.lease_s - now
                for c in self._copies.values()
                if c.acked < seq and not c.parked
            ]
            if any(c.acked < seq and c.parked for c in self._copies.values()):
                # Its poll returns with the change at once; its next one acknowledges it.
                waits.append(self.poll_wait_s)
            wait = max(waits)
            if wait <= 0:
                return
            await _until(self._polled, wait)

    def _forget_lapsed(self, now: float) -> None:
        for copy_id in [
            i for i, c in self._copies.items() if not c.parked and now - c.seen >= self.lease_s
        ]:
            del self._copies[copy_id]

    # --- a copy's side --------------------------------------------------------------------

    async def poll(
        self, copy_id: str, position: FeedPosition | None, state: Callable[[], dict]
    ) -> FeedReply:
        """What `copy_id` lacks beyond `position`, waiting up to `poll_wait_s` for a change."""
        copy = self._copies.setdefault(copy_id, _Copy())
        copy.acked = position.seq if position is not None and position.epoch == self.epoch else -1
        self._polled.set()
        self._polled = asyncio.Event()
        if copy.acked >= self.seq and position is not None and position.version == self.version:
            copy.parked += 1
            try:
                await _until(self._changed, self.poll_wait_s)
            finally:
                copy.parked -= 1
        copy.seen = time.monotonic()
        return self._reply(position, state)

    def _reply(self, position: FeedPosition | None, state: Callable[[], dict]) -> FeedReply:
        now = FeedPosition(self.epoch, self.version, self.seq)
        if (
            position is None
            or position.epoch != self.epoch
            or position.version != self.version
            or position.seq < self._first
        ):
            return FeedReply(now, [], state())
        return FeedReply(now, [change for seq, change, _ in self._log if seq > position.seq])


async def _until(event: asyncio.Event, timeout_s: float) -> None:
    # Not `wait_for`: on Python 3.11 it swallows a cancellation that arrives as the event is
    # set, and a cancelled poll would go on.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
