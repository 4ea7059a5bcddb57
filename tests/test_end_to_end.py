"""The whole path on real parts: data -> Kafka -> Ray ingest -> FAISS -> Ray Serve -> HTTP."""

import base64
import io
import random

import numpy as np
import soundfile
from PIL import Image

from pipeline.data.framed import framed_face
from pipeline.data.items import DataItem
from schemas.items import Modality


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def search(api, modality: Modality, item: dict, **extra) -> dict:
    response = api.post("/v1/search", json={"modality": modality, "item": item, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def similarity(api, modality: Modality, a: dict, b: dict) -> dict:
    response = api.post("/v1/similarity", json={"modality": modality, "a": a, "b": b})
    assert response.status_code == 200, response.text
    return response.json()


def top_label_rate(api, modality: Modality, items: list[DataItem]) -> float:
    hits = [
        search(api, modality, {"data": b64(item.read_bytes())}, k=1)["matches"][0]["label"]
        == item.label
        for item in items
    ]
    return sum(hits) / len(hits)


def test_held_out_faces_find_their_person(api, demo_data):
    held_out = demo_data.held_out[Modality.FACE]
    assert len(held_out) == 40
    assert top_label_rate(api, Modality.FACE, held_out) >= 0.9


def test_held_out_faces_in_larger_frames_find_their_person_and_say_where(api, demo_data):
    """A photo is not a face crop: the face is found wherever it is, and the answer says where."""
    for item in demo_data.held_out[Modality.FACE][::4]:
        frame, (left, top, width, height) = framed_face(item.read_bytes(), item.id)
        body = search(api, Modality.FACE, {"data": b64(frame)}, k=1)
        assert body["matches"][0]["label"] == item.label, item.id
        box = body["query_face"]["box"]
        assert body["query_face"]["faces_found"] == 1
        centre = (box["left"] + box["width"] / 2, box["top"] + box["height"] / 2)
        assert left < centre[0] < left + width and top < centre[1] < top + height, item.id


def test_a_photo_without_a_face_is_a_422_saying_so(api):
    grey = io.BytesIO()
    Image.new("L", (200, 160), 128).save(grey, "PNG")
    response = api.post(
        "/v1/search", json={"modality": "face", "item": {"data": b64(grey.getvalue())}}
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "no face found in the image"


def test_search_results_are_nearest_first_and_name_the_model(api, demo_data, stack):
    probe = demo_data.held_out[Modality.FACE][0]
    body = search(api, Modality.FACE, {"data": b64(probe.read_bytes())}, k=5)
    distances = [m["distance"] for m in body["matches"]]
    assert len(distances) == 5 and distances == sorted(distances)
    assert body["model_version"].startswith("face-v")


def test_search_by_id_finds_the_item_itself_first(api, demo_data):
    item = demo_data.indexed[Modality.FACE][17]
    first = search(api, Modality.FACE, {"id": item.id}, k=3)["matches"][0]
    assert first["id"] == item.id and first["label"] == item.label
    assert first["distance"] < 1e-3 and first["same"]


def test_search_label_filter_only_returns_that_label(api, demo_data):
    probe = demo_data.held_out[Modality.FACE][3]
    body = search(api, Modality.FACE, {"data": b64(probe.read_bytes())}, k=20, label="s30")
    assert len(body["matches"]) == 9
    assert {m["label"] for m in body["matches"]} == {"s30"}


def test_similarity_tells_same_person_from_different_people(api, demo_data):
    by_person: dict[str, list[DataItem]] = {}
    for item in demo_data.indexed[Modality.FACE]:
        by_person.setdefault(item.label, []).append(item)
    rng = random.Random(7)
    people = sorted(by_person)
    genuine, impostor = [], []
    for _ in range(20):
        person, other = rng.sample(people, 2)
        a, b = rng.sample(by_person[person], 2)
        genuine.append(similarity(api, Modality.FACE, {"id": a.id}, {"id": b.id}))
        c = rng.choice(by_person[other])
        impostor.append(similarity(api, Modality.FACE, {"id": a.id}, {"id": c.id}))
    assert sum(r["same"] for r in genuine) >= 16
    assert sum(not r["same"] for r in impostor) >= 16
    assert np.mean([r["distance"] for r in genuine]) < np.mean([r["distance"] for r in impostor])
    assert all(r["same"] == (r["distance"] <= r["threshold"]) for r in genuine + impostor)


def test_similarity_of_bytes_and_of_the_indexed_item_agree(api, demo_data):
    item = demo_data.indexed[Modality.FACE][0]
    body = similarity(api, Modality.FACE, {"id": item.id}, {"data": b64(item.read_bytes())})
    assert body["distance"] < 1e-3 and body["same"]
    # Only the photo sent as data has a face to place: `a` was looked up by id.
    assert set(body["faces"]) == {"b"} and body["faces"]["b"]["box"]["width"] > 40


def test_unseen_words_find_their_speaker(api, demo_data):
    assert top_label_rate(api, Modality.AUDIO, demo_data.held_out[Modality.AUDIO]) >= 0.8


def louder_noisier(wav: bytes, seed: int) -> bytes:
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    rng = np.random.default_rng(seed)
    noisy = np.clip(samples * 1.8 + rng.normal(0, 0.003, samples.shape), -1, 1)
    out = io.BytesIO()
    soundfile.write(out, noisy.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def test_louder_noisier_copy_of_a_clip_finds_that_clip_first(api, demo_data):
    clips = demo_data.indexed[Modality.AUDIO][::37][:5]
    for seed, clip in enumerate(clips):
        copy = louder_noisier(clip.read_bytes(), seed)
        first = search(api, Modality.AUDIO, {"data": b64(copy)}, k=1)["matches"][0]
        assert first["id"] == clip.id


def test_unknown_id_is_a_404_problem(api):
    response = api.post(
        "/v1/similarity",
        json={"modality": "face", "a": {"id": "orl/s1/1"}, "b": {"id": "no/such/item"}},
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "no/such/item" in response.json()["detail"]


def test_undecodable_bytes_are_a_422_problem(api, demo_data):
    wav = demo_data.indexed[Modality.AUDIO][0].read_bytes()
    response = api.post("/v1/search", json={"modality": "face", "item": {"data": b64(wav)}})
    assert response.status_code == 422
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] and problem["detail"]


def test_invalid_requests_are_422_problems(api):
    for body in (
        {"modality": "face", "item": {"id": "orl/s1/1", "data": "AAAA"}},
        {"modality": "smell", "item": {"id": "orl/s1/1"}},
        {"modality": "face", "item": {"data": "not base64!"}},
        {"modality": "face", "item": {"id": "orl/s1/1"}, "k": 0},
    ):
        response = api.post("/v1/search", json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"


def test_health_and_readiness(api, stack):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] and all(body["checks"].values())
    assert body["index_sizes"]["face"] >= 360 and body["index_sizes"]["audio"] >= 180
