"""Publishing rejected records to the dead-letter topic, unchanged, with the reason."""

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.producer.future import FutureRecordMetadata

from pipeline.kafka.clients import headers
from schemas.items import DLQ_TOPIC


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
