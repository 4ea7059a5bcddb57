"""The face front end on real faces: found anywhere in a frame, aligned, boxed; refused when
there is none."""

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.framed import framed_face
from pipeline.data.orl import iter_orl
from pipeline.decode import DecodeError
from pipeline.detect.faces import NoFaceError
from pipeline.embed.config import ENCODERS
from pipeline.embed.encoders import initial_encoder
from pipeline.embed.model import EmbeddingModel
from pipeline.inputs import FACE_CHIP, decode, decode_detailed
from schemas.items import Modality


def encode(image: Image.Image, image_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def orl():
    return list(iter_orl())


def test_every_orl_shot_has_its_face_found_and_aligned(orl):
    for item in orl:
        decoded = decode_detailed(FACE_CHIP, item.read_bytes())
        assert decoded.x.shape == (3, 150, 150) and decoded.x.dtype == np.float32
        assert decoded.faces_found == 1, item.id
        box = decoded.face
        # ORL shots are 92×112 and the face fills most of it.
        assert 45 <= box.width <= 92 and box.left >= 0 and box.left + box.width <= 92, item.id


def test_a_face_anywhere_in_a_larger_frame_aligns_as_the_cropped_shot(orl):
    """The same chip, wherever the face sits and at whatever scale: what lets a camera frame
    find the shot it was taken from."""
    for item in orl[::20]:
        shot = item.read_bytes()
        frame, (left, top, width, _) = framed_face(shot, item.id)
        cropped, framed = decode_detailed(FACE_CHIP, shot), decode_detailed(FACE_CHIP, frame)
        scale = width / 92
        box, was = framed.face, cropped.face
        # The detector's box is centred where the cropped shot's was (its size moves in the
        # steps of the detector's image pyramid).
        expected = (
            left + (was.left + was.width / 2) * scale,
            top + (was.top + was.height / 2) * scale,
        )
        centre = (box.left + box.width / 2, box.top + box.height / 2)
        assert np.hypot(*np.subtract(centre, expected)) <= 0.1 * width, item.id
        slack = 0.1 * width
        assert left - slack <= box.left and box.left + box.width <= left + width + slack, item.id
        # Inside the face (the chip's centre), the two chips agree to a few grey levels.
        centre = (slice(None), slice(40, 110), slice(40, 110))
        assert np.abs(framed.x[centre] - cropped.x[centre]).mean() < 0.05, item.id


def test_the_largest_of_several_faces_is_used_and_counted(orl):
    small = Image.open(io.BytesIO(orl[0].read_bytes()))
    large = Image.open(io.BytesIO(orl[15].read_bytes())).resize((138, 168))
    frame = Image.new("L", (400, 220), 128)
    frame.paste(small, (10, 40))
    frame.paste(large, (230, 20))
    decoded = decode_detailed(FACE_CHIP, encode(frame))
    assert decoded.faces_found == 2
    assert decoded.face.left >= 230
    # The chip is the large face's, not the small one's.
    large_alone, small_alone = decode(FACE_CHIP, encode(large)), decode(FACE_CHIP, encode(small))
    centre = (slice(None), slice(40, 110), slice(40, 110))
    to_large = np.abs(decoded.x[centre] - large_alone[centre]).mean()
    assert to_large < 0.5 * np.abs(decoded.x[centre] - small_alone[centre]).mean()


def test_the_box_is_given_in_the_upright_photo_of_an_exif_rotated_jpeg(orl):
    shot = Image.open(io.BytesIO(orl[3].read_bytes())).convert("RGB")
    frame = Image.new("RGB", (300, 200), (90, 90, 90))
    frame.paste(shot, (180, 50))
    upright = decode_detailed(FACE_CHIP, encode(frame, "JPEG", quality=95))
    # Stored rotated; EXIF orientation 6 tells a viewer to turn it back upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = frame.transpose(Image.Transpose.ROTATE_90)
    rotated = decode_detailed(FACE_CHIP, encode(stored, "JPEG", quality=95, exif=exif))
    assert abs(rotated.face.left - upright.face.left) <= 3
    assert abs(rotated.face.top - upright.face.top) <= 3


def test_a_large_photo_is_searched_scaled_down_and_boxed_in_its_own_pixels(orl):
    shot = Image.open(io.BytesIO(orl[7].read_bytes())).resize((460, 560))
    frame = Image.new("L", (3000, 2000), 100)
    frame.paste(shot, (2100, 900))
    decoded = decode_detailed(FACE_CHIP, encode(frame, "JPEG", quality=90))
    box = decoded.face
    assert 2100 <= box.left < 2100 + 460 and 900 <= box.top < 900 + 560
    assert 200 <= box.width <= 460


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (200, 200), 128),
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320), dtype=np.uint8)),
    ],
    ids=["flat grey", "noise"],
)
def test_an_image_without_a_face_is_refused_with_the_reason(image):
    with pytest.raises(NoFaceError, match="no face found"):
        decode(FACE_CHIP, encode(image))
    assert issubclass(NoFaceError, DecodeError)  # so ingest dead-letters it, the API says 422


@pytest.fixture(scope="module")
def real_photos(tmp_path_factory) -> Path:
    """The face_recognition 1.3.0 sdist's test photographs (Obama ×6, Biden ×1): fetched from
    PyPI at test time, never committed (they are copyrighted stills)."""
    folder = tmp_path_factory.mktemp("face_recognition")
    sdist = ["face_recognition==1.3.0", "--no-deps", "--no-binary", ":all:", "-d", str(folder)]
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", *sdist],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if fetched.returncode != 0:
        pytest.skip(f"the face_recognition sdist could not be fetched: {fetched.stderr[-300:]}")
    with tarfile.open(next(folder.glob("*.tar.gz"))) as sdist:
        members = [m for m in sdist.getmembers() if "/tests/test_images/" in m.name]
        sdist.extractall(folder, members=members, filter="data")
    return next(folder.glob("*/tests/test_images"))


def test_real_photographs_find_one_face_each_and_tell_the_two_people_apart(real_photos):
    """A smoke test on real photos (too few for an EER): dlib's ResNet behind the front end, as
    training starts from it, puts every photo of one person nearer each other than the other."""
    model = EmbeddingModel(initial_encoder(ENCODERS[Modality.FACE]), "pretrained", 0.5)
    photos = sorted(p for p in real_photos.iterdir() if p.suffix in {".jpg", ".png"})
    decoded = {p.stem: decode_detailed(FACE_CHIP, p.read_bytes()) for p in photos}
    assert len(decoded) == 7 and {d.faces_found for d in decoded.values()} == {1}
    vectors = {name: model.embed(d.x[np.newaxis])[0] for name, d in decoded.items()}
    obama = [name for name in vectors if name != "biden"]
    same = [np.linalg.norm(vectors[a] - vectors[b]) for a in obama for b in obama if a < b]
    other = [np.linalg.norm(vectors[a] - vectors["biden"]) for a in obama]
    assert max(same) < min(other)
