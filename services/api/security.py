"""API-key protection for `/v1/*` and the rule that a public bind must have one."""

import hmac
from typing import Annotated, Any

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader

from pipeline.settings import Settings, is_loopback
from services.api.dependencies import get_settings
from services.api.problems import unauthorized


class InsecureBind(RuntimeError):
    pass


def check_bind(settings: Settings) -> None:
    """Refuse to expose an unauthenticated API beyond this machine."""
    if settings.api_key is not None:
        return
    if not is_loopback(settings.http_host):
        raise InsecureBind(
            f"refusing to bind {settings.http_host} without TWINSTREAM_API_KEY: "
            "set a key or bind 127.0.0.1"
        )
    if settings.api_ingress == "haproxy":
        raise InsecureBind(
            "refusing HAProxy ingress without TWINSTREAM_API_KEY: its replicas serve HTTP "
            "on every interface; set a key or use TWINSTREAM_API_INGRESS=proxy"
        )


# auto_error=False: a missing key must be our 401 problem, not FastAPI's 403. As a
# security scheme (not a plain header parameter) it gets /docs an "Authorize" button.
API_KEY_HEADER = APIKeyHeader(name="x-api-key", auto_error=False)


async def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)],
) -> None:
    expected = settings.api_key
    if expected is None:
        return
    secret = expected.get_secret_value().encode()
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), secret):
        raise unauthorized("missing or wrong x-api-key header")


API_KEY = Depends(require_api_key)


def published_security(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The OpenAPI schema as this deployment enforces it: with no key set, nothing is
    required, so clients and contract testers are not told to send one."""
    if settings.api_key is None:
        schema.get("components", {}).pop("securitySchemes", None)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.pop("security", None)
    return schema
