"""What the routers depend on: the replica's settings, query engine and catalog.

Ray Serve pickles the FastAPI app into each replica, so `app.state` set in the
deployment's constructor is not the state the routes see; a module-level slot
is, because routes reach this module by import in the replica's own process.
"""

from dataclasses import dataclass

from pipeline.settings import Settings
from services.api.catalog import Catalog
from services.api.engine import QueryEngine
from services.api.metrics import PipelineProbe
from services.api.training import Training


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    engine: QueryEngine
    catalog: Catalog
    probe: PipelineProbe
    training: Training


_context: ApiContext | None = None


def install_context(context: ApiContext) -> None:
    global _context
    _context = context


def _installed() -> ApiContext:
    if _context is None:
        raise RuntimeError("the API context is not installed in this process")
    return _context


def get_settings() -> Settings:
    return _installed().settings


def get_engine() -> QueryEngine:
    return _installed().engine


def get_catalog() -> Catalog:
    return _installed().catalog


def get_probe() -> PipelineProbe:
    return _installed().probe


def get_training() -> Training:
    return _installed().training
