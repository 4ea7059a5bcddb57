"""The Kafka side of the contract: modalities, topic names and header names.

Everything that crosses the broker is named here once, so a producer, the ingest
actors and the dead-letter path can never disagree on a spelling.
"""

from enum import StrEnum


class Modality(StrEnum):
    """What an item is: a face photo or an audio clip."""

    FACE = "face"
    AUDIO = "audio"


ITEM_TOPICS: dict[Modality, str] = {
    Modality.FACE: "twinstream.face",
    Modality.AUDIO: "twinstream.audio",
}
PAIRS_TOPIC = "twinstream.pairs"
DLQ_TOPIC = "twinstream.dlq"


class Header(StrEnum):
    """Kafka header keys; values are UTF-8 bytes on the wire."""

    MODALITY = "modality"
    LABEL = "label"
    CONTENT_TYPE = "content-type"
    PRODUCED_AT = "produced-at"
    ERROR = "error"
    SOURCE_TOPIC = "source-topic"
    SOURCE_PARTITION = "source-partition"
    SOURCE_OFFSET = "source-offset"


def topic_modality(topic: str) -> Modality:
    """The modality an item topic carries; KeyError for any other topic."""
    return {t: m for m, t in ITEM_TOPICS.items()}[topic]
