"""An ingest actor that dies mid-stream is restarted by Ray and loses or duplicates nothing.

The kill lands at a random point of the stream, several times: after a random
share of the items is indexed, so sometimes mid-batch, sometimes between batches.
"""

import random
import threading
import time
import uuid

import ray

from pipeline.kafka.clients import headers, make_producer
from schemas.items import ITEM_TOPICS, Modality
from tests.fixtures_stack import delete_and_wait

ROUNDS = 3
ITEMS = 100
RECOVERY_TIMEOUT_S = 180


def test_killed_ingest_actor_recovers_every_item_exactly_once(stack, stack_settings, demo_data):
    faces = demo_data.held_out[Modality.FACE]
    holder = stack.holders[Modality.FACE]
    rng = random.Random(int(time.time()))
    size_before = ray.get(holder.size.remote())
    for _ in range(ROUNDS):
        ids = [f"recovery/{uuid.uuid4().hex[:8]}/{i}" for i in range(ITEMS)]

        def produce_slowly(ids: list[str] = ids) -> None:
            producer = make_producer(stack_settings)
            for i, item_id in enumerate(ids):
                face = faces[i % len(faces)]
                producer.send(
                    ITEM_TOPICS[Modality.FACE],
                    key=item_id.encode(),
                    value=face.read_bytes(),
                    headers=headers(modality="face", label=face.label),
                )
                if i % 10 == 0:
                    producer.flush()
                    time.sleep(0.3)
            producer.flush()
            producer.close()

        producer = threading.Thread(target=produce_slowly)
        producer.start()
        kill_after = rng.randint(1, ITEMS // 2)
        while ITEMS - len(stack.missing(Modality.FACE, ids)) < kill_after:
            time.sleep(0.02)
        for worker in stack.workers:
            ray.kill(worker, no_restart=False)  # the process dies at once, like kill -9
        missing_at_kill = len(stack.missing(Modality.FACE, ids))
        producer.join()
        assert missing_at_kill > 0, "the kill should land mid-stream"

        stack.wait_indexed({Modality.FACE: ids}, RECOVERY_TIMEOUT_S)
        assert ray.get(holder.size.remote()) == size_before + ITEMS  # each exactly once

        delete_and_wait(stack, stack_settings, {Modality.FACE: ids})
        assert ray.get(holder.size.remote()) == size_before
