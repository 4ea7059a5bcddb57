"""The request-size limit, enforced while a body is read rather than after.

The engine checks each decoded item against `MAX_ITEM_BYTES`, but by then the
JSON (or multipart) body has been read and parsed whole; without this guard a
client could make a replica buffer any amount. A request carries at most two
items (a similarity pair), base64-encoded in JSON, so that bounds every body.
"""

from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import Receive, Scope, Send

from pipeline.settings import Settings
from services.api.asgi import HttpMiddleware
from services.api.dependencies import installed
from services.api.problems import problem, respond

# Room for the JSON envelope or multipart boundaries and form fields around the items.
ENVELOPE_BYTES = 64 * 1024
ITEMS_PER_REQUEST = 2


def max_request_bytes(settings: Settings) -> int:
    base64_item = (settings.max_item_bytes + 2) // 3 * 4
    return ITEMS_PER_REQUEST * base64_item + ENVELOPE_BYTES


class BodyLimit(HttpMiddleware):
    """Starlette's body limit, sized from the replica's settings.

    The app is built at import time, before any settings exist (Serve needs it to
    define the deployment class), so the limit is looked up per request. A streamed
    body is cut off by Starlette, which raises a 413 `HTTPException` from inside
    body reading for the problem handlers to answer.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = max_request_bytes(installed().settings)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            # Starlette would answer this one itself, in plain text: refuse it here.
            await respond(problem(413, f"request body over the limit of {limit} bytes"))(
                scope, receive, send
            )
            return
        await RequestBodyLimitMiddleware(self.app, limit)(scope, receive, send)
