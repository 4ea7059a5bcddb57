"""Turning a raw Kafka record into an item, or into the reason it is rejected.

Every check that can fail on producer input lives here, before any decoding,
so the dead-letter reason names the field that was wrong.
"""

from dataclasses import dataclass

from kafka.consumer.fetcher import ConsumerRecord

from pipeline.kafka.clients import header_value
from schemas.items import Header, Modality, topic_modality


class Rejected(ValueError):
    """An item that can never be indexed; its message is the dead-letter reason."""


@dataclass(frozen=True)
class ItemMessage:
    modality: Modality
    item_id: str
    # None is a tombstone: delete the item.
    payload: bytes | None
    label: str | None
    content_type: str | None
    produced_at_ms: int | None
    topic: str
    partition: int
    offset: int


def _header(record: ConsumerRecord, name: Header) -> str | None:
    try:
        return header_value(record.headers, name)
    except ValueError as error:
        raise Rejected(str(error)) from error


def parse_item(record: ConsumerRecord, max_bytes: int) -> ItemMessage:
    modality = topic_modality(record.topic)
    if not record.key:
        raise Rejected("missing key: the key must be the item id")
    try:
        item_id = record.key.decode()
    except UnicodeDecodeError as error:
        raise Rejected(f"key is not UTF-8: {record.key[:64]!r}") from error
    declared = _header(record, Header.MODALITY)
    if declared is None and record.value is not None:
        raise Rejected(f"missing header {Header.MODALITY!r} (expected {modality.value!r})")
    if declared is not None and declared != modality:
        raise Rejected(
            f"header {Header.MODALITY}={declared!r} does not match topic {record.topic!r}, "
            f"which carries {modality.value!r} items"
        )
    if record.value is not None and len(record.value) == 0:
        raise Rejected("empty value: send a null value (tombstone) to delete an item")
    if record.value is not None and len(record.value) > max_bytes:
        raise Rejected(f"item is {len(record.value)} bytes, over the limit of {max_bytes}")
    produced_at = _header(record, Header.PRODUCED_AT)
    if produced_at is not None and not produced_at.isdigit():
        raise Rejected(f"header {Header.PRODUCED_AT}={produced_at!r} is not ms since epoch")
    return ItemMessage(
        modality=modality,
        item_id=item_id,
        payload=record.value,
        label=_header(record, Header.LABEL) or None,
        content_type=_header(record, Header.CONTENT_TYPE),
        produced_at_ms=None if produced_at is None else int(produced_at),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )
