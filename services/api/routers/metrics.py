"""GET /metrics: Prometheus text for scrapers (no API key: it carries no item data)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from services.api.dependencies import get_probe
from services.api.metrics import PipelineProbe

router = APIRouter(tags=["health"])


PROMETHEUS_TEXT = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.get("/metrics", response_class=Response, responses=PROMETHEUS_TEXT)
async def metrics(
    probe: Annotated[PipelineProbe, Depends(get_probe)],
) -> Response:
    """Request, ingest, index and model metrics in the Prometheus text format."""
    return await probe.render()
