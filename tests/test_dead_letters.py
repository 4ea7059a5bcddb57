"""Bad input goes to the dead-letter topic with its reason; good items around it are indexed.

Everything goes to partition 0 of its topic, bad items between good ones, so the
good items after a poison item prove that it never blocks its partition.
"""

import io
import time
import uuid
import wave

from PIL import Image

from pipeline.kafka.clients import header_value, headers, make_consumer, make_producer
from schemas.items import DLQ_TOPIC, ITEM_TOPICS, Modality
from tests.fixtures_stack import delete_and_wait

DLQ_WAIT_S = 120
PARTITION = 0
# Far over the stack's item limit, under the 64 MiB the broker and topics carry.
HUGE_BYTES = 50 * 1024 * 1024


def _jpeg(face_pgm: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(face_pgm)).save(out, format="JPEG")
    return out.getvalue()


def _grey_png() -> bytes:
    """A good image with no face in it."""
    out = io.BytesIO()
    Image.new("L", (160, 120), 128).save(out, format="PNG")
    return out.getvalue()


def _empty_wav() -> bytes:
    """A well-formed WAV header with no samples at all."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
    return out.getvalue()


def _dead_letters(settings, wanted: set[bytes]) -> dict[bytes, list]:
    consumer = make_consumer(settings, group_id=None)
    consumer.subscribe([DLQ_TOPIC])
    found: dict[bytes, list] = {}
    deadline = time.monotonic() + DLQ_WAIT_S
    try:
        while not wanted <= set(found) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key in wanted:
                        found[record.key] = record
    finally:
        consumer.close()
    return found


def test_bad_items_are_dead_lettered_and_good_ones_indexed(stack, stack_settings, demo_data):
    run = uuid.uuid4().hex[:8]
    face = demo_data.held_out[Modality.FACE][0].read_bytes()
    wav = demo_data.held_out[Modality.AUDIO][0].read_bytes()
    face_topic, audio_topic = ITEM_TOPICS[Modality.FACE], ITEM_TOPICS[Modality.AUDIO]
    face_headers = headers(modality="face", label="s1")
    audio_headers = headers(modality="audio", label="allison")
    bad = {
        f"{run}/zero-bytes": (face_topic, b"", face_headers, "empty value"),
        f"{run}/truncated-png": (face_topic, _png(face)[:200], face_headers, "image"),
        f"{run}/no-face": (face_topic, _grey_png(), face_headers, "no face found"),
        f"{run}/jpeg-on-audio": (audio_topic, _jpeg(face), audio_headers, "WAV"),
        f"{run}/truncated-wav": (audio_topic, wav[: len(wav) // 2], audio_headers, "truncated"),
        f"{run}/zero-sample-wav": (audio_topic, _empty_wav(), audio_headers, "no audio samples"),
        f"{run}/no-headers": (face_topic, face, [], "missing header"),
        f"{run}/wrong-modality": (face_topic, face, audio_headers, "does not match"),
        f"{run}/oversized": (face_topic, face * 200, face_headers, "over the limit"),
        f"{run}/50-mb": (face_topic, bytes(HUGE_BYTES), face_headers, "over the limit"),
    }
    non_utf8_key = b"\xff\xfe-not-utf8-" + run.encode()
    good = {
        Modality.FACE: [f"{run}/good-face-{i}" for i in range(3)],
        Modality.AUDIO: [f"{run}/good-audio-{i}" for i in range(3)],
    }
    good_values = {Modality.FACE: (face, face_headers), Modality.AUDIO: (wav, audio_headers)}
    producer = make_producer(stack_settings)

    def send_good(modality: Modality, index: int) -> None:
        value, hdrs = good_values[modality]
        key = good[modality][index].encode()
        producer.send(
            ITEM_TOPICS[modality], key=key, value=value, headers=hdrs, partition=PARTITION
        )

    for modality in Modality:
        send_good(modality, 0)
    for key, (topic, value, hdrs, _) in bad.items():
        producer.send(topic, key=key.encode(), value=value, headers=hdrs, partition=PARTITION)
    producer.send(
        face_topic, key=non_utf8_key, value=face, headers=face_headers, partition=PARTITION
    )
    for modality in Modality:
        for index in (1, 2):
            send_good(modality, index)
    producer.flush()

    stack.wait_indexed(good, timeout_s=120)
    wanted = {k.encode() for k in bad} | {non_utf8_key}
    letters = _dead_letters(stack_settings, wanted)
    assert set(letters) == wanted
    for key, (topic, value, _, reason) in bad.items():
        record = letters[key.encode()]
        assert record.value == value, key
        assert reason.lower() in header_value(record.headers, "error").lower(), key
        assert header_value(record.headers, "source-topic") == topic
        assert int(header_value(record.headers, "source-offset")) >= 0
        assert header_value(record.headers, "source-partition") == str(PARTITION)
    assert "UTF-8" in header_value(letters[non_utf8_key].headers, "error")

    producer.close()
    # Tombstones delete: the good items leave the index again.
    delete_and_wait(stack, stack_settings, good)


def _png(face_pgm: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(face_pgm)).save(out, format="PNG")
    return out.getvalue()
