"""The FastAPI application: routers, problem handlers, limits and OpenAPI metadata."""

from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.api.dependencies import installed
from services.api.limits import BodyLimit
from services.api.metrics import RequestMetrics
from services.api.problems import install_problem_handlers, problems_as_problem_json
from services.api.routers import (
    dead_letters,
    health,
    items,
    metrics,
    models,
    payloads,
    retrain,
    search,
    similarity,
)
from services.api.routers.console import mount_console
from services.api.security import published_security

DESCRIPTION = """
Pair similarity and nearest-match search over faces and audio, embedded by the
active siamese encoder of each modality. Every answer names the model version
that made it. Errors are `application/problem+json`. With `TWINSTREAM_API_KEY`
set, every `/v1/*` call needs the `x-api-key` header.
"""


def create_app() -> FastAPI:
    app = FastAPI(
        title="twinstream",
        summary="Streaming similarity search for faces and audio with siamese encoders.",
        description=DESCRIPTION,
        version=version("twinstream"),
    )
    routers = (similarity, search, items, payloads, models, retrain, health, dead_letters, metrics)
    for module in routers:
        app.include_router(module.router)
    mount_console(app)
    # Inside the metrics middleware, so a refused body is counted with its 413.
    app.add_middleware(BodyLimit)
    app.add_middleware(RequestMetrics)
    install_problem_handlers(app)

    def openapi() -> dict[str, Any]:
        # Built on first request, in the replica, where the settings are installed.
        if app.openapi_schema is None:
            app.openapi_schema = published_security(api_schema(app), installed().settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def api_schema(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema with the API key scheme: docs/openapi.json, and what a deployment
    with TWINSTREAM_API_KEY set publishes."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    return problems_as_problem_json(schema)
