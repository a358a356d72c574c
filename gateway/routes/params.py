"""Request values read as plain values: track ids from the path, numbers from the query, JSON bodies.

Source: the path, query string and body of a request to :mod:`gateway.routes.api`.
Destination: the values its routes use, or what they fall back on: an unknown track
(:class:`gateway.errors.NotFoundError`, 404) for an id that cannot be one, the default
for a number that is not one, ``None`` for a body that is too large or not JSON.
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.requests import Request

from gateway.errors import NotFoundError

MAX_BODY: Final = 16 * 1024


def parse_track_id(text: str) -> int:
    """A track id from a URL segment: 1-16 ASCII digits, positive and below 2**53."""
    if not (0 < len(text) <= 16 and text.isascii() and text.isdigit()):
        raise NotFoundError(f"no track {text[:40]!r}")
    value = int(text)
    if not 0 < value < 2**53:
        raise NotFoundError(f"no track {value}")
    return value


def int_param(value: str | None, default: int) -> int:
    if value is None or not (0 < len(value) <= 9) or not value.isdigit():
        return default
    return int(value)


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
