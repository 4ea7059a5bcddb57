"""The query API: FastAPI routers served by a Ray Serve deployment."""
