"""Access to the replica's query engine from the routers.

Ray Serve pickles the FastAPI app into each replica, so `app.state` set in the
deployment's constructor is not the state the routes see; a module-level slot
is, because routes reach this module by import in the replica's own process.
"""

from services.api.engine import QueryEngine

_engine: QueryEngine | None = None


def install_engine(engine: QueryEngine) -> None:
    global _engine
    _engine = engine


def get_engine() -> QueryEngine:
    if _engine is None:
        raise RuntimeError("the query engine is not installed in this process")
    return _engine
