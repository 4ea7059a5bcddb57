"""The single way from (modality, payload bytes) to model input.

Ingest actors, the HTTP API and the CLI all decode through `decode`, so an item
indexed from Kafka and the same file posted as a query become identical arrays.
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from pipeline.decode.audio import AUDIO_SHAPE, decode_audio
from pipeline.decode.image import FACE_SHAPE, decode_face
from schemas.items import Modality

DECODERS: Mapping[Modality, Callable[[bytes], np.ndarray]] = MappingProxyType(
    {Modality.FACE: decode_face, Modality.AUDIO: decode_audio}
)
# What each decoder returns (float32), i.e. what each modality's encoder takes per item.
INPUT_SHAPES: Mapping[Modality, tuple[int, ...]] = MappingProxyType(
    {Modality.FACE: FACE_SHAPE, Modality.AUDIO: AUDIO_SHAPE}
)


def decode(modality: Modality, data: bytes) -> np.ndarray:
    """Model input for one payload; raises DecodeError when the bytes are unusable."""
    return DECODERS[modality](data)
