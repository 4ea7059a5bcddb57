"""Every error leaves as `application/problem+json`, and nothing internal leaks.

Handlers are registered once on the app so a router only ever raises
`ProblemError` (or lets validation fail) and never formats an error body itself.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from schemas.api import Problem

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = Problem(status=status, title=title, detail=detail)


def not_found(detail: str) -> ProblemError:
    return ProblemError(404, "Not Found", detail)


def unprocessable(detail: str) -> ProblemError:
    return ProblemError(422, "Unprocessable Content", detail)


def conflict(detail: str) -> ProblemError:
    return ProblemError(409, "Conflict", detail)


def too_large(detail: str) -> ProblemError:
    return ProblemError(413, "Content Too Large", detail)


def _respond(problem: Problem) -> JSONResponse:
    return JSONResponse(problem.model_dump(), status_code=problem.status, media_type=PROBLEM_JSON)


def _validation_detail(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "; ".join(parts)


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, error: ProblemError) -> JSONResponse:
        return _respond(error.problem)

    async def on_validation(_: Request, error: RequestValidationError) -> JSONResponse:
        return _respond(
            Problem(status=422, title="Unprocessable Content", detail=_validation_detail(error))
        )

    async def on_http(_: Request, error: HTTPException) -> JSONResponse:
        return _respond(
            Problem(status=error.status_code, title=str(error.detail), detail=str(error.detail))
        )

    async def on_crash(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _respond(
            Problem(status=500, title="Internal Server Error", detail="see the service log")
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
