"""The console at `/ui`: static files the API app serves itself, outside the OpenAPI schema.

Plain HTML, CSS and JavaScript modules, no build step and nothing fetched from elsewhere, so
it works offline and on a machine without Node. The files carry no data and need no key;
every call the page makes goes to `/v1/*` with the same `x-api-key` as any client.
"""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
PREFIX = "/ui"

router = APIRouter(include_in_schema=False)


@router.get(PREFIX)
async def console_root() -> RedirectResponse:
    # Relative, so it holds under a Serve route prefix as well; the page's own links are too.
    return RedirectResponse("ui/", status_code=307)


def mount_console(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(PREFIX, StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
