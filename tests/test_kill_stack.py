"""kill -9 of the whole stack at random moments mid-stream loses and duplicates nothing.

`twinstream up` runs as a user would start it, in its own process group with its
own state directory, broker and HTTP port (its consumer group must not meet the
session stack's). Items stream in — new ids, updates (same key, new bytes) and
tombstones — while the process group is SIGKILLed at a random moment; the next
`up` must converge to exactly the produced set minus the deleted, one entry per
id, each update carrying the newest vector. The broker is a separate service and
survives, as a real cluster would.
"""

import base64
import random
import threading
import time

import httpx

from pipeline.data.orl import iter_orl
from pipeline.kafka.clients import headers, make_producer
from pipeline.settings import Settings
from schemas.items import ITEM_TOPICS, Modality
from tests.fixtures_up import UpProcess
from tests.test_metrics import scrape

ROUNDS = 3
NEW_PER_ROUND = 40
UPDATES_PER_ROUND = 15
DELETES_PER_ROUND = 8
PRODUCE_PAUSE_S = 0.08
KILL_WINDOW_S = (0.5, 5.0)
CONVERGE_TIMEOUT_S = 180


class Stream:
    """The items of every round and what the index must hold after them."""

    def __init__(self) -> None:
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
        new = [f"kill/{number}/{i}" for i in range(NEW_PER_ROUND)]
        candidates = new + list(self.live)
        ops: list[tuple[str, bytes | None]] = [(item_id, self._image()) for item_id in new]
        ops += [(item_id, self._image()) for item_id in rng.sample(candidates, UPDATES_PER_ROUND)]
        ops += [(item_id, None) for item_id in rng.sample(candidates, DELETES_PER_ROUND)]
        rng.shuffle(ops)
        for item_id, value in ops:
            if value is None:
                self.live.pop(item_id, None)
                self.deleted.add(item_id)
            else:
                self.live[item_id] = value
                self.deleted.discard(item_id)
        return ops


def _produce(settings: Settings, ops: list[tuple[str, bytes | None]]) -> None:
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


def _converged(api: httpx.Client, stream: Stream) -> list[str]:
    """What is still wrong with the index; empty once it is exactly the expected set."""
    size = scrape(api).get(("twinstream_index_items", (("modality", "face"),)))
    problems = (
        [] if size == len(stream.live) else [f"index holds {size}, expected {len(stream.live)}"]
    )
    for item_id, value in stream.live.items():
        query = {"modality": "face", "item": {"data": base64.b64encode(value).decode()}, "k": 1}
        matches = api.post("/v1/search", json=query).json()["matches"]
        if not matches or matches[0]["id"] != item_id or matches[0]["distance"] > 1e-3:
            problems.append(f"{item_id}: newest bytes find {matches[:1]}")
    for item_id in stream.deleted:
        query = {"modality": "face", "item": {"id": item_id}, "k": 1}
        if api.post("/v1/search", json=query).status_code != 404:
            problems.append(f"{item_id} was deleted but is still indexed")
    return problems


def test_kill_9_of_the_whole_stack_converges_to_exactly_the_log(own_settings):
    rng = random.Random(int(time.time()))
    stream = Stream()
    up = UpProcess(own_settings, 0)
    try:
        up.wait_ready()
        for number in range(ROUNDS):
            ops = stream.round(number, rng)
            producer = threading.Thread(target=_produce, args=(own_settings, ops))
            producer.start()
            time.sleep(rng.uniform(*KILL_WINDOW_S))
            up.kill()
            producer.join()
            up = UpProcess(own_settings, number + 1)
            up.wait_ready()
        with httpx.Client(base_url=f"http://127.0.0.1:{own_settings.http_port}", timeout=60) as api:
            deadline = time.monotonic() + CONVERGE_TIMEOUT_S
            while problems := _converged(api, stream):
                assert time.monotonic() < deadline, problems[:10]
                time.sleep(2)
    finally:
        if up.process.poll() is None:
            up.stop()
