"""Replicas' copies of an index, fed by a real holder over real FAISS: they answer as the
holder does, and deletes and switches return only once every live copy has them.

The copies poll the holder's coroutine directly here; over Ray (the same method as an actor
call) they are covered by the API tests, whose searches the copies answer.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial

import numpy as np
import pytest

import tests.test_holder as holder_case
from pipeline.index.feed import ChangeFeed, Deleted, FeedPosition, FeedReply, Upserted
from pipeline.index.holder import IndexHolder
from pipeline.index.replica_copy import LEASE_MARGIN_S, IndexCopy
from pipeline.index.vector_index import VectorIndex
from schemas.items import Modality
from tests.test_holder import DIM, WIDTHS, deletes, unit, upserts

# The holder's own test fixtures: a settings directory with face-v1 active, face-v2 and a
# wider face-v3 stored.
rng, settings, store = holder_case.rng, holder_case.settings, holder_case.store

SHORT_LEASE_S = 0.4
CATCH_UP_S = 5.0


def follow(holder: IndexHolder) -> IndexCopy:
    copy = IndexCopy(holder.changes)
    copy.start()
    return copy


async def caught_up(holder: IndexHolder, *copies: IndexCopy) -> None:
    deadline = time.monotonic() + CATCH_UP_S
    while any(c.index(holder.active_version()) is None for c in copies) or any(
        len(c.index(holder.active_version()) or ()) != holder.size() for c in copies
    ):
        assert time.monotonic() < deadline, "a copy did not catch up"
        await asyncio.sleep(0.01)


def answers(search: Callable[..., list], queries: np.ndarray) -> list:
    return [search(queries, 5), search(queries, 3, "label-a3")]


def test_a_copy_answers_as_the_holder_does_through_upserts_and_deletes(settings, store, rng):
    async def scenario() -> None:
        holder = IndexHolder(settings, Modality.FACE)
        ids = [f"a{i}" for i in range(40)]
        holder.apply(upserts(ids[:20], {"face-v1": unit(rng, 20)}, offset=0))
        copy = follow(holder)
        try:
            await caught_up(holder, copy)
            holder.apply(upserts(ids[20:], {"face-v1": unit(rng, 20)}, offset=20))
            holder.apply(deletes(["a3", "a7", "a30"], offset=40))
            # An upsert of an id already held replaces its vector in the copy too.
            holder.apply(upserts(["a5"], {"face-v1": unit(rng, 1)}, offset=43))
            await caught_up(holder, copy)
            index = copy.index("face-v1")
            assert index is not None and len(index) == 37
            queries = unit(rng, 4)
            assert answers(index.search, queries) == answers(
                partial(holder.search, "face-v1"), queries
            )
            for item_id in ("a5", "a3", "a39"):
                found = holder.vector("face-v1", item_id)
                copied = index.vector(item_id)
                assert (found is None) == (copied is None)
                if found is not None:
                    np.testing.assert_array_equal(found[0], copied)
        finally:
            await copy.stop()

    asyncio.run(scenario())


def test_a_delete_returns_only_once_every_live_copy_has_applied_it(settings, store, rng):
    async def scenario() -> None:
        holder = IndexHolder(settings, Modality.FACE)
        holder.apply(upserts([f"d{i}" for i in range(10)], {"face-v1": unit(rng, 10)}, 0))
        copies = [follow(holder), follow(holder)]
        try:
            await caught_up(holder, *copies)
            # Without waiting, a copy still holds what the holder just dropped...
            holder.delete(["d1"])
            assert all("d1" in c.index("face-v1") for c in copies)
            # ...and an acknowledged delete is gone from every copy.
            assert await holder.delete_everywhere(["d2"]) == 1
            for copy in copies:
                index = copy.index("face-v1")
                assert index is not None and "d2" not in index and "d1" not in index
        finally:
            for copy in copies:
                await copy.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("version", ["face-v2", "face-v3"])
def test_a_switch_returns_once_every_copy_searches_the_new_version(settings, store, rng, version):
    """Also to a model that embeds wider than the one it replaces (face-v3): the copy's new
    index takes the new width, not the old one."""
    width = WIDTHS[version]

    async def scenario() -> None:
        holder = IndexHolder(settings, Modality.FACE)
        holder.apply(upserts(["s0", "s1", "s2"], {"face-v1": unit(rng, 3)}, 0))
        copy = follow(holder)
        try:
            await caught_up(holder, copy)
            holder.begin_build(version, width)
            holder.backfill(version, ["s0", "s1", "s2"], unit(rng, 3, width), ["x", "y", "z"])
            assert await holder.activate_everywhere(version) == "face-v1"
            assert copy.version == version and copy.index("face-v1") is None
            # Items that arrive after the switch are embedded by the new model.
            arrived = unit(rng, 1, width)
            holder.apply(upserts(["s3"], {version: arrived}, 3))
            await caught_up(holder, copy)
            index = copy.index(version)
            assert index.dim == width and len(index) == 4
            assert index.search(arrived, 1)[0][0].item_id == "s3"
            queries = unit(rng, 2, width)
            assert answers(index.search, queries) == answers(
                partial(holder.search, version), queries
            )
        finally:
            await copy.stop()

    asyncio.run(scenario())


def failing_after(poll: Callable[..., Awaitable[FeedReply]], ok: int) -> Callable:
    """The holder's poll for the first `ok` calls, then a holder that cannot be reached."""
    calls = 0

    async def flaky(copy_id: str, position: FeedPosition | None) -> FeedReply:
        nonlocal calls
        calls += 1
        if calls > ok:
            raise ConnectionError("holder unreachable")
        return await poll(copy_id, position)

    return flaky


def test_a_copy_that_cannot_reach_its_holder_stops_answering_within_its_lease(settings, store, rng):
    async def scenario() -> None:
        holder = IndexHolder(settings, Modality.FACE)
        holder.apply(upserts(["l0"], {"face-v1": unit(rng, 1)}, 0))
        copy = IndexCopy(failing_after(holder.changes, ok=1), lease_s=LEASE_MARGIN_S + 0.2)
        copy.start()
        try:
            await caught_up(holder, copy)
            await asyncio.sleep(0.3)
            assert copy.version is None and copy.index("face-v1") is None
        finally:
            await copy.stop()

    asyncio.run(scenario())


def state_of(vectors: dict[str, np.ndarray]) -> Callable[[], dict]:
    def state() -> dict:
        index = VectorIndex(DIM)
        index.upsert(list(vectors), np.stack(list(vectors.values())), [None] * len(vectors))
        return index.to_state()

    return state


def test_a_copy_that_stopped_polling_is_waited_for_one_lease_at_most(rng):
    async def scenario() -> None:
        feed = ChangeFeed("v1", lease_s=SHORT_LEASE_S, poll_wait_s=0.05)
        await asyncio.sleep(SHORT_LEASE_S)  # past a new holder's grace
        start = time.monotonic()
        await feed.synced()
        assert time.monotonic() - start < SHORT_LEASE_S / 2, "no copies: nothing to wait for"

        reply = await feed.poll("gone", None, state_of({"x": unit(rng, 1)[0]}))
        assert reply.state is not None
        feed.record(Deleted(["x"]))
        start = time.monotonic()
        await feed.synced()
        assert time.monotonic() - start >= SHORT_LEASE_S * 0.8, "the silent copy was waited for"
        start = time.monotonic()
        await feed.synced()
        assert time.monotonic() - start < SHORT_LEASE_S / 2, "and forgotten after its lease"

    asyncio.run(scenario())


def test_a_new_holder_acknowledges_nothing_before_one_lease_has_passed():
    async def scenario() -> None:
        feed = ChangeFeed("v1", lease_s=SHORT_LEASE_S)
        start = time.monotonic()
        await feed.synced()
        assert time.monotonic() - start >= SHORT_LEASE_S * 0.8

    asyncio.run(scenario())


def test_a_copy_the_log_no_longer_reaches_gets_the_whole_index(rng):
    async def scenario() -> None:
        feed = ChangeFeed("v1", max_logged_items=4, poll_wait_s=0.05)
        state = state_of({"x": unit(rng, 1)[0]})
        first = await feed.poll("c", None, state)
        feed.record(Upserted(["a", "b"], unit(rng, 2), [None, None]))
        near = await feed.poll("c", first.position, state)
        assert near.state is None and [c.item_ids for c in near.changes] == [["a", "b"]]
        for n in range(3):
            feed.record(Upserted([f"n{n}", f"m{n}"], unit(rng, 2), [None, None]))
        far = await feed.poll("c", near.position, state)
        assert far.state is not None and far.changes == []
        # Another holder run (a restart) shares nothing with the copy either.
        other = ChangeFeed("v1")
        assert (await other.poll("c", far.position, state)).state is not None

    asyncio.run(scenario())


def test_with_no_copy_to_feed_nothing_is_logged_and_a_late_copy_gets_the_whole_index(rng):
    """Replicas without copies (API_INDEX_COPIES off) must not cost the holder a log of
    every recent vector; a copy that lapsed past its lease is no longer fed either."""

    async def scenario() -> None:
        feed = ChangeFeed("v1", lease_s=SHORT_LEASE_S, poll_wait_s=0.05)
        state = state_of({"x": unit(rng, 1)[0]})
        for n in range(3):
            feed.record(Upserted([f"n{n}"], unit(rng, 1), [None]))
        assert feed._logged_items == 0
        first = await feed.poll("c", None, state)
        assert first.state is not None and first.position.seq == 3
        feed.record(Upserted(["a"], unit(rng, 1), [None]))
        near = await feed.poll("c", first.position, state)
        assert near.state is None and [c.item_ids for c in near.changes] == [["a"]]
        await asyncio.sleep(SHORT_LEASE_S)
        feed.record(Upserted(["b"], unit(rng, 1), [None]))
        assert feed._logged_items == 0
        back = await feed.poll("c", near.position, state)
        assert back.state is not None and back.changes == []

    asyncio.run(scenario())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_copy_up_to_date_waits_for_the_next_change(version, rng):
    async def scenario() -> None:
        feed = ChangeFeed("v1", poll_wait_s=0.3)
        state = state_of({"x": unit(rng, 1)[0]})
        first = await feed.poll("c", None, state)
        position = FeedPosition(first.position.epoch, version, first.position.seq)
        start = time.monotonic()
        asyncio.get_running_loop().call_later(0.1, feed.record, Deleted(["x"]))
        reply = await feed.poll("c", position, state)
        waited = time.monotonic() - start
        if version == "v1":
            assert 0.05 <= waited < 0.3 and [c.item_ids for c in reply.changes] == [["x"]]
        else:
            assert waited < 0.05 and reply.state is not None, "another version: no waiting"

    asyncio.run(scenario())
