"""The Ray Serve deployment that hosts the FastAPI app."""

from ray import serve

from pipeline.index.handles import ModelCache, holder_handles
from pipeline.settings import Settings
from pipeline.store.metadata import MetadataStore
from services.api.app import create_app
from services.api.catalog import Catalog
from services.api.dependencies import ApiContext, install_context
from services.api.engine import QueryEngine
from services.api.metrics import PipelineProbe

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
            )
        )
