"""A stream of new ids, updates and tombstones of face items, and the check that an index
converged to exactly what it must hold after them (one entry per live id, each with its
newest bytes; deleted ids gone)."""

import base64
import random
import time

import httpx

from pipeline.data.orl import iter_orl
from pipeline.kafka.clients import headers, make_producer
from pipeline.settings import Settings
from schemas.items import ITEM_TOPICS, Modality
from tests.test_metrics import scrape

PRODUCE_PAUSE_S = 0.08


class Stream:
    """The items of every round and what the index must hold after them."""

    def __init__(self, prefix: str, new: int = 40, updates: int = 15, deletes: int = 8) -> None:
        self.prefix = prefix
        self.sizes = (new, updates, deletes)
        self.images = [face.read_bytes() for face in iter_orl()]
        random.Random(0).shuffle(self.images)
        self.live: dict[str, bytes] = {}
        self.deleted: set[str] = set()
        self._next_image = 0

    def _image(self) -> bytes:
        self._next_image += 1
        return self.images[self._next_image - 1]

    def round(self, number: int, rng: random.Random) -> list[tuple[str, bytes | None]]:
        """New ids, updates and tombstones of new and earlier ids, in a random log order.

        Only the order per key matters (one key, one partition), and replaying the
        ops in list order is exactly what the index must end up with.
        """
        new_count, updates, deletes = self.sizes
        new = [f"{self.prefix}/{number}/{i}" for i in range(new_count)]
        candidates = new + list(self.live)
        ops: list[tuple[str, bytes | None]] = [(item_id, self._image()) for item_id in new]
        ops += [(item_id, self._image()) for item_id in rng.sample(candidates, updates)]
        ops += [(item_id, None) for item_id in rng.sample(candidates, deletes)]
        rng.shuffle(ops)
        for item_id, value in ops:
            if value is None:
                self.live.pop(item_id, None)
                self.deleted.add(item_id)
            else:
                self.live[item_id] = value
                self.deleted.discard(item_id)
        return ops


def produce_ops(settings: Settings, ops: list[tuple[str, bytes | None]]) -> None:
    producer = make_producer(settings)
    for item_id, value in ops:
        producer.send(
            ITEM_TOPICS[Modality.FACE],
            key=item_id.encode(),
            value=value,
            headers=headers(modality="face", produced_at=int(time.time() * 1000)),
        )
        producer.flush()
        time.sleep(PRODUCE_PAUSE_S)
    producer.close()


def converged_problems(api: httpx.Client, stream: Stream) -> list[str]:
    """What is still wrong with the index; empty once it is exactly the expected set."""
    size = scrape(api).get(("twinstream_index_items", (("modality", "face"),)))
    problems = (
        [] if size == len(stream.live) else [f"index holds {size}, expected {len(stream.live)}"]
    )
    for item_id, value in stream.live.items():
        query = {"modality": "face", "item": {"data": base64.b64encode(value).decode()}, "k": 1}
        response = api.post("/v1/search", json=query)
        if response.status_code != 200:  # a holder still restarting: 503, asked again later
            return [*problems, f"search answered {response.status_code}"]
        matches = response.json()["matches"]
        if not matches or matches[0]["id"] != item_id or matches[0]["distance"] > 1e-3:
            problems.append(f"{item_id}: newest bytes find {matches[:1]}")
    for item_id in stream.deleted:
        query = {"modality": "face", "item": {"id": item_id}, "k": 1}
        status = api.post("/v1/search", json=query).status_code
        if status == 503:
            return [*problems, "search answered 503"]
        if status != 404:
            problems.append(f"{item_id} was deleted but is still indexed")
    return problems
