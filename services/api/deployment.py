"""The Ray Serve deployment that hosts the FastAPI app."""

import ray
from ray import serve

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
