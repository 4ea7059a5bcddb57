"""Image bytes -> pixels: the ORL frame (grayscale float32 (1, 112, 92) in [0, 1]) for the
models trained on it, or a whole photo as RGB for the face front end (pipeline/detect).

The frame is that of the ORL faces, so the demo data passes through untouched and other
photos are brought to the same framing. Payloads come from outside (Kafka, HTTP), so every
way an image can be hostile or broken ends in `DecodeError`.
"""

import io
import re

import numpy as np
from PIL import Image, ImageFile, ImageOps

from pipeline.decode.errors import DecodeError

FACE_HEIGHT = 112
FACE_WIDTH = 92
FACE_SHAPE = (1, FACE_HEIGHT, FACE_WIDTH)
# The formats the contract promises (Pillow reads PGM through its PPM plugin); naming
# them keeps Pillow's other, less hardened parsers away from untrusted bytes.
ACCEPTED_FORMATS = ("PNG", "JPEG", "PPM")
# Checked on the header before any pixel is decoded: far above any real photo of a
# face, far below what could exhaust a worker's memory.
MAX_PIXELS = 64 * 1024 * 1024
MAX_SIDE = 16384
MIN_SIDE = 8
# Pillow keeps 16-bit grayscale (16-bit PNG, PGM with maxval > 255) in modes I and
# I;16*, scaled to this full range.
_WIDE_MAX = 65535.0
# A binary 8-bit PGM header with nothing between its fields but whitespace (no comments).
_PGM_HEADER = re.compile(rb"P5\s+(\d{1,5})\s+(\d{1,5})\s+(\d{1,5})\s")
_NATIVE_PGM = (FACE_WIDTH, FACE_HEIGHT, 255)


def decode_face(data: bytes) -> np.ndarray:
    """Decode a PNG, JPEG or PGM face; raises DecodeError for anything else."""
    native = _native_pgm(data)
    if native is not None:
        return native
    image = _open(data)
    try:
        # JPEG only: decode at the smallest DCT scale that still covers twice the target.
        image.draft("L", (2 * FACE_WIDTH, 2 * FACE_HEIGHT))
        image.load()
        gray = _grayscale(ImageOps.exif_transpose(image))
        framed = ImageOps.fit(gray, (FACE_WIDTH, FACE_HEIGHT), Image.Resampling.BILINEAR)
    except Exception as error:
        raise _corrupt(image, error) from None
    scale = _WIDE_MAX if framed.mode == "I" else 255.0
    pixels = np.asarray(framed, dtype=np.float32) / np.float32(scale)
    return np.clip(pixels, 0.0, 1.0)[np.newaxis]


def decode_photo(data: bytes, max_side: int) -> tuple[np.ndarray, float]:
    """RGB uint8 pixels (H, W, 3) of a PNG, JPEG or PGM, upright (EXIF orientation applied)
    and scaled down so that no side exceeds `max_side`; with the factor that maps these
    pixels' coordinates back to the original image's."""
    image = _open(data)
    original = max(image.size)
    try:
        # JPEG only: decode at the smallest DCT scale that still covers `max_side`.
        image.draft("RGB", (max_side, max_side))
        image.load()
        upright = ImageOps.exif_transpose(image)
        if _grayscale_mode(upright.mode):
            upright = _to_8bit(upright)
        rgb = upright.convert("RGB")
        if max(rgb.size) > max_side:
            rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    except Exception as error:
        raise _corrupt(image, error) from None
    return np.asarray(rgb, dtype=np.uint8), original / max(rgb.size)


def _open(data: bytes) -> Image.Image:
    """A lazily decoded image of an accepted format and size; DecodeError otherwise."""
    if not data:
        raise DecodeError("empty image payload")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-wide Pillow switch some libraries flip; with it on, a truncated
        # upload would decode as a half-grey face and be indexed without complaint.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to decode faces")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as error:
        raise DecodeError(f"image too large: {error}") from None
    except Exception as error:
        raise DecodeError(f"not a PNG, JPEG or PGM image ({error})") from None
    _check_size(image.size)
    return image


def _corrupt(image: Image.Image, error: Exception) -> DecodeError:
    # Pillow's parsers raise an open-ended set of exceptions (OSError, ValueError,
    # SyntaxError, struct.error, ...) on corrupt data; all mean "undecodable".
    return DecodeError(f"corrupt or truncated {image.format} image ({error})")


def _native_pgm(data: bytes) -> np.ndarray | None:
    """The pixels of an 8-bit PGM already in the face frame (every ORL face), else None.

    Pillow spends ~60 µs opening, fitting and converting such a file, several times
    what reading its bytes costs, and ingest and queries pay it on every face. Anything
    else, a truncated or overlong file included, takes Pillow's path and its errors.
    """
    header = _PGM_HEADER.match(data)
    if header is None or tuple(map(int, header.groups())) != _NATIVE_PGM:
        return None
    if len(data) - header.end() != FACE_WIDTH * FACE_HEIGHT:
        return None
    pixels = np.frombuffer(data, dtype=np.uint8, offset=header.end())
    return (pixels.astype(np.float32) / np.float32(255.0)).reshape(FACE_SHAPE)


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise DecodeError(
            f"image dimensions {width}x{height} exceed the limit "
            f"({MAX_SIDE} px a side, {MAX_PIXELS} pixels)"
        )
    if min(width, height) < MIN_SIDE:
        raise DecodeError(f"image dimensions {width}x{height} are below {MIN_SIDE} px a side")


def _grayscale_mode(mode: str) -> bool:
    """16-bit grayscale, which Pillow keeps in modes I and I;16*."""
    return mode == "I" or mode.startswith("I;16")


def _grayscale(image: Image.Image) -> Image.Image:
    """Mode L, or mode I (0..65535) for 16-bit sources, whose depth L would clip."""
    if _grayscale_mode(image.mode):
        return image.convert("I")
    return image.convert("L")


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit grayscale as mode L: RGB conversion would clip it instead of scaling."""
    pixels = np.asarray(image.convert("I"), dtype=np.float32) * (255.0 / _WIDE_MAX)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
