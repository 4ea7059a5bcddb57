"""Stored item bytes made fit for a browser: images scaled down and re-encoded, audio as is.

A search answer shows a thumbnail per match; sending the full photos would cost the page
far more than the answer itself, and the demo faces are PGM, which no browser draws.
"""

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from schemas.items import Modality
from services.api.problems import unprocessable

# What browsers draw as stored; anything else (PGM, TIFF, ...) is re-encoded as PNG.
BROWSER_IMAGES = frozenset({"image/png", "image/jpeg"})
JPEG_QUALITY = 85


def for_browser(
    modality: Modality, data: bytes, content_type: str, max_side: int | None
) -> tuple[bytes, str]:
    """The bytes and media type to send: audio unchanged; an image within `max_side` pixels
    on its longer side (never enlarged), PNG unless it was stored as JPEG."""
    if modality is Modality.AUDIO:
        return data, content_type
    if max_side is None and content_type in BROWSER_IMAGES:
        return data, content_type
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        detail = f"the stored item is not an image this service can read: {error}"
        raise unprocessable(detail) from error
    if max_side is not None:
        image.thumbnail((max_side, max_side))
    out = io.BytesIO()
    if content_type == "image/jpeg":
        image.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
        return out.getvalue(), "image/jpeg"
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    image.save(out, format="PNG")
    return out.getvalue(), "image/png"
