"""Record batches as the embedded broker keeps them on disk: found, read and rewritten in place.

The broker serves fetches from its segment files without checking them again, so a batch
rewritten here reaches every consumer as it is: how a test makes a batch no client can read
(Kafka's produce path refuses one), and puts it back afterwards.
"""

import struct
from dataclasses import dataclass
from pathlib import Path

import crc32c
from kafka import TopicPartition

# The v2 record batch header (KIP-98): base offset, length, leader epoch, magic, CRC,
# attributes...; the CRC covers everything from the attributes on.
_LENGTH_END = 12
_CRC_AT = 17
_ATTRIBUTES_AT = 21
_RECORDS_AT = 61
CODEC_MASK = 0x07


@dataclass(frozen=True)
class StoredBatch:
    segment: Path
    position: int
    data: bytes

    @property
    def base_offset(self) -> int:
        return struct.unpack_from(">q", self.data, 0)[0]

    @property
    def codec(self) -> int:
        return struct.unpack_from(">h", self.data, _ATTRIBUTES_AT)[0] & CODEC_MASK

    @property
    def records(self) -> bytes:
        """The records section, compressed as the codec says."""
        return self.data[_RECORDS_AT:]


def _batches(segment: Path) -> list[StoredBatch]:
    data = segment.read_bytes()
    batches, position = [], 0
    while position + _LENGTH_END <= len(data):
        length = struct.unpack_from(">i", data, position + 8)[0]
        end = position + _LENGTH_END + length
        batches.append(StoredBatch(segment, position, data[position:end]))
        position = end
    return batches


def stored_batch(data_dir: Path, tp: TopicPartition, offset: int) -> StoredBatch:
    """The batch holding `offset` (a batch's last offset is found from the next one's start)."""
    folder = data_dir / f"{tp.topic}-{tp.partition}"
    segments = sorted(folder.glob("*.log"), key=lambda p: int(p.stem))
    segment = [s for s in segments if int(s.stem) <= offset][-1]
    return [b for b in _batches(segment) if b.base_offset <= offset][-1]


def with_codec(batch: StoredBatch, codec: int) -> bytes:
    """The batch's bytes claiming another codec, with a CRC that matches them."""
    data = bytearray(batch.data)
    attributes = struct.unpack_from(">h", data, _ATTRIBUTES_AT)[0]
    struct.pack_into(">h", data, _ATTRIBUTES_AT, (attributes & ~CODEC_MASK) | codec)
    struct.pack_into(">I", data, _CRC_AT, crc32c.crc32c(bytes(data[_ATTRIBUTES_AT:])))
    return bytes(data)


def overwrite(batch: StoredBatch, data: bytes) -> None:
    """Rewrite the batch in its segment; the broker's next fetch serves these bytes."""
    assert len(data) == len(batch.data)
    with batch.segment.open("r+b") as segment:
        segment.seek(batch.position)
        segment.write(data)
