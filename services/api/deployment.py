"""The Ray Serve deployment that hosts the FastAPI app, sized from the settings."""

import ray
import torch
from ray import serve
from ray.serve.deployment import Application

from pipeline.index.handles import NAMESPACE, ModelCache, holder_handles
from pipeline.retrain.coordinator import COORDINATOR_NAME
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from services.api.app import create_app
from services.api.catalog import Catalog
from services.api.dependencies import ApiContext, install_context
from services.api.engine import QueryEngine
from services.api.metrics import PipelineProbe
from services.api.training import Training

app = create_app()


@serve.deployment(name="api", ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class QueryService:
    def __init__(self, settings: Settings) -> None:
        torch.set_num_threads(settings.api_embed_threads)
        store = MetadataStore.from_settings(settings)
        holders = holder_handles()
        install_context(
            ApiContext(
                settings=settings,
                engine=QueryEngine(settings, holders, ModelCache(store)),
                catalog=Catalog(settings, store, holders),
                probe=PipelineProbe(settings, holders),
                training=Training(store, ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)),
            )
        )


def replica_gpus(settings: Settings, free_gpus: float) -> float:
    """GPUs per replica: the setting, else an equal share of what ingest leaves free (≤ 1)."""
    if settings.api_num_gpus is not None:
        return settings.api_num_gpus
    if free_gpus <= 0:
        return 0.0
    return min(1.0, free_gpus / settings.api_replicas)


def query_service(settings: Settings, free_gpus: float = 0.0) -> Application:
    """The API application with replicas, concurrency and GPUs as the settings ask."""
    return QueryService.options(
        num_replicas=settings.api_replicas,
        max_ongoing_requests=settings.api_max_ongoing_requests,
        ray_actor_options={"num_cpus": 0, "num_gpus": replica_gpus(settings, free_gpus)},
    ).bind(settings)
