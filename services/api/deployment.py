"""The Ray Serve deployment that hosts the FastAPI app, sized from the settings."""

import ray
import torch
from ray import serve
from ray.serve.deployment import Application

from pipeline.index.handles import NAMESPACE, ModelCache, holder_handles
from pipeline.retrain.coordinator import COORDINATOR_NAME
from pipeline.settings import Settings
from pipeline.store.artifacts import ModelArtifacts
from pipeline.store.metadata import MetadataStore
from services.api.app import create_app
from services.api.catalog import Catalog
from services.api.dependencies import ApiContext, install_context
from services.api.engine import QueryEngine
from services.api.metrics import PipelineProbe
from services.api.readiness import ReadinessCheck
from services.api.training import Training

app = create_app()


@serve.deployment(name="api", ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class QueryService:
    def __init__(self, settings: Settings) -> None:
        torch.set_num_threads(settings.api_embed_threads)
        store = MetadataStore.from_settings(settings)
        holders = holder_handles(settings)
        models = ModelCache(ModelArtifacts(store, settings.models_dir))
        engine = QueryEngine(settings, holders, models)
        install_context(
            ApiContext(
                settings=settings,
                engine=engine,
                readiness=ReadinessCheck(settings, holders, engine.router),
                catalog=Catalog(settings, store, holders, engine.router.reads),
                probe=PipelineProbe(settings, holders),
                training=Training(store, ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)),
            )
        )


def query_service(settings: Settings, replica_gpus: float = 0.0) -> Application:
    """The API application with replicas and concurrency as the settings ask, and the GPUs
    each replica reserves (`pipeline.placement` decides them for the whole stack)."""
    return QueryService.options(
        num_replicas=settings.api_replicas,
        max_ongoing_requests=settings.api_max_ongoing_requests,
        ray_actor_options={"num_cpus": 0, "num_gpus": replica_gpus},
    ).bind(settings)
