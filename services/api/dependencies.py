"""What the routers depend on: the replica's settings, query engine, readiness and catalog.

Ray Serve pickles the FastAPI app into each replica, so `app.state` set in the
deployment's constructor is not the state the routes see; a module-level slot
is, because routes reach this module by import in the replica's own process.
"""

from dataclasses import dataclass

from pipeline.settings import Settings
from services.api.catalog import Catalog
from services.api.engine import QueryEngine
from services.api.metrics import PipelineProbe
from services.api.readiness import ReadinessCheck
from services.api.training import Training


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    engine: QueryEngine
    readiness: ReadinessCheck
    catalog: Catalog
    probe: PipelineProbe
    training: Training


_context: ApiContext | None = None


def install_context(context: ApiContext) -> None:
    global _context
    _context = context


def installed() -> ApiContext:
    if _context is None:
        raise RuntimeError("the API context is not installed in this process")
    return _context


# The providers below are coroutines although they never await: FastAPI runs a plain `def`
# dependency in its thread pool, a hop per dependency per request, for what is a read of
# this process's context (docs/experiments/2026-11-28-where-a-querys-time-goes.md).


async def get_settings() -> Settings:
    return installed().settings


async def get_engine() -> QueryEngine:
    return installed().engine


async def get_readiness() -> ReadinessCheck:
    return installed().readiness


async def get_catalog() -> Catalog:
    return installed().catalog


async def get_probe() -> PipelineProbe:
    return installed().probe


async def get_training() -> Training:
    return installed().training
