"""Liveness and readiness probes for orchestrators and `make run`."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from schemas.api import Health, Readiness
from services.api.dependencies import get_readiness
from services.api.readiness import ReadinessCheck

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """200 while the process answers: a liveness probe; it checks nothing else."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(check: Annotated[ReadinessCheck, Depends(get_readiness)]) -> JSONResponse:
    """200 when models, indexes and Kafka are all there; 503 with the failing checks otherwise."""
    readiness = await check.run()
    return JSONResponse(
        readiness.model_dump(mode="json"), status_code=200 if readiness.ready else 503
    )
