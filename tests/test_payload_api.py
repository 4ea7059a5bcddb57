"""Item bytes and the item list over HTTP, against the running stack: what the console shows."""

import io

from PIL import Image

from schemas.items import Modality


def test_a_face_payload_is_a_png_scaled_down_to_max_side(api, demo_data):
    face = demo_data.indexed[Modality.FACE][0]
    response = api.get(f"/v1/payloads/face/{face.id}", params={"max_side": 48})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    thumbnail = Image.open(io.BytesIO(response.content))
    original = Image.open(face.path)
    assert max(thumbnail.size) == 48
    # Scaled, not cropped: the aspect ratio of the 92×112 ORL shots holds.
    assert abs(thumbnail.width / thumbnail.height - original.width / original.height) < 0.05


def test_a_face_payload_without_max_side_is_full_size(api, demo_data):
    face = demo_data.indexed[Modality.FACE][1]
    response = api.get(f"/v1/payloads/face/{face.id}")
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == Image.open(face.path).size


def test_an_audio_payload_is_the_file_as_produced(api, demo_data):
    word = demo_data.indexed[Modality.AUDIO][0]
    response = api.get(f"/v1/payloads/audio/{word.id}", params={"max_side": 64})
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.content == word.path.read_bytes()


def test_payload_errors_are_problems(api, demo_data):
    unknown = api.get("/v1/payloads/face/orl/s99/1")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    face = demo_data.indexed[Modality.FACE][0]
    for bad in ("0", "100000", "big"):
        response = api.get(f"/v1/payloads/face/{face.id}", params={"max_side": bad})
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == "application/problem+json"


def test_items_are_listed_a_page_at_a_time_and_by_label(api, demo_data):
    first = api.get("/v1/items", params={"modality": "face", "limit": 7})
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 7 and page["total"] >= len(demo_data.indexed[Modality.FACE]) - 5
    ids = [item["id"] for item in page["items"]]
    assert ids == sorted(ids)
    second = api.get("/v1/items", params={"modality": "face", "limit": 7, "offset": 7}).json()
    assert not set(ids) & {item["id"] for item in second["items"]}
    s3 = api.get("/v1/items", params={"modality": "face", "label": "s3", "limit": 500}).json()
    expected = {f.id for f in demo_data.indexed[Modality.FACE] if f.label == "s3"}
    assert {item["id"] for item in s3["items"]} <= expected and s3["total"] == len(s3["items"])
    assert all(item["source"]["topic"] == "twinstream.face" for item in s3["items"])


def test_the_console_is_served_without_a_key(api):
    page = api.get("/ui", follow_redirects=True)
    assert page.status_code == 200 and "<title>twinstream console</title>" in page.text
    script = api.get("/ui/main.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
