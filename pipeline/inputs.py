"""The inputs a model can take, by name: the single way from payload bytes to model input.

Each encoder config names its input, so the preprocessing travels with the model artifact:
ingest actors, the HTTP API, training and the CLI all go through `decode`, so an item indexed
from Kafka and the same file posted as a query become identical arrays for the same model.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from pipeline.decode.audio import AUDIO_SHAPE, decode_audio
from pipeline.decode.image import FACE_SHAPE, decode_face, decode_photo
from pipeline.decode.speech import SPEECH_SHAPE, decode_speech
from pipeline.detect.faces import CHIP_SIZE, DETECT_MAX_SIDE, FaceBox, align_largest_face
from schemas.items import Modality


@dataclass(frozen=True)
class Decoded:
    """A model input, and where in the photo the face was (face front end only)."""

    x: np.ndarray
    face: FaceBox | None = None
    faces_found: int = 0


@dataclass(frozen=True)
class InputSpec:
    name: str
    modality: Modality
    # What `decoder` returns (float32): what the model takes per item.
    shape: tuple[int, ...]
    decoder: Callable[[bytes], Decoded]


def _face_frame(data: bytes) -> Decoded:
    return Decoded(decode_face(data))


def _face_chip(data: bytes) -> Decoded:
    rgb, scale = decode_photo(data, DETECT_MAX_SIDE)
    face = align_largest_face(rgb, scale)
    chip = face.chip.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    return Decoded(chip, face.box, face.faces_found)


def _audio_mel(data: bytes) -> Decoded:
    return Decoded(decode_audio(data))


def _speech(data: bytes) -> Decoded:
    return Decoded(decode_speech(data))


FACE_FRAME = "face-frame"
FACE_CHIP = "face-chip"
AUDIO_MEL = "audio-mel"
SPEECH = "speech-16k"
INPUTS: Mapping[str, InputSpec] = MappingProxyType(
    {
        # The whole image, grayscale, fitted to ORL's 112×92 frame: no face is looked for.
        FACE_FRAME: InputSpec(FACE_FRAME, Modality.FACE, FACE_SHAPE, _face_frame),
        # The largest face found, aligned by its landmarks (pipeline/detect/faces.py).
        FACE_CHIP: InputSpec(FACE_CHIP, Modality.FACE, (3, CHIP_SIZE, CHIP_SIZE), _face_chip),
        # 4 s of 8 kHz speech as a log-mel spectrogram (pipeline/decode/audio.py).
        AUDIO_MEL: InputSpec(AUDIO_MEL, Modality.AUDIO, AUDIO_SHAPE, _audio_mel),
        # Speech at any rate and length, silence trimmed, as windows of 16 kHz mel frames
        # spread over the voiced part (pipeline/decode/speech.py).
        SPEECH: InputSpec(SPEECH, Modality.AUDIO, SPEECH_SHAPE, _speech),
    }
)
# What models saved before configs named their input were trained on.
LEGACY_INPUTS: Mapping[Modality, str] = MappingProxyType(
    {Modality.FACE: FACE_FRAME, Modality.AUDIO: AUDIO_MEL}
)


def decode_detailed(input_name: str, data: bytes) -> Decoded:
    """Model input for one payload; raises DecodeError when the bytes are unusable."""
    return INPUTS[input_name].decoder(data)


def decode(input_name: str, data: bytes) -> np.ndarray:
    return decode_detailed(input_name, data).x
