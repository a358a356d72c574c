"""The web player and the ops page: ``/``, ``/ops`` and the files under ``/static``.

Source: ``gateway/static`` (HTML, JavaScript, CSS), served as they are. Destination:
browsers; the pages then speak to the routes of :mod:`gateway.routes.api`,
:mod:`gateway.routes.ops` and :mod:`gateway.routes.ws`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC: Final = Path(__file__).resolve().parent.parent / "static"


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def ops_page(request: Request) -> Response:
    return FileResponse(STATIC / "ops.html")


def pages() -> list[BaseRoute]:
    """``/`` (the player) and ``/ops``."""
    return [Route("/", index), Route("/ops", ops_page)]


def static() -> Mount:
    """``/static``: the player's scripts and styles."""
    return Mount("/static", StaticFiles(directory=STATIC), name="static")
