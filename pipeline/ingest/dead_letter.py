"""Publishing rejected records to the dead-letter topic, unchanged, with the reason; and reading
the newest of them back, without their bytes, for the API and the console."""

from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.producer.future import FutureRecordMetadata

from pipeline.kafka.clients import header_value, headers, make_consumer
from pipeline.kafka.ranges import read_ranges
from pipeline.settings import Settings
from schemas.items import DLQ_TOPIC, Header

# A read of the newest dead letters that receives nothing for this long gives up.
READ_TIMEOUT_S = 10.0


def dead_letter(
    producer: KafkaProducer, record: ConsumerRecord, reason: str
) -> FutureRecordMetadata:
    """Keep the original key, value and headers so the item can be fixed and replayed as is."""
    provenance = headers(
        error=reason,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
    )
    reserved = {name for name, _ in provenance}
    original = [(k, v) for k, v in record.headers or [] if k not in reserved]
    return producer.send(
        DLQ_TOPIC, key=record.key, value=record.value, headers=original + provenance
    )


@dataclass(frozen=True)
class DeadLetter:
    """A dead-letter record as the headers `dead_letter` wrote describe it; never its bytes."""

    key: str | None
    modality: str | None
    reason: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    dead_lettered_at: datetime
    partition: int
    offset: int


def _text(record: ConsumerRecord, name: str) -> str | None:
    try:
        return header_value(record.headers, name)
    except ValueError:
        # A producer's garbled header must not hide the other dead letters.
        return None


def _number(record: ConsumerRecord, name: str) -> int | None:
    text = _text(record, name)
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def _described(record: ConsumerRecord) -> DeadLetter:
    return DeadLetter(
        key=None if record.key is None else record.key.decode(errors="replace"),
        modality=_text(record, Header.MODALITY),
        reason=_text(record, Header.ERROR),
        source_topic=_text(record, Header.SOURCE_TOPIC),
        source_partition=_number(record, Header.SOURCE_PARTITION),
        source_offset=_number(record, Header.SOURCE_OFFSET),
        dead_lettered_at=datetime.fromtimestamp(record.timestamp / 1000, tz=UTC),
        partition=record.partition,
        offset=record.offset,
    )


def newest_dead_letters(settings: Settings, limit: int) -> list[DeadLetter]:
    """The newest `limit` dead letters of every DLQ partition together, newest first.

    A short-lived consumer without a group reads each partition's last `limit` records only, so
    the cost does not grow with the topic. Blocking: call it off the event loop.
    """
    consumer = make_consumer(settings, group_id=None)
    try:
        partitions = [
            TopicPartition(DLQ_TOPIC, p) for p in consumer.partitions_for_topic(DLQ_TOPIC) or ()
        ]
        if not partitions:
            return []
        starts = consumer.beginning_offsets(partitions)
        ends = consumer.end_offsets(partitions)
        ranges = {tp: (max(starts[tp], ends[tp] - limit), ends[tp]) for tp in partitions}
        found = [_described(r) for r in read_ranges(consumer, ranges, READ_TIMEOUT_S)]
        found.sort(key=lambda d: (d.dead_lettered_at, d.partition, d.offset), reverse=True)
        return found[:limit]
    finally:
        consumer.close()
