"""GET /metrics: Prometheus text for scrapers (no API key: it carries no item data)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from services.api.dependencies import get_probe
from services.api.metrics import PipelineProbe

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics(
    probe: Annotated[PipelineProbe, Depends(get_probe)],
) -> Response:
    return await probe.render()
