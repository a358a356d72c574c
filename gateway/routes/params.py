"""Request values read as plain values: track ids from the path, numbers from the query, JSON bodies.

Source: the path, query string and body of a request to :mod:`gateway.routes.api`.
Destination: the values its routes use, or what they fall back on: an unknown track
(:class:`gateway.errors.NotFoundError`, 404) for an id that cannot be one, the default
for a number that is not one, ``None`` for a body that is not JSON. A body over
:data:`MAX_BODY` bytes (announced by ``Content-Length`` or counted while it streams in)
raises :class:`~gateway.errors.PayloadTooLargeError` (413) without being read further;
JSON nested deeper than :data:`MAX_DEPTH` raises
:class:`~gateway.errors.UnreadableBodyError` (400).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from starlette.requests import Request

from gateway.errors import NotFoundError, PayloadTooLargeError, UnreadableBodyError

MAX_BODY: Final = 16 * 1024
#: Deepest JSON a body may nest (arrays and objects); the player's bodies have depth 1.
MAX_DEPTH: Final = 32
#: A number parameter: 1-9 ASCII digits (``str.isdigit`` also takes "²", which ``int`` refuses).
_NUMBER: Final = re.compile(r"[0-9]{1,9}")


def parse_track_id(text: str) -> int:
    """A track id from a URL segment: 1-16 ASCII digits, positive and below 2**53."""
    if not (0 < len(text) <= 16 and text.isascii() and text.isdigit()):
        raise NotFoundError(f"no track {text[:40]!r}")
    value = int(text)
    if not 0 < value < 2**53:
        raise NotFoundError(f"no track {value}")
    return value


def int_param(value: str | None, default: int) -> int:
    """``value`` as a number if it is 1-9 ASCII digits, else ``default``."""
    if value is None or _NUMBER.fullmatch(value) is None:
        return default
    return int(value)


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request's body, read in the pieces the server hands over, at most ``limit`` bytes.

    Raises :class:`PayloadTooLargeError` as soon as ``Content-Length`` announces more, or
    the bytes received pass ``limit`` (a chunked body): the rest is never read, and the
    route answers 413 with ``Connection: close`` so the server drops it.
    """
    announced = request.headers.get("content-length", "")
    # More than 18 digits is more than any limit (and int() refuses 4,300).
    if announced.isascii() and announced.isdigit() and (len(announced) > 18 or int(announced) > limit):
        raise PayloadTooLargeError(limit)
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise PayloadTooLargeError(limit)
    return bytes(received)


async def json_body(request: Request) -> Any:
    """The request's JSON body; ``None`` if it is not JSON (nor UTF-8/16/32 text).

    Raises :class:`PayloadTooLargeError` over :data:`MAX_BODY` bytes and
    :class:`UnreadableBodyError` for JSON nested deeper than :data:`MAX_DEPTH`.
    """
    raw = await read_body(request)
    try:
        value = json.loads(raw)
    except RecursionError:
        raise UnreadableBodyError(f"the JSON body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # not JSON, not UTF-8, or an integer longer than Python's 4300 digits
        return None
    if depth(value) > MAX_DEPTH:
        raise UnreadableBodyError(f"the JSON body is nested deeper than {MAX_DEPTH} levels")
    return value


def depth(value: Any) -> int:
    """How deeply ``value`` (parsed JSON) nests lists and dicts; a scalar is 0 (iterative: no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level <= MAX_DEPTH:  # deeper than the limit is enough to know
            stack.extend((child, level + 1) for child in children)
    return deepest
