"""Multipart uploads answer like their JSON twins; /docs and /openapi.json describe them."""

from schemas.items import Modality
from tests.fixtures_stack import MAX_ITEM_BYTES
from tests.test_api_errors import assert_problem, b64


def test_search_upload_answers_like_the_json_search(api, demo_data):
    probe = demo_data.held_out[Modality.FACE][2]
    data = probe.read_bytes()
    form = {"modality": "face", "k": "3"}
    uploaded = api.post("/v1/search/upload", data=form, files={"item": ("10.pgm", data)})
    assert uploaded.status_code == 200, uploaded.text
    as_json = api.post("/v1/search", json={"modality": "face", "item": {"data": b64(data)}, "k": 3})
    assert uploaded.json() == as_json.json()
    assert len(uploaded.json()["matches"]) == 3


def test_search_upload_honours_the_label_filter(api, demo_data):
    probe = demo_data.held_out[Modality.FACE][2]
    form = {"modality": "face", "k": "20", "label": "s9"}
    response = api.post("/v1/search/upload", data=form, files={"item": probe.read_bytes()})
    assert {m["label"] for m in response.json()["matches"]} == {"s9"}


def test_similarity_upload_of_two_clips_of_one_speaker(api, demo_data):
    clips = [c for c in demo_data.indexed[Modality.AUDIO] if c.label == "carlo"][:2]
    files = {"a": clips[0].read_bytes(), "b": clips[1].read_bytes()}
    response = api.post("/v1/similarity/upload", data={"modality": "audio"}, files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"].startswith("audio-v")
    assert body["same"] == (body["distance"] <= body["threshold"])


def test_upload_errors_are_problems(api, demo_data):
    face = demo_data.indexed[Modality.FACE][0].read_bytes()
    assert_problem(
        api.post("/v1/search/upload", data={"modality": "face"}, files={"item": b""}), 422
    )
    assert_problem(
        api.post("/v1/search/upload", data={"modality": "audio"}, files={"item": face}), 422
    )
    assert_problem(api.post("/v1/search/upload", data={"modality": "face"}), 422)
    assert_problem(
        api.post("/v1/similarity/upload", data={"modality": "face"}, files={"a": face}), 422
    )
    too_big = {"item": bytes(MAX_ITEM_BYTES + 1)}
    assert_problem(api.post("/v1/search/upload", data={"modality": "face"}, files=too_big), 413)


def test_docs_and_openapi_describe_every_route_with_examples(api):
    assert api.get("/docs").status_code == 200
    schema = api.get("/openapi.json").json()
    assert {
        "/v1/similarity",
        "/v1/similarity/upload",
        "/v1/search",
        "/v1/search/upload",
        "/v1/items/{modality}/{item_id}",
        "/v1/models",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(schema["paths"])
    for name in ("SimilarityRequest", "SearchRequest", "ItemRef"):
        assert schema["components"]["schemas"][name]["examples"]
    errors = schema["paths"]["/v1/search"]["post"]["responses"]
    assert set(errors) >= {"401", "404", "413", "422"}
    assert "application/problem+json" in errors["422"]["content"]
    # No key is set on this stack, so the schema requires none (see test_auth for one that is).
    assert "securitySchemes" not in schema["components"]
