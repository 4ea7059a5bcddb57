"""The FastAPI application: routers, problem handlers and OpenAPI metadata."""

from fastapi import FastAPI

from services.api.metrics import observe
from services.api.problems import install_problem_handlers
from services.api.routers import health, items, metrics, models, retrain, search, similarity


def create_app() -> FastAPI:
    app = FastAPI(
        title="twinstream",
        summary="Streaming similarity search for faces and audio with siamese encoders.",
        version="0.1.0",
    )
    routers = (similarity, search, items, models, retrain, health, metrics)
    for module in routers:
        app.include_router(module.router)
    app.middleware("http")(observe)
    install_problem_handlers(app)
    return app
