"""The running service's HTTP API as the CLI calls it: at the settings' address, with their key."""

import base64
from pathlib import Path
from typing import Any

import httpx

from pipeline.settings import Settings

# Long enough for a first query that loads a model, or an activation that re-embeds.
QUERY_TIMEOUT_S = 120.0


class NoServiceError(Exception):
    """Nothing answers at the service's address."""


class RefusedError(Exception):
    """The service answered with an error; the message is its problem `detail`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def service_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    return f"http://{host}:{settings.http_port}"


def item_ref(item: str) -> dict[str, str]:
    """An existing file is sent as its bytes; anything else names an indexed item."""
    path = Path(item)
    if path.is_file():
        return {"data": base64.b64encode(path.read_bytes()).decode()}
    return {"id": item}


class ServiceClient:
    def __init__(self, settings: Settings, timeout_s: float | None = QUERY_TIMEOUT_S) -> None:
        self.url = service_url(settings)
        key = settings.api_key
        self._headers = {"x-api-key": key.get_secret_value()} if key else {}
        self._timeout_s = timeout_s

    def answers(self) -> bool:
        try:
            httpx.get(f"{self.url}/healthz")
        except httpx.ConnectError:
            return False
        return True

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON answer; NoServiceError or RefusedError instead of an error response."""
        try:
            response = httpx.post(
                f"{self.url}{path}", json=body, headers=self._headers, timeout=self._timeout_s
            )
        except httpx.ConnectError as error:
            raise NoServiceError(f"no service answers at {self.url}") from error
        if not response.is_success:
            raise RefusedError(response.status_code, _detail(response))
        return response.json()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("detail", response.text)) if isinstance(body, dict) else response.text
