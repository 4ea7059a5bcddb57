"""The FastAPI application: routers, problem handlers and OpenAPI metadata."""

from fastapi import FastAPI

from services.api.problems import install_problem_handlers
from services.api.routers import health, items, models, search, similarity


def create_app() -> FastAPI:
    app = FastAPI(
        title="twinstream",
        summary="Streaming similarity search for faces and audio with siamese encoders.",
        version="0.1.0",
    )
    for router in (similarity.router, search.router, items.router, models.router, health.router):
        app.include_router(router)
    install_problem_handlers(app)
    return app
