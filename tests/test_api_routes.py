"""The API's request path as FastAPI builds it, read from the app itself."""

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from services.api.app import create_app


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _is_coroutine(call: Callable[..., Any]) -> bool:
    """A coroutine function, or an object whose __call__ is one (FastAPI's security schemes)."""
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def test_no_dependency_of_any_route_is_sent_to_the_thread_pool():
    """FastAPI runs a plain `def` dependency in its thread pool, a hop per dependency per
    request; three of them cost a replica ~3 ms of its event loop per query when profiled."""
    contexts = iter_route_contexts(create_app().routes)
    routes = [c.route for c in contexts if isinstance(c.route, APIRoute)]
    threaded = sorted(
        f"{route.path}: {getattr(call, '__qualname__', call)}"
        for route in routes
        for call in _calls(route.dependant)
        if not _is_coroutine(call)
    )
    assert len(routes) > 10
    assert threaded == []
