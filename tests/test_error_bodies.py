"""Every error body the suite can provoke is written for the caller: no traceback, server path,
source file, actor or object id, or colour code — busy, unknown, too large, invalid, and a Ray
actor that dies while queries arrive."""

import base64
import re
import time

import httpx
import pytest
import ray
from kafka.errors import KafkaTimeoutError

from pipeline.index.handles import NAMESPACE
from pipeline.retrain.coordinator import COORDINATOR_NAME
from schemas.items import Modality
from services.api.limits import max_request_bytes
from services.api.problems import (
    KAFKA_UNAVAILABLE,
    RETRY_AFTER_S,
    UNAVAILABLE,
    client_problem,
    respond,
)
from tests.fixtures_stack import MAX_ITEM_BYTES
from tests.test_recovery import _wait_until_back as wait_until_back

LEAKS = ("Traceback", 'File "', "/work", "/tmp", "/usr", ".py", "\x1b[", "ray::", "pid=")
# Memory addresses (0x7f…), and actor, task and node ids (long runs of hex digits).
HEX_ID = re.compile(r"0x[0-9a-fA-F]{4,}|\b[0-9a-f]{16,}\b")
FACE_ID = "orl/s1/1"
RESTART_TIMEOUT_S = 180


def assert_for_the_caller(response: httpx.Response, status: int) -> str:
    """The problem's detail, once the whole body is checked for internals."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert detail and "\n" not in detail, detail
    assert [leak for leak in LEAKS if leak in response.text] == [], response.text
    assert HEX_ID.search(response.text) is None, response.text
    return detail


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def search(item: dict, modality: str = "face", **fields: object) -> dict:
    return {"json": {"modality": modality, "item": item} | fields}


def face_data(data: bytes) -> dict:
    return search({"data": b64(data)})


def raw_json(content: bytes) -> dict:
    return {"content": content, "headers": {"content-type": "application/json"}}


# A data chunk where the format chunk belongs: libsndfile refuses it, naming its buffer.
WAV_WITHOUT_FORMAT = b"RIFF\x24\x00\x00\x00WAVEdata" + bytes(40)
# (method, path, request arguments, status): every error a request alone provokes.
REQUESTS = {
    "unknown route": ("GET", "/v1/nothing-here", {}, 404),
    "unknown item": ("GET", f"/v1/items/face/{FACE_ID}x", {}, 404),
    "unknown item deleted": ("DELETE", "/v1/items/audio/no/such/item", {}, 404),
    "unknown version": ("POST", "/v1/models/face-v999/activate", {}, 404),
    "unknown run": ("GET", "/v1/retrain/no-such-run", {}, 404),
    "unknown id searched": ("POST", "/v1/search", search({"id": "no/such/item"}), 404),
    "wrong method": ("GET", "/v1/search", {}, 405),
    "item over the limit": ("POST", "/v1/search", face_data(bytes(MAX_ITEM_BYTES + 1)), 413),
    "unknown modality": ("GET", f"/v1/items/smell/{FACE_ID}", {}, 422),
    "malformed JSON": ("POST", "/v1/search", raw_json(b'{"modality": '), 422),
    "body not UTF-8": ("POST", "/v1/search", raw_json(b'{"a": "\xff\xfe"}'), 422),
    "data not base64": ("POST", "/v1/search", search({"data": "****"}), 422),
    "k out of range": ("POST", "/v1/search", search({"id": FACE_ID}, k=0), 422),
    "not an image": ("POST", "/v1/search", face_data(b"\x00" * 64), 422),
    "truncated PGM": ("POST", "/v1/search", face_data(b"P5\n92 112\n255\n" + bytes(100)), 422),
    "GIF": ("POST", "/v1/search", face_data(b"GIF89a" + bytes(64)), 422),
    "WAV without format": (
        "POST",
        "/v1/search",
        search({"data": b64(WAV_WITHOUT_FORMAT)}, modality="audio"),
        422,
    ),
    "empty upload": (
        "POST",
        "/v1/search/upload",
        {"data": {"modality": "face"}, "files": {"item": b""}},
        422,
    ),
    "invalid retraining": ("POST", "/v1/retrain", {"json": {"modality": "smell"}}, 422),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_an_error_a_request_provokes_says_nothing_internal(api, case):
    method, path, arguments, status = REQUESTS[case]
    assert_for_the_caller(api.request(method, path, **arguments), status)


def test_a_body_over_the_request_limit_says_nothing_internal(api, stack_settings):
    body = b"{" + b" " * max_request_bytes(stack_settings) + b"}"
    response = api.post("/v1/search", content=body, headers={"content-type": "application/json"})
    assert_for_the_caller(response, 413)


def test_a_library_error_loses_its_object_reprs_and_keeps_its_sentence(api):
    method, path, arguments, status = REQUESTS["not an image"]
    detail = assert_for_the_caller(api.request(method, path, **arguments), status)
    assert detail == "not a PNG, JPEG or PGM image (cannot identify image file)"


def test_busy_is_a_409_with_the_coordinators_sentence_not_rays_traceback(api):
    """The coordinator's claim is held as a running retraining holds it, without its minutes
    of training: the BusyError then comes out of the real actor, wrapped by Ray."""
    coordinator = ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
    ray.get(coordinator.__ray_call__.remote(lambda c: c._acquire(Modality.FACE, "retraining")))
    try:
        active = next(m for m in api.get("/v1/models").json()["models"]["face"] if m["active"])
        for response in (
            api.post("/v1/retrain", json={"modality": "face", "preset": "quick"}),
            api.post(f"/v1/models/{active['version']}/activate"),
        ):
            detail = assert_for_the_caller(response, 409)
            assert detail == "face is busy: retraining; try again once that is done"
    finally:
        ray.get(coordinator.__ray_call__.remote(lambda c: c._release(Modality.FACE)))


def test_an_index_holder_dying_under_queries_is_a_503_for_the_caller(api, stack):
    """Queries that reach the face holder while it is down (killed as by kill -9, restarted
    by Ray) answer 503; once it is back they answer again."""
    holder = stack.holders[Modality.FACE][0][0]
    ray.kill(holder, no_restart=False)
    refused: list[httpx.Response] = []
    unready: list[httpx.Response] = []
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while time.monotonic() < deadline:
        response = api.get(f"/v1/items/face/{FACE_ID}")
        if response.status_code != 200:
            refused.append(response)
            unready.append(api.get("/readyz"))
            time.sleep(0.1)
        elif refused:  # back, after at least one query found it down
            break
    wait_until_back([holder])
    assert refused, "no query reached the holder while it was down"
    for response in refused:
        detail = assert_for_the_caller(response, 503)
        assert detail == UNAVAILABLE
        assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    # Readiness says which check failed, in its own body, rather than failing as a request.
    for response in unready:
        if response.status_code != 200:
            assert response.status_code == 503
            assert response.json()["checks"]["indexes_loaded"] is False
    assert api.get(f"/v1/items/face/{FACE_ID}").status_code == 200


def test_a_kafka_cluster_that_does_not_answer_is_a_503_for_the_caller():
    """A route that produces or reads Kafka (a delete's tombstone, the dead letters) while the
    cluster does not answer: retry later, in a sentence, not a 500 with the client's message."""
    found = client_problem(KafkaTimeoutError("Failed to update metadata after 60.0 secs."))
    assert found is not None
    assert (found.status, found.detail) == (503, KAFKA_UNAVAILABLE)
    assert respond(found).headers["retry-after"] == str(RETRY_AFTER_S)
