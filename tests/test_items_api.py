"""Items and models as HTTP resources, and the payload limit, against the running stack."""

import base64
import hashlib
import time

from kafka import TopicPartition

from pipeline.kafka.clients import make_consumer
from pipeline.kafka.partitioning import key_partition
from pipeline.store.payloads import PayloadStore
from schemas.items import ITEM_TOPICS, Modality
from tests.fixtures_stack import MAX_ITEM_BYTES, index_unique_face
from tests.test_metrics import scrape, value

TOMBSTONE_WAIT_S = 60
COPY_WAIT_S = 30


def id_lookups(api, asked: str) -> float:
    """Face queries by id whose vector was asked of `asked`: "key_shard" or "every_shard"."""
    return value(scrape(api), "twinstream_id_lookups_total", modality="face", asked=asked)


def copy_reads(api) -> float:
    """Face searches and lookups the replica answered from its own copy of the index."""
    return value(scrape(api), "twinstream_index_reads_total", modality="face", served_by="copy")


def search_by_copy(api, query: dict, shards: int) -> list[dict]:
    """The query's matches, once the replica's copies of every shard (not the shards)
    answer it."""
    deadline = time.monotonic() + COPY_WAIT_S
    while True:
        before = copy_reads(api)
        response = api.post("/v1/search", json=query)
        assert response.status_code == 200, response.text
        if copy_reads(api) == before + shards:
            return response.json()["matches"]
        assert time.monotonic() < deadline, "the replica's copy never answered"
        time.sleep(0.2)


def test_get_item_returns_its_metadata(api, demo_data):
    item = demo_data.indexed[Modality.AUDIO][3]
    response = api.get(f"/v1/items/audio/{item.id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == item.id and body["label"] == item.label
    assert body["model_version"].startswith("audio-v")
    assert body["source"]["topic"] == ITEM_TOPICS[Modality.AUDIO]
    assert body["source"]["offset"] >= 0 and body["indexed_at"]


def test_unknown_item_is_a_404_problem(api):
    response = api.get("/v1/items/face/orl/s99/1")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def _tombstone_position(settings, item_id: str) -> tuple[int, int] | None:
    consumer = make_consumer(settings, group_id=None)
    topic = ITEM_TOPICS[Modality.FACE]
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    deadline = time.monotonic() + TOMBSTONE_WAIT_S
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key == item_id.encode() and record.value is None:
                        return record.partition, record.offset
            if all(consumer.position(tp) >= end[tp] for tp in partitions):
                return None
    finally:
        consumer.close()
    return None


def test_delete_removes_the_item_at_once_and_writes_its_tombstone(
    api, stack, stack_settings, demo_data
):
    """The item goes into a partition its key would not pick (a producer may choose):
    the tombstone must follow it there, to its shard and to compaction."""
    face = demo_data.held_out[Modality.FACE][5]
    partitions = stack_settings.topic_partitions
    item_id, image = index_unique_face(
        stack,
        stack_settings,
        face,
        "api-delete",
        lambda key: (key_partition(key, partitions) + 1) % partitions,
    )
    shards = stack_settings.index_shards
    payloads = PayloadStore(stack_settings.payloads_dir)
    assert hashlib.sha256(image).hexdigest() in payloads
    query = {"modality": "face", "item": {"data": base64.b64encode(image).decode()}}
    assert search_by_copy(api, query | {"k": 1}, shards)[0]["id"] == item_id
    # Not where its key's shard is: a search by its id finds it by asking every shard.
    before = id_lookups(api, "every_shard")
    by_id = api.post("/v1/search", json={"modality": "face", "item": {"id": item_id}, "k": 1})
    assert by_id.json()["matches"][0]["id"] == item_id
    assert id_lookups(api, "every_shard") == before + 1

    # Acknowledged only once the replica's copy has it too: the copy answers next.
    assert api.delete(f"/v1/items/face/{item_id}").status_code == 204
    before = copy_reads(api)
    matches = api.post("/v1/search", json=query | {"k": 20}).json()["matches"]
    assert copy_reads(api) == before + shards
    assert item_id not in {m["id"] for m in matches}
    assert api.get(f"/v1/items/face/{item_id}").status_code == 404
    assert api.delete(f"/v1/items/face/{item_id}").status_code == 404
    assert hashlib.sha256(image).hexdigest() not in payloads, "its retained bytes go too"
    position = _tombstone_position(stack_settings, item_id)
    assert position is not None
    assert position[0] == (key_partition(item_id, partitions) + 1) % partitions


def test_a_search_by_id_asks_only_the_shard_of_its_keys_partition(api, demo_data):
    item = demo_data.indexed[Modality.FACE][7]
    before = {asked: id_lookups(api, asked) for asked in ("key_shard", "every_shard")}
    response = api.post("/v1/search", json={"modality": "face", "item": {"id": item.id}, "k": 1})
    assert response.status_code == 200, response.text
    assert response.json()["matches"][0]["id"] == item.id
    assert id_lookups(api, "key_shard") == before["key_shard"] + 1
    assert id_lookups(api, "every_shard") == before["every_shard"]


def test_models_lists_one_active_version_per_modality(api):
    response = api.get("/v1/models")
    assert response.status_code == 200
    models = response.json()["models"]
    assert set(models) == {"face", "audio"}
    for modality, versions in models.items():
        active = [v for v in versions if v["active"]]
        assert len(active) == 1
        assert active[0]["version"].startswith(f"{modality}-v")
        assert 0 <= active[0]["metrics"]["eer"] < 0.5 and active[0]["threshold"] > 0


def test_a_payload_over_the_limit_is_a_413_problem(api):
    data = base64.b64encode(bytes(MAX_ITEM_BYTES + 1)).decode()
    response = api.post("/v1/search", json={"modality": "face", "item": {"data": data}})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
