"""A batch the consumer cannot read stops only its partition, visibly and without spinning; once
it is readable again, a restart indexes what was stuck exactly once.

The batch is made unreadable on the real broker: rewritten in its segment file to claim a codec
Kafka does not have (its CRC made to match), which is what a consumer without a codec's library
meets, and what no produce path lets through.
"""

import os
import time
import uuid
from pathlib import Path

import ray
from kafka import TopicPartition

from pipeline.ingest.unreadable import stop_unreadable
from pipeline.ingest.worker import STOP_TIMEOUT_S
from pipeline.kafka.clients import headers, make_admin, make_consumer, make_producer
from pipeline.kafka.launcher import EmbeddedKafka
from pipeline.settings import Settings
from schemas.items import ITEM_TOPICS, Modality
from tests.fixtures_stack import delete_and_wait
from tests.log_segments import overwrite, stored_batch, with_codec
from tests.test_metrics import scrape, value
from tests.test_recovery import _wait_until_back as wait_until_back

# Codec ids 0-4 are Kafka's; 5 is none.
UNKNOWN_CODEC = 5
VISIBLE_WITHIN_S = 30
CPU_WINDOW_S = 10
MAX_CORE_SHARE = 0.05
STUCK_ITEMS = 4
AFTER_ITEMS = 3
OTHER_ITEMS = 3
RESUME_TIMEOUT_S = 180
STUCK_PARTITION = 3
OTHER_PARTITION = 2


def _unreadable(settings: Settings, tp: TopicPartition, offset: int) -> bytes:
    """Make the batch holding `offset` unreadable; returns its bytes, to put back."""
    batch = stored_batch(EmbeddedKafka(settings).data_dir, tp, offset)
    overwrite(batch, with_codec(batch, UNKNOWN_CODEC))
    return batch.data


def _restore(settings: Settings, tp: TopicPartition, offset: int, data: bytes) -> None:
    overwrite(stored_batch(EmbeddedKafka(settings).data_dir, tp, offset), data)


def _send(settings: Settings, topic: str, partition: int, keys: list[str], value) -> int:
    """One batch of `keys` into `partition`; returns the offset of the first."""
    producer = make_producer(settings, compression_type="gzip", linger_ms=500)
    try:
        futures = [
            producer.send(
                topic,
                key=k.encode(),
                value=value(k),
                headers=headers(modality="face", label="s1"),
                partition=partition,
            )
            for k in keys
        ]
        producer.flush(30)
        return futures[0].get(timeout=30).offset
    finally:
        producer.close()


def test_the_consumer_stops_only_the_unreadable_partition(kafka_settings):
    topic = f"test.unreadable.{uuid.uuid4().hex[:8]}"
    with make_admin(kafka_settings) as admin:
        admin.create_topics({topic: {"num_partitions": 2}}, wait_for_metadata=True)
    broken, healthy = TopicPartition(topic, 0), TopicPartition(topic, 1)
    first = _send(kafka_settings, topic, 0, ["a", "b", "c"], lambda k: k.encode() * 100)
    _send(kafka_settings, topic, 0, ["d", "e"], lambda k: k.encode())
    _send(kafka_settings, topic, 1, ["x", "y", "z"], lambda k: k.encode())
    original = _unreadable(kafka_settings, broken, first)

    consumer = make_consumer(kafka_settings, group_id=None)
    consumer.assign([broken, healthy])
    consumer.seek_to_beginning(broken, healthy)
    seen, stopped = [], []
    cpu_before = time.process_time()
    deadline = time.monotonic() + CPU_WINDOW_S
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            polled = consumer.poll(timeout_ms=200)
        except Exception as error:
            stopped.append(stop_unreadable(consumer, error))
            continue
        assert time.monotonic() - started < 5, "a poll must return"
        seen += [(r.partition, r.key) for batch in polled.values() for r in batch]
    cpu = time.process_time() - cpu_before
    consumer.close()

    assert len(stopped) == 1
    assert (stopped[0].topic, stopped[0].partition, stopped[0].offset) == (topic, 0, first)
    assert stopped[0].error_type == "UnsupportedCodecError"
    assert "compression type: 5" in stopped[0].error
    assert sorted(seen) == [(1, b"x"), (1, b"y"), (1, b"z")]
    assert cpu < MAX_CORE_SHARE * CPU_WINDOW_S, f"{cpu:.2f} s of CPU in {CPU_WINDOW_S} s"

    _restore(kafka_settings, broken, first, original)
    consumer = make_consumer(kafka_settings, group_id=None)
    consumer.assign([broken])
    consumer.seek_to_beginning(broken)
    keys: list[bytes] = []
    deadline = time.monotonic() + 10
    while len(keys) < 5 and time.monotonic() < deadline:
        keys += [r.key for batch in consumer.poll(timeout_ms=200).values() for r in batch]
    consumer.close()
    assert keys == [b"a", b"b", b"c", b"d", b"e"]


def _cpu_seconds(pid: int) -> float:
    """User and system time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _readiness_once_stopped(api, deadline: float) -> dict:
    while True:
        response = api.get("/readyz")
        if response.status_code == 503 and response.json()["stopped_partitions"]:
            return response.json()
        assert time.monotonic() < deadline, f"/readyz still says {response.json()}"
        time.sleep(0.5)


def _restart(workers) -> None:
    """As a crash or a redeploy would: a fresh process and consumer, the same name."""
    for worker in workers:
        ray.kill(worker, no_restart=False)
    wait_until_back(workers)


def test_an_unreadable_batch_stops_its_partition_visibly_until_a_restart(
    stack, stack_settings, api, demo_data
):
    topic = ITEM_TOPICS[Modality.FACE]
    faces = demo_data.held_out[Modality.FACE]
    run = uuid.uuid4().hex[:8]
    stuck = [f"{run}/stuck-{i}" for i in range(STUCK_ITEMS)]
    after = [f"{run}/after-{i}" for i in range(AFTER_ITEMS)]
    other = [f"{run}/other-{i}" for i in range(OTHER_ITEMS)]
    face = {k: faces[i % len(faces)].read_bytes() for i, k in enumerate(stuck + after + other)}
    size_before = stack.index_size(Modality.FACE)
    workers = list(stack.workers)

    # Ingest is stopped while the batch is made unreadable, so it meets it only that way.
    ray.get([w.stop.remote() for w in workers])
    broken = TopicPartition(topic, STUCK_PARTITION)
    first = _send(stack_settings, topic, STUCK_PARTITION, stuck, face.get)
    original = _unreadable(stack_settings, broken, first)
    _send(stack_settings, topic, STUCK_PARTITION, after, face.get)
    _send(stack_settings, topic, OTHER_PARTITION, other, face.get)
    try:
        _restart(workers)
        started = time.monotonic()
        body = _readiness_once_stopped(api, started + VISIBLE_WITHIN_S)
        print(f"/readyz named the stopped partition {time.monotonic() - started:.1f} s after start")
        assert body["checks"]["ingest_reading"] is False
        assert body["ready"] is False
        [report] = body["stopped_partitions"]
        assert (report["topic"], report["partition"], report["offset"]) == (
            topic,
            STUCK_PARTITION,
            first,
        )
        assert "UnsupportedCodecError" in report["error"]
        assert "compression type: 5" in report["error"]

        # The other partitions go on; nothing of the stopped one is indexed past the batch.
        stack.wait_indexed({Modality.FACE: other}, RESUME_TIMEOUT_S)
        assert stack.missing(Modality.FACE, stuck + after) == stuck + after
        samples = scrape(api)
        labels = {"topic": topic, "partition": str(STUCK_PARTITION)}
        labels |= {"actor": report["actor"], "error": "UnsupportedCodecError"}
        assert value(samples, "twinstream_ingest_partition_stopped", **labels) == 1

        # Stopped is quiet: no thread spins on the batch.
        actor = ray.get_actor(report["actor"], namespace="twinstream")
        pid = ray.get(actor.__ray_call__.remote(lambda _: os.getpid()))
        cpu_before = _cpu_seconds(pid)
        time.sleep(CPU_WINDOW_S)
        share = (_cpu_seconds(pid) - cpu_before) / CPU_WINDOW_S
        print(f"the ingest actor used {share:.1%} of a core while stopped")
        assert share < MAX_CORE_SHARE

        stopping = time.monotonic()
        ray.get([w.stop.remote() for w in workers], timeout=STOP_TIMEOUT_S + 10)
        print(f"a stop took {time.monotonic() - stopping:.1f} s")
        assert time.monotonic() - stopping < STOP_TIMEOUT_S
    finally:
        _restore(stack_settings, broken, first, original)
        _restart(workers)

    # Readable again and restarted: it resumes at the batch, each item exactly once.
    stack.wait_indexed({Modality.FACE: stuck + after}, RESUME_TIMEOUT_S)
    assert stack.index_size(Modality.FACE) == size_before + len(face)
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    while (response := api.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, response.json()
        time.sleep(0.5)
    assert response.json()["stopped_partitions"] == []
    assert response.json()["unheld_partitions"] == []
    delete_and_wait(stack, stack_settings, {Modality.FACE: list(face)})
    assert stack.index_size(Modality.FACE) == size_before
