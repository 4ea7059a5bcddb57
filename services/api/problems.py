"""Every error leaves as `application/problem+json`, and nothing internal leaks.

This is the boundary where exceptions become what a client reads: handlers registered once
on the app, so a router only ever raises `ProblemError` (or lets validation fail, or lets a
Ray actor's error through) and never formats an error body itself.
"""

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kafka.errors import KafkaError
from ray.exceptions import RayActorError, RayError, RayTaskError
from starlette.exceptions import HTTPException

from pipeline.decode.errors import without_object_reprs
from pipeline.retrain.coordinator import BusyError
from pipeline.store.artifacts import ArtifactUnavailableError
from schemas.api import Problem

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
CRASHED = "the service failed to answer this request; see the service log"
UNAVAILABLE = "a part of the service failed and is not available; retry in a few seconds"
RETRY_AFTER_S = 5
KAFKA_UNAVAILABLE = "the Kafka cluster did not answer in time; retry in a few seconds"
# What lower layers' messages may carry: colour codes (Ray's), and object reprs.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# RFC 9110 renamed these two; Python 3.11's HTTPStatus still has the old phrases.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def title(status: int) -> str:
    return _TITLES.get(status) or HTTPStatus(status).phrase


def problem(status: int, detail: str) -> Problem:
    return Problem(status=status, title=title(status), detail=_for_client(detail))


def _for_client(detail: str) -> str:
    return without_object_reprs(_ANSI.sub("", detail))


class ProblemError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem(status, detail)


def not_found(detail: str) -> ProblemError:
    return ProblemError(404, detail)


def unprocessable(detail: str) -> ProblemError:
    return ProblemError(422, detail)


def too_large(detail: str) -> ProblemError:
    return ProblemError(413, detail)


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route's error statuses, all with the Problem body."""
    return {status: {"model": Problem, "description": title(status)} for status in statuses}


def problems_as_problem_json(schema: dict[str, Any]) -> dict[str, Any]:
    """Document Problem bodies under the media type they are sent with.

    FastAPI files every response model under the route's own media type
    (application/json); the handlers below answer errors with problem+json, and a
    client or contract tester checking the media type must find it documented.
    """
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
                if ref.endswith("/Problem"):
                    content[PROBLEM_JSON] = content.pop("application/json")
    return schema


def respond(body: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    if body.status == 503:
        # Ray restarts what failed within seconds; a client that waits this long finds it back.
        headers = {"Retry-After": str(RETRY_AFTER_S), **(headers or {})}
    return JSONResponse(
        body.model_dump(), status_code=body.status, media_type=PROBLEM_JSON, headers=headers
    )


def _validation_detail(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "; ".join(parts)


def client_problem(error: Exception) -> Problem | None:
    """The problem a client reads for an error raised below the routers; None for a bug.

    An error raised in a Ray actor arrives wrapped in Ray's traceback (colour codes, actor
    id, pid, source lines): only what the actor raised is judged, and only its message read.
    """
    while isinstance(error, RayTaskError):
        error = error.cause
    if isinstance(error, ProblemError):
        return error.problem
    if isinstance(error, BusyError):
        return problem(409, f"{error}; try again once that is done")
    if isinstance(error, ArtifactUnavailableError):
        return problem(409, str(error))
    if isinstance(error, RayActorError):
        return problem(503, UNAVAILABLE)
    if isinstance(error, KafkaError):
        return problem(503, KAFKA_UNAVAILABLE)
    return None


def install_problem_handlers(app: FastAPI) -> None:
    async def on_error(request: Request, error: Exception) -> JSONResponse:
        found = client_problem(error)
        if found is None:
            log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
            return respond(problem(500, CRASHED))
        if found.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, found.detail, exc_info=error)
        return respond(found)

    async def on_validation(_: Request, error: RequestValidationError) -> JSONResponse:
        return respond(problem(422, _validation_detail(error)))

    async def on_http(_: Request, error: HTTPException) -> JSONResponse:
        # Starlette's own 404/405/413 (a 405 keeps its Allow header), and FastAPI's 400
        # for a body it cannot read at all (not UTF-8, broken multipart): the contract
        # calls every unusable request 422, as FastAPI itself does for malformed JSON.
        status = 422 if error.status_code == 400 else error.status_code
        return respond(problem(status, str(error.detail)), error.headers)

    # Exception's handler runs in Starlette's outermost middleware, which re-raises after
    # answering: the others are named so that their expected errors answer quietly.
    for expected in (ProblemError, BusyError, RayError, Exception):
        app.add_exception_handler(expected, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
