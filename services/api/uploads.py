"""Multipart uploads become the same `ItemRef` a JSON request carries.

The upload routes are a convenience for curl and browsers (`-F a=@face.png`);
turning each file into an `ItemRef` lets them share every check, the limits and
the query path with the JSON routes instead of growing a second one.
"""

import base64

from fastapi import UploadFile

from schemas.api import ItemRef
from services.api.problems import unprocessable


async def uploaded_ref(field: str, upload: UploadFile) -> ItemRef:
    data = await upload.read()
    if not data:
        raise unprocessable(f"file {field!r} is empty")
    return ItemRef(data=base64.b64encode(data).decode("ascii"))
