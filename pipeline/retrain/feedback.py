"""Labelled pair feedback from `twinstream.pairs`: the seed's own (X1, X2, Y) training form.

The topic is read from the beginning to its end offsets at the moment a run starts, so a run
learns from every pair fed back so far and its data counts say how many were usable.
"""

import json
import time
from dataclasses import dataclass

from kafka import TopicPartition

from pipeline.kafka.clients import make_consumer
from pipeline.settings import Settings
from schemas.items import PAIRS_TOPIC, Modality

READ_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PairFeedback:
    a: str
    b: str
    same: bool


def _parse(value: bytes | None, modality: Modality) -> PairFeedback | None:
    """The pair, if it is well-formed and about this modality; feedback is advisory, so a
    malformed message is skipped (and counted by the caller), never fatal."""
    try:
        body = json.loads(value or b"")
        if body["modality"] != modality.value or not isinstance(body["same"], bool):
            return None
        return PairFeedback(str(body["a"]), str(body["b"]), body["same"])
    except (ValueError, KeyError, TypeError):
        return None


def read_pairs(settings: Settings, modality: Modality) -> tuple[list[PairFeedback], int]:
    """(pairs about this modality, messages skipped as malformed or about another modality)."""
    consumer = make_consumer(settings, group_id=None, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(PAIRS_TOPIC, p) for p in consumer.partitions_for_topic(PAIRS_TOPIC) or ()
        ]
        if not partitions:
            return [], 0
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        pairs: list[PairFeedback] = []
        skipped = 0
        deadline = time.monotonic() + READ_TIMEOUT_S
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {PAIRS_TOPIC} to its end")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.offset >= ends[TopicPartition(record.topic, record.partition)]:
                        continue
                    pair = _parse(record.value, modality)
                    if pair is None:
                        skipped += 1
                    else:
                        pairs.append(pair)
        return pairs, skipped
    finally:
        consumer.close()
