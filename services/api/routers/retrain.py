"""POST /v1/retrain and GET /v1/retrain/{run_id}: start a retraining run, follow it."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from schemas.api import RetrainAccepted, RetrainRequest, RetrainRun
from services.api.dependencies import get_training
from services.api.problems import error_responses
from services.api.security import API_KEY
from services.api.training import Training

router = APIRouter(prefix="/v1/retrain", tags=["retraining"], dependencies=[API_KEY])


@router.post(
    "",
    status_code=202,
    responses=error_responses(401, 409, 422),
)
async def start_retraining(
    request: RetrainRequest, training: Annotated[Training, Depends(get_training)]
) -> RetrainAccepted:
    """Train a candidate on the stored labelled items and pair feedback; it replaces the
    active model only if it beats it on the same held-out identities. 409 while one runs."""
    return await training.start(request)


@router.get("/{run_id}", responses=error_responses(401, 404, 422))
async def retraining_run(
    run_id: Annotated[str, Path(description="the id `POST /v1/retrain` answered with")],
    training: Annotated[Training, Depends(get_training)],
) -> RetrainRun:
    """The run's status, phase and progress; once judged, both models' held-out metrics and
    whether the candidate was promoted. 404 for an unknown run."""
    return await training.run(run_id)
