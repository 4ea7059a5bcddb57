"""The base of the app's own ASGI middlewares.

They sit on the query hot path, so they are plain ASGI rather than Starlette's
`BaseHTTPMiddleware` (which re-streams every response through a task group); and
they act on HTTP requests only, handing lifespan events straight to the app.
"""

from abc import ABC, abstractmethod

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware(ABC):
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    @abstractmethod
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One HTTP request; `self.app` answers it."""
