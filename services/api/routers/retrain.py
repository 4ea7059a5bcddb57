"""POST /v1/retrain and GET /v1/retrain/{run_id}: start a retraining run, follow it."""

from typing import Annotated

from fastapi import APIRouter, Depends

from schemas.api import Problem, RetrainAccepted, RetrainRequest, RetrainRun
from services.api.dependencies import get_training
from services.api.security import API_KEY
from services.api.training import Training

router = APIRouter(prefix="/v1/retrain", tags=["retraining"], dependencies=[API_KEY])


@router.post(
    "",
    status_code=202,
    responses={401: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}},
)
async def start_retraining(
    request: RetrainRequest, training: Annotated[Training, Depends(get_training)]
) -> RetrainAccepted:
    """Train a candidate on the stored labelled items and pair feedback; it replaces the
    active model only if it beats it on the same held-out identities. 409 while one runs."""
    return await training.start(request)


@router.get("/{run_id}", responses={401: {"model": Problem}, 404: {"model": Problem}})
async def retraining_run(
    run_id: str, training: Annotated[Training, Depends(get_training)]
) -> RetrainRun:
    return await training.run(run_id)
