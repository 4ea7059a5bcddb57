"""One poll's records applied as if one at a time, in log order, with the real decoders."""

import io

import numpy as np
import pytest
from kafka.consumer.fetcher import ConsumerRecord
from PIL import Image

from pipeline.data.orl import iter_orl
from pipeline.decode import DecodeError
from pipeline.embed.config import ENCODERS, FROM_SCRATCH_FACE
from pipeline.embed.encoders import build_encoder
from pipeline.embed.model import EmbeddingModel
from pipeline.ingest.batch import parse_poll
from pipeline.inputs import FACE_FRAME, decode
from pipeline.kafka.clients import headers
from schemas.items import ITEM_TOPICS, Modality

FACE_TOPIC = ITEM_TOPICS[Modality.FACE]


def record(offset: int, key: bytes, value: bytes | None, label: str = "s1", partition: int = 0):
    return ConsumerRecord(
        topic=FACE_TOPIC,
        partition=partition,
        leader_epoch=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        headers=headers(modality="face", label=label),
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value or b""),
        serialized_header_size=0,
    )


@pytest.fixture(scope="module")
def faces() -> list[bytes]:
    return [item.read_bytes() for item in list(iter_orl())[:3]]


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    return EmbeddingModel(build_encoder(ENCODERS[Modality.FACE]), "face-v0", 0.5)


def run(records, model, tmp_path):
    """Consumed from offset 0 of every partition, embedded for one model version."""
    positions = {(FACE_TOPIC, p): 0 for p in range(2)}
    inputs = {modality: {model.config.input} for modality in Modality}
    result = parse_poll(records, positions, 1 << 20, inputs)
    for batch in result.batches.values():
        batch.embed_for([model])
    return result


def test_last_operation_per_id_wins(faces, model, tmp_path):
    result = run(
        [
            record(0, b"a", faces[0], label="old"),
            record(1, b"b", faces[1]),
            record(2, b"a", faces[2], label="new"),
            record(3, b"b", None),
        ],
        model,
        tmp_path,
    )
    update = result.batches[Modality.FACE].update
    assert update.upsert_ids == ["a"] and update.labels == ["new"]
    assert update.upsert_positions == [(0, 2)]
    assert update.delete_ids == ["b"] and update.delete_positions == [(0, 3)]
    assert update.vectors["face-v0"].shape == (1, model.embedding_dim)
    assert [item.item_id for item in result.items] == ["a"]
    assert result.payloads[result.items[0].payload_sha256] == faces[2]
    assert result.items[0].source_offset == 2


def test_a_bad_version_is_rejected_and_the_good_one_before_it_stands(faces, model, tmp_path):
    result = run([record(0, b"a", faces[0]), record(1, b"a", b"not an image")], model, tmp_path)
    assert result.batches[Modality.FACE].update.upsert_ids == ["a"]
    [(rejected, reason)] = result.rejected
    assert rejected.offset == 1 and reason


def test_offsets_move_past_every_record_including_rejected_ones(faces, model, tmp_path):
    result = run(
        [
            record(4, b"a", faces[0], partition=0),
            record(9, b"b", b"", partition=1),
            record(5, b"c", faces[1], partition=0),
        ],
        model,
        tmp_path,
    )
    update = result.batches[Modality.FACE].update
    assert update.start_offsets == {0: 0, 1: 0} and update.offsets == {0: 6, 1: 10}
    assert [r.key for r, _ in result.rejected] == [b"b"]
    assert result.records == 3


def test_a_model_added_after_the_batch_was_read_gets_it_in_its_own_input(faces, model, tmp_path):
    """A switch to a model that takes another input (an old face model on ORL frames, here)
    starts while a batch is in flight: the batch is decoded for it then, and an item that
    cannot become its input sends the batch back to be read again."""
    result = run([record(0, b"a", faces[0]), record(1, b"b", faces[1])], model, tmp_path)
    batch = result.batches[Modality.FACE]
    framed = EmbeddingModel(build_encoder(FROM_SCRATCH_FACE), "face-frames", 0.5)
    batch.embed_for([model, framed])
    assert batch.update.vectors["face-frames"].shape == (2, framed.embedding_dim)
    np.testing.assert_array_equal(
        batch.features[FACE_FRAME], np.stack([decode(FACE_FRAME, f) for f in faces[:2]])
    )

    no_face = io.BytesIO()
    Image.new("L", (120, 120), 128).save(no_face, "PNG")
    inputs = {modality: {FACE_FRAME} for modality in Modality}
    frames_only = parse_poll(
        [record(0, b"c", no_face.getvalue())], {(FACE_TOPIC, 0): 0}, 1 << 20, inputs
    )
    with pytest.raises(DecodeError, match="no face found"):
        frames_only.batches[Modality.FACE].embed_for([model])
