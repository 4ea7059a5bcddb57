"""Faces placed in larger frames: the ORL shots as a camera frame or a photo holds a face.

Each shot is scaled (1–1.5×) and pasted at a random place into a frame `FRAME_FACTOR` times
its size on each side, over a smooth random background, then saved as JPEG. Seeded by the
item id, so every run and machine makes the same frames; made at run time, never stored.
"""

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image

from pipeline.data.orl import OrlFace, iter_orl

# Frame side over the shot's side: the "1.8× larger on each side".
FRAME_FACTOR = 1.8
SCALES = (1.0, 1.5)
JPEG_QUALITY = 90


def framed_face(
    shot: bytes, item_id: str, seed: int = 0
) -> tuple[bytes, tuple[int, int, int, int]]:
    """A JPEG frame holding `shot`, and where the shot went (left, top, width, height)."""
    rng = np.random.default_rng([seed, zlib.crc32(item_id.encode())])
    face = Image.open(io.BytesIO(shot)).convert("L")
    width, height = round(FRAME_FACTOR * face.width), round(FRAME_FACTOR * face.height)
    scale = rng.uniform(*SCALES)
    face = face.resize((round(scale * face.width), round(scale * face.height)))
    frame = _background(rng, width + face.width, height + face.height)
    frame = frame.resize((round(scale * width), round(scale * height)))
    left = int(rng.integers(0, frame.width - face.width + 1))
    top = int(rng.integers(0, frame.height - face.height + 1))
    frame.paste(face, (left, top))
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), (left, top, face.width, face.height)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth grey clutter: coarse noise scaled up, so nothing in it looks like a face."""
    coarse = rng.uniform(40, 215, size=(max(height // 24, 2), max(width // 24, 2)))
    small = Image.fromarray(coarse.astype(np.uint8))
    return small.resize((width, height), Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class FramedFace(OrlFace):
    """An ORL shot as `framed_face` places it in a larger frame."""

    def read_bytes(self) -> bytes:
        return framed_face(super().read_bytes(), self.id)[0]


def iter_framed_orl() -> Iterator[FramedFace]:
    """Every ORL shot, framed; ids, labels and groups as `iter_orl` gives them."""
    for item in iter_orl():
        yield FramedFace(**{f.name: getattr(item, f.name) for f in fields(item)})
