"""GET /v1/dead-letters: the newest records that could not be indexed, read back from the DLQ
(what goes there and why: tests/test_dead_letters.py)."""

import time
import uuid
from datetime import datetime

from pipeline.kafka.clients import headers, make_producer
from schemas.items import DLQ_TOPIC, ITEM_TOPICS, Modality
from tests.test_metrics import _grey_png

DLQ_WAIT_S = 120
# What the face decoder says of an image without a face (pipeline/detect/faces.py).
NO_FACE = "no face found in the image"


def produce_no_face(stack_settings, key: str) -> tuple[int, int]:
    """A photo with no face in it, produced to the face topic: (partition, offset)."""
    producer = make_producer(stack_settings)
    sent = producer.send(
        ITEM_TOPICS[Modality.FACE],
        key=key.encode(),
        value=_grey_png(),
        headers=headers(modality="face", label="nobody"),
    ).get(timeout=30)
    producer.close()
    return sent.partition, sent.offset


def wait_dead_letter(api, key: str, limit: int = 200) -> dict:
    deadline = time.monotonic() + DLQ_WAIT_S
    while True:
        response = api.get("/v1/dead-letters", params={"limit": limit})
        assert response.status_code == 200, response.text
        found = [d for d in response.json()["dead_letters"] if d["key"] == key]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"{key} never reached {DLQ_TOPIC}"
        time.sleep(1)


def test_a_photo_without_a_face_is_listed_with_its_reason_and_source(api, stack, stack_settings):
    key = f"dead-letters-{uuid.uuid4().hex[:8]}/no-face"
    partition, offset = produce_no_face(stack_settings, key)
    letter = wait_dead_letter(api, key)
    assert letter["reason"] == NO_FACE and letter["modality"] == "face"
    assert letter["source"] == {
        "topic": ITEM_TOPICS[Modality.FACE],
        "partition": partition,
        "offset": offset,
    }
    # Never the bytes: only what describes the record.
    assert set(letter) == {
        "key",
        "modality",
        "reason",
        "source",
        "dead_lettered_at",
        "partition",
        "offset",
    }
    # Newest first, and `limit` is honoured.
    newest = api.get("/v1/dead-letters", params={"limit": 1}).json()
    assert len(newest["dead_letters"]) == 1 and newest["topic"] == DLQ_TOPIC
    everything = api.get("/v1/dead-letters", params={"limit": 200}).json()["dead_letters"]
    times = [datetime.fromisoformat(d["dead_lettered_at"]) for d in everything]
    assert times == sorted(times, reverse=True)
    assert datetime.fromisoformat(newest["dead_letters"][0]["dead_lettered_at"]) == times[0]


def test_the_limit_is_bounded(api):
    assert api.get("/v1/dead-letters", params={"limit": 0}).status_code == 422
    assert api.get("/v1/dead-letters", params={"limit": 201}).status_code == 422
