"""The Ray Serve deployment that hosts the FastAPI app."""

from ray import serve

from pipeline.settings import Settings
from services.api.app import create_app
from services.api.dependencies import install_engine
from services.api.engine import QueryEngine

app = create_app()


@serve.deployment(name="api", ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class QueryService:
    def __init__(self, settings: Settings) -> None:
        install_engine(QueryEngine.connect(settings))
