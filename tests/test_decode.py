"""Decoders on the real demo files, and on broken copies of them."""

import io
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageFile

from pipeline.data import ASTERISK_ROOT, iter_orl
from pipeline.decode import DecodeError
from pipeline.decode.audio import AUDIO_SHAPE, SAMPLE_RATE
from pipeline.decode.image import FACE_SHAPE
from pipeline.inputs import AUDIO_MEL, FACE_CHIP, FACE_FRAME, INPUTS, LEGACY_INPUTS, decode
from schemas.items import Modality

CARLO = ASTERISK_ROOT / "it_IT_m_Carlo"


def encode_image(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def encode_wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims the given size over a few bytes of pixel data (a bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(bytes(1 + width) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


@pytest.fixture(scope="module")
def face_pgm() -> bytes:
    return next(iter_orl()).read_bytes()


@pytest.fixture(scope="module")
def face_image(face_pgm) -> Image.Image:
    return Image.open(io.BytesIO(face_pgm))


@pytest.fixture(scope="module")
def clip_wav() -> bytes:
    return (CARLO / "digits" / "7.wav").read_bytes()


# --- faces -------------------------------------------------------------------------


def test_every_input_names_its_modality_and_shape():
    shapes = {name: (spec.modality, spec.shape) for name, spec in INPUTS.items()}
    assert shapes[FACE_FRAME] == (Modality.FACE, (1, 112, 92))
    assert shapes[FACE_CHIP] == (Modality.FACE, (3, 150, 150))
    assert shapes[AUDIO_MEL] == (Modality.AUDIO, AUDIO_SHAPE)
    assert set(LEGACY_INPUTS) == set(Modality)


def test_every_orl_face_decodes_to_unit_grayscale():
    for item in iter_orl():
        face = decode(FACE_FRAME, item.read_bytes())
        assert face.shape == FACE_SHAPE
        assert face.dtype == np.float32
        assert face.min() >= 0.0 and face.max() <= 1.0
        assert face.std() > 0.05, item.id


def test_pgm_decodes_to_its_own_pixels(face_pgm, face_image):
    expected = np.asarray(face_image, dtype=np.float32) / 255.0
    np.testing.assert_array_equal(decode(FACE_FRAME, face_pgm)[0], expected)


def test_faces_in_the_frame_skip_pillow_and_keep_their_pixels(monkeypatch):
    faces = [item.read_bytes() for item in iter_orl()]
    expected = [np.asarray(Image.open(io.BytesIO(f)), dtype=np.float32) / 255.0 for f in faces]

    def no_pillow(*args, **kwargs):
        raise AssertionError("Pillow opened a PGM already in the face frame")

    monkeypatch.setattr(Image, "open", no_pillow)
    for face, pixels in zip(faces, expected, strict=True):
        np.testing.assert_array_equal(decode(FACE_FRAME, face)[0], pixels)
    # A header comment is legal PGM, but only Pillow's parser reads it.
    with pytest.raises(DecodeError, match="Pillow opened"):
        decode(FACE_FRAME, faces[0].replace(b"P5\n", b"P5\n# a comment\n", 1))


def test_png_and_jpeg_reencodings_match_the_pgm(face_pgm, face_image):
    original = decode(FACE_FRAME, face_pgm)
    png = decode(FACE_FRAME, encode_image(face_image, "PNG"))
    jpeg = decode(FACE_FRAME, encode_image(face_image, "JPEG", quality=95))
    np.testing.assert_array_equal(png, original)
    assert np.abs(jpeg - original).mean() < 0.01


def test_colour_and_larger_photos_are_brought_to_the_face_frame(face_pgm, face_image):
    original = decode(FACE_FRAME, face_pgm)
    big_rgb = face_image.convert("RGB").resize((276, 336), Image.Resampling.BICUBIC)
    scaled = decode(FACE_FRAME, encode_image(big_rgb, "JPEG", quality=95))
    assert scaled.shape == FACE_SHAPE
    assert np.abs(scaled - original).mean() < 0.03


def test_sixteen_bit_png_keeps_its_depth(face_pgm, face_image):
    wide = np.asarray(face_image, dtype=np.uint16) * 257
    decoded = decode(FACE_FRAME, encode_image(Image.fromarray(wide), "PNG"))
    np.testing.assert_allclose(decoded, decode(FACE_FRAME, face_pgm), atol=1e-6)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda pgm, png, jpeg, wav: b"", "empty"),
        (lambda pgm, png, jpeg, wav: np.random.default_rng(0).bytes(5000), "not a PNG"),
        (lambda pgm, png, jpeg, wav: png[: len(png) // 2], "truncated"),
        (lambda pgm, png, jpeg, wav: jpeg[: len(jpeg) // 2], "truncated"),
        (lambda pgm, png, jpeg, wav: pgm[: len(pgm) - 100], "truncated"),
        (lambda pgm, png, jpeg, wav: wav, "not a PNG, JPEG or PGM"),
        (lambda pgm, png, jpeg, wav: png_header_only(100_000, 100_000), "too large"),
        (lambda pgm, png, jpeg, wav: png_header_only(9000, 9000), "exceed the limit"),
        (lambda pgm, png, jpeg, wav: png_header_only(100_000, 10), "exceed the limit"),
        (lambda pgm, png, jpeg, wav: png_header_only(3, 3), "below 8 px"),
    ],
    ids=[
        "empty",
        "random",
        "half-png",
        "half-jpeg",
        "short-pgm",
        "wav",
        "bomb",
        "huge",
        "long",
        "tiny",
    ],
)
def test_bad_images_raise_decode_error(make, reason, face_pgm, face_image, clip_wav):
    data = make(
        face_pgm,
        encode_image(face_image, "PNG"),
        encode_image(face_image, "JPEG"),
        clip_wav,
    )
    with pytest.raises(DecodeError, match=reason):
        decode(FACE_FRAME, data)


def test_faces_refuse_to_run_with_truncated_images_allowed(monkeypatch, face_image):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    half_png = encode_image(face_image, "PNG")[:2000]
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        decode(FACE_FRAME, half_png)


# --- audio -------------------------------------------------------------------------


def test_wav_decodes_to_the_fixed_shape(clip_wav):
    features = decode(AUDIO_MEL, clip_wav)
    assert features.shape == AUDIO_SHAPE == (1, 64, features.shape[2])
    assert features.dtype == np.float32
    assert np.isfinite(features).all()


def test_long_prompt_is_cropped_to_the_same_shape():
    long_prompt = ASTERISK_ROOT / "en_US_f_Allison" / "demo-congrats.wav"
    assert sf.info(str(long_prompt)).duration > 20
    assert decode(AUDIO_MEL, long_prompt.read_bytes()).shape == AUDIO_SHAPE


def test_normalisation_ignores_the_padding(clip_wav):
    """A short clip is mostly zero padding; its own frames must still be standardised."""
    samples, _ = sf.read(io.BytesIO(clip_wav), dtype="float32")
    features = decode(AUDIO_MEL, clip_wav)[0]
    frames = features.shape[1]
    content = len(samples) / (4.0 * SAMPLE_RATE) * frames
    middle = features[:, round((frames - content) / 2) + 3 : round((frames + content) / 2) - 3]
    assert abs(float(middle.mean())) < 0.3
    assert 0.7 < float(middle.std()) < 1.3


@pytest.mark.parametrize("digit", ["1", "4", "8", "12", "19"])
def test_louder_noisier_copy_stays_closer_than_another_clip(digit):
    samples, rate = sf.read(CARLO / "digits" / f"{digit}.wav", dtype="float64")
    rms = float(np.sqrt(np.mean(samples**2)))
    noise = np.random.default_rng(int(digit)).normal(
        0.0, 2 * rms * 0.03, samples.shape
    )  # 30 dB SNR
    louder = encode_wav(np.clip(2 * samples + noise, -1.0, 1.0), rate)
    original = decode(AUDIO_MEL, (CARLO / "digits" / f"{digit}.wav").read_bytes())
    other = decode(AUDIO_MEL, (CARLO / "digits" / f"{int(digit) + 1}.wav").read_bytes())
    assert distance(decode(AUDIO_MEL, louder), original) < 0.3 * distance(other, original)


def test_sixteen_khz_stereo_copy_matches_the_original(clip_wav):
    samples, rate = sf.read(io.BytesIO(clip_wav), dtype="float64")
    upsampled = np.interp(
        np.arange(2 * len(samples)) / (2 * rate), np.arange(len(samples)) / rate, samples
    )
    stereo = encode_wav(np.stack([upsampled, 0.5 * upsampled], axis=1), 2 * rate)
    original = decode(AUDIO_MEL, clip_wav)
    other = decode(AUDIO_MEL, (CARLO / "digits" / "8.wav").read_bytes())
    assert distance(decode(AUDIO_MEL, stereo), original) < 0.25 * distance(other, original)


def test_streamed_wav_with_unknown_data_size_is_accepted(clip_wav):
    position = clip_wav.index(b"data") + 4
    streamed = clip_wav[:position] + struct.pack("<I", 0xFFFFFFFF) + clip_wav[position + 4 :]
    np.testing.assert_array_equal(decode(AUDIO_MEL, streamed), decode(AUDIO_MEL, clip_wav))


def test_digital_silence_decodes_to_flat_features():
    silence = decode(AUDIO_MEL, encode_wav(np.zeros(SAMPLE_RATE), SAMPLE_RATE))
    assert np.abs(silence).max() < 0.1


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda wav, jpeg: b"", "empty"),
        (lambda wav, jpeg: jpeg, "not a WAV"),
        (lambda wav, jpeg: wav[: len(wav) * 3 // 5], "truncated WAV: data chunk declares"),
        (lambda wav, jpeg: wav[:40], "no data chunk"),
        (lambda wav, jpeg: b"RIFF" + wav[4:44] + b"\x00" * 200, "truncated WAV"),
        (lambda wav, jpeg: encode_wav(np.zeros(0), SAMPLE_RATE), "no audio samples"),
        (lambda wav, jpeg: encode_wav(np.zeros(800), 1_000_000), "sample rate 1000000 Hz"),
        (lambda wav, jpeg: encode_wav(np.zeros(800), 100), "sample rate 100 Hz"),
        (lambda wav, jpeg: encode_wav(np.zeros((800, 12)), SAMPLE_RATE), "12 channels"),
        (lambda wav, jpeg: encode_wav(np.zeros(61 * SAMPLE_RATE), SAMPLE_RATE), "limit is 60 s"),
        (lambda wav, jpeg: encode_wav(np.full(800, np.nan), SAMPLE_RATE, "FLOAT"), "non-finite"),
    ],
    ids=[
        "empty",
        "jpeg",
        "truncated",
        "header-only",
        "short-data",
        "zero-samples",
        "rate-high",
        "rate-low",
        "channels",
        "too-long",
        "nan",
    ],
)
def test_bad_audio_raises_decode_error(make, reason, clip_wav, face_image):
    data = make(clip_wav, encode_image(face_image, "JPEG"))
    with pytest.raises(DecodeError, match=reason):
        decode(AUDIO_MEL, data)


def test_audio_wrapped_in_garbage_fields_never_escapes_as_another_error(clip_wav):
    """Random corruption of the format chunk must still end in DecodeError or a decode."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        corrupt = bytearray(clip_wav)
        for position in rng.integers(12, 44, size=3):
            corrupt[position] = rng.integers(0, 256)
        try:
            assert decode(AUDIO_MEL, bytes(corrupt)).shape == AUDIO_SHAPE
        except DecodeError as error:
            assert str(error)
