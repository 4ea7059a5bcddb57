"""Every error status of the contract, over real HTTP: problem+json, no internals leaked."""

import base64

import httpx
import pytest

from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from pipeline.store.records import ModelRecord
from schemas.items import Modality
from services.api.limits import max_request_bytes
from tests.fixtures_stack import MAX_ITEM_BYTES

FACE_ID = "orl/s1/1"
JSON = {"content-type": "application/json"}


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert set(problem) == {"type", "title", "status", "detail"}
    assert "Traceback" not in response.text and 'File "' not in response.text
    return problem


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_unknown_route_is_a_404_problem(api):
    assert_problem(api.get("/v1/nothing-here"), 404)


def test_wrong_method_is_a_405_problem_naming_the_allowed_ones(api):
    response = api.get("/v1/search")
    assert_problem(response, 405)
    assert "POST" in response.headers["allow"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/items/smell/orl/s1/1"), ("DELETE", "/v1/items/smell/orl/s1/1")],
)
def test_unknown_modality_in_the_path_is_a_422_problem(api, method, path):
    assert "modality" in assert_problem(api.request(method, path), 422)["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"modality": "smell", "a": {"id": FACE_ID}, "b": {"id": FACE_ID}},
        {"modality": "face", "a": {"id": FACE_ID}},
        {"modality": "face", "a": {"id": FACE_ID}, "b": {}},
        {"modality": "face", "a": {"id": FACE_ID}, "b": {"id": FACE_ID}, "extra": 1},
        {"modality": "face", "a": {"id": ""}, "b": {"id": FACE_ID}},
        {"modality": "face", "a": {"data": "****"}, "b": {"id": FACE_ID}},
    ],
)
def test_invalid_similarity_requests_are_422_problems(api, body):
    assert_problem(api.post("/v1/similarity", json=body), 422)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"modality": "face", ', "application/json"),
        (b'{"modality": "\xff\xfe"}', "application/json"),  # not UTF-8
        (b"modality=face", "text/plain"),
        (b"", ""),
    ],
)
def test_unparseable_bodies_are_422_problems(api, content, content_type):
    response = api.post("/v1/search", content=content, headers={"content-type": content_type})
    assert_problem(response, 422)


def test_k_out_of_range_is_a_422_problem(api):
    body = {"modality": "face", "item": {"id": FACE_ID}, "k": 1001}
    assert_problem(api.post("/v1/search", json=body), 422)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00" * 64,
        b"P5\n92 112\n255\n" + b"\x00" * 100,  # truncated PGM
        b"\x89PNG\r\n\x1a\n" + b"\xff" * 64,  # a PNG signature and nothing else
        b"GIF89a" + b"\x00" * 64,  # a format the contract does not accept
    ],
)
def test_undecodable_faces_are_422_never_500(api, payload):
    for path, body in (
        ("/v1/search", {"modality": "face", "item": {"data": b64(payload)}}),
        (
            "/v1/similarity",
            {"modality": "face", "a": {"id": FACE_ID}, "b": {"data": b64(payload)}},
        ),
    ):
        assert_problem(api.post(path, json=body), 422)


def test_undecodable_audio_is_422_never_500(api, demo_data):
    face = demo_data.indexed[Modality.FACE][0].read_bytes()
    for payload in (face, b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 32):
        body = {"modality": "audio", "item": {"data": b64(payload)}}
        assert_problem(api.post("/v1/search", json=body), 422)


@pytest.mark.parametrize("path", ["/v1/search", "/v1/similarity"])
def test_unknown_ids_are_404_problems(api, path):
    ref = {"id": "no/such/item"}
    body = (
        {"modality": "face", "item": ref}
        if path == "/v1/search"
        else {"modality": "face", "a": ref, "b": {"id": FACE_ID}}
    )
    assert "no/such/item" in assert_problem(api.post(path, json=body), 404)["detail"]


def test_unknown_items_versions_and_runs_are_404_problems(api):
    assert_problem(api.delete("/v1/items/audio/no/such/item"), 404)
    assert_problem(api.post("/v1/models/face-v999/activate"), 404)
    assert_problem(api.get("/v1/retrain/no-such-run"), 404)


def test_activating_a_version_whose_artifact_is_lost_is_a_409_problem(api, stack_settings):
    lost = stack_settings.state_dir / "lost" / "face.pt"
    # A name outside `face-vN`, so that the next trained version's number is not taken.
    MetadataStore.from_settings(stack_settings).register_model(
        ModelRecord(
            version="face-lost",
            modality=Modality.FACE,
            threshold=0.5,
            energy="euclidean",
            artifact_path=str(lost),
            artifact_sha256="0" * 64,
        )
    )
    detail = assert_problem(api.post("/v1/models/face-lost/activate"), 409)["detail"]
    assert "face-lost" in detail and str(stack_settings.state_dir) not in detail


def test_an_invalid_retraining_request_is_a_422_problem(api):
    assert_problem(api.post("/v1/retrain", json={"modality": "smell"}), 422)
    assert_problem(api.post("/v1/retrain", json={}), 422)


def test_an_item_over_the_limit_is_a_413_problem_in_a_similarity_pair(api):
    data = b64(bytes(MAX_ITEM_BYTES + 1))
    body = {"modality": "face", "a": {"id": FACE_ID}, "b": {"data": data}}
    assert "limit" in assert_problem(api.post("/v1/similarity", json=body), 413)["detail"]


def test_a_body_over_the_request_limit_is_refused_before_it_is_parsed(api, stack_settings):
    limit = max_request_bytes(stack_settings)
    response = api.post(
        "/v1/search",
        content=b"{" + b" " * limit + b"}",
        headers=JSON,
    )
    assert_problem(response, 413)


def test_a_streamed_body_without_length_is_cut_off_at_the_limit(api, stack_settings):
    limit = max_request_bytes(stack_settings)
    chunk = b" " * 65536

    def chunks():
        yield b"{"
        for _ in range(limit // len(chunk) + 2):
            yield chunk
        yield b"}"

    response = api.post("/v1/search", content=chunks(), headers=JSON)
    assert_problem(response, 413)


def test_the_request_limit_fits_two_items_at_the_item_limit():
    settings = Settings(max_item_bytes=MAX_ITEM_BYTES)
    assert max_request_bytes(settings) > 2 * len(b64(bytes(MAX_ITEM_BYTES)))
