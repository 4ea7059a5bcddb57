"""API keys: `/v1/*` needs `x-api-key` when one is set, and a public bind needs one."""

import httpx
import pytest
from pydantic import SecretStr
from ray import serve

from pipeline.settings import Settings
from services.api.deployment import QueryService
from services.api.security import InsecureBind, check_bind

KEY = "s3cret-key"
ITEM = {"id": "orl/s1/1"}
SEARCH = {"modality": "face", "item": ITEM, "k": 1}


@pytest.fixture(scope="module")
def secured(stack, stack_settings):
    """A second app on the running Serve instance, configured with an API key."""
    settings = Settings(
        state_dir=stack_settings.state_dir,
        kafka_bootstrap=stack_settings.kafka_bootstrap,
        http_port=stack_settings.http_port,
        api_key=SecretStr(KEY),
    )
    serve.run(QueryService.bind(settings), name="secured", route_prefix="/secured")
    with httpx.Client(base_url=f"{stack.url}/secured", timeout=60) as client:
        yield client
    serve.delete("secured")


# Every /v1 route: an anonymous caller learns nothing, not even whether an id exists.
V1_CALLS = [
    ("POST", "/v1/search", {"json": SEARCH}),
    ("POST", "/v1/similarity", {"json": {"modality": "face", "a": ITEM, "b": ITEM}}),
    ("POST", "/v1/search/upload", {"data": {"modality": "face"}, "files": {"item": b"x"}}),
    ("POST", "/v1/similarity/upload", {"data": {"modality": "face"}, "files": {"a": b"x"}}),
    ("GET", "/v1/items", {"params": {"modality": "face"}}),
    ("GET", "/v1/items/face/orl/s1/1", {}),
    ("GET", "/v1/payloads/face/orl/s1/1", {"params": {"max_side": 64}}),
    ("DELETE", "/v1/items/face/orl/s1/1", {}),
    ("GET", "/v1/models", {}),
    ("POST", "/v1/models/face-v1/activate", {}),
    ("POST", "/v1/retrain", {"json": {"modality": "face"}}),
    ("GET", "/v1/retrain/some-run", {}),
    ("GET", "/v1/dead-letters", {"params": {"limit": 1}}),
]


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"x-api-key": ""}])
@pytest.mark.parametrize(("method", "path", "body"), V1_CALLS)
def test_v1_without_the_right_key_is_a_401_problem(secured, headers, method, path, body):
    response = secured.request(method, path, headers=headers, **body)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401


def test_v1_with_the_key_answers(secured):
    response = secured.post("/v1/search", json=SEARCH, headers={"x-api-key": KEY})
    assert response.status_code == 200
    assert response.json()["matches"][0]["id"] == "orl/s1/1"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"])
def test_probes_and_docs_need_no_key(secured, path):
    assert secured.get(path).status_code == 200


def test_without_a_key_the_api_is_open_on_loopback(api):
    assert api.post("/v1/search", json=SEARCH).status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.org"])
def test_a_public_bind_without_a_key_is_refused(host):
    with pytest.raises(InsecureBind, match="TWINSTREAM_API_KEY"):
        check_bind(Settings(http_host=host))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_binds_need_no_key(host):
    check_bind(Settings(http_host=host))
    check_bind(Settings(http_host="0.0.0.0", api_key=SecretStr(KEY)))


def test_haproxy_ingress_needs_a_key_even_on_loopback():
    # Its replicas serve HTTP on every interface, whatever HTTP_HOST says.
    with pytest.raises(InsecureBind, match="HAProxy"):
        check_bind(Settings(api_ingress="haproxy"))
    check_bind(Settings(api_ingress="haproxy", api_key=SecretStr(KEY)))


def test_the_published_schema_requires_the_key_only_where_it_is_set(secured, api):
    schema = secured.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "x-api-key"
    assert schema["paths"]["/v1/search"]["post"]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in api.get("/openapi.json").json()["paths"]["/v1/search"]["post"]
