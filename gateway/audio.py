"""HTTP audio streaming: one track's file as a Starlette response, with ranges and validators.

Sources: the audio root directory and a track's stored relative path (from the track's
document, never from the request: :func:`resolve_audio` refuses anything that leaves
the root), the file's bytes and one ``stat`` of it, and the request's method, ``Range``
and conditional headers (evaluated by :mod:`gateway.ranges`).
Destination: the response returned to the route, 200 / 206 with the body streamed
from the file in :data:`CHUNK_SIZE` pieces in a worker thread (never the whole file in
memory), or a bodiless 304, a 412, a 416 with ``Content-Range: bytes */size``; HEAD
gets the GET headers without a body. Refusals raise
:class:`~gateway.errors.NotFoundError` for the caller to turn into a 404.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

import anyio
import anyio.to_thread
from anyio import AsyncFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.errors import NotFoundError, RangeNotSatisfiableError
from gateway.ranges import Outcome, etag_for, evaluate_conditions, http_date, parse_range

CHUNK_SIZE: Final = 64 * 1024
CACHE_CONTROL: Final = "private, max-age=3600"
DEFAULT_TYPE: Final = "application/octet-stream"

AUDIO_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        ".mp3": "audio/mpeg",
        ".ogg": "audio/ogg",
        ".opus": "audio/ogg",
        ".flac": "audio/flac",
        ".wav": "audio/wav",
        ".m4a": "audio/mp4",
    }
)
"""Content-Type by (lower-case) file suffix; anything else is :data:`DEFAULT_TYPE`."""

_METHODS: Final = ("GET", "HEAD")
_CONDITIONAL_FIELDS: Final = (
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
)


def content_type(file: Path) -> str:
    """The Content-Type of an audio file, by suffix (case-insensitive)."""
    return AUDIO_TYPES.get(file.suffix.lower(), DEFAULT_TYPE)


def resolve_audio(root: Path, relative: str | None) -> Path:
    """The regular file that the stored path ``relative`` names under ``root``.

    Raises :class:`NotFoundError` when there is no path, when it is absolute or has a
    ``..`` component, when it (through any symlink) resolves outside ``root``, and
    when it is missing or not a regular file.
    """
    if not relative:
        raise NotFoundError("the track has no stored audio path")
    if "\x00" in relative:
        raise NotFoundError(f"stored audio path {relative!r} contains a NUL byte")
    path = Path(relative)
    if path.is_absolute() or path.anchor:
        raise NotFoundError(f"stored audio path {relative!r} is absolute")
    if ".." in path.parts:
        raise NotFoundError(f"stored audio path {relative!r} climbs out with '..'")
    try:
        base = root.resolve(strict=True)
        resolved = (base / path).resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # missing, unreadable, or a symlink loop
        raise NotFoundError(f"stored audio path {relative!r} does not exist") from exc
    if not resolved.is_relative_to(base):
        raise NotFoundError(f"stored audio path {relative!r} resolves outside the audio root")
    if not resolved.is_file():
        raise NotFoundError(f"stored audio path {relative!r} is not a regular file")
    return resolved


async def audio_response(request: Request, file: Path) -> Response:
    """The response to a GET or HEAD of ``file`` (other methods get 405).

    The file is opened and ``fstat``-ed once: the validators, the status and the body
    all describe the same open file, even if it is replaced meanwhile. Raises
    :class:`NotFoundError` when the file cannot be opened or is not a regular file.
    """
    method = request.method
    if method not in _METHODS:
        return PlainTextResponse("method not allowed", status_code=405, headers={"Allow": "GET, HEAD"})
    try:
        handle = await anyio.open_file(file, "rb")
    except OSError as exc:
        raise NotFoundError(f"audio file {file.name!r} cannot be opened") from exc
    return await _respond(request, file, handle)


async def _respond(request: Request, file: Path, handle: AsyncFile[bytes]) -> Response:
    """Decide the response for an open ``handle``; closes it unless a body is streamed from it."""
    streaming = False
    try:
        info = await anyio.to_thread.run_sync(os.fstat, handle.wrapped.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotFoundError(f"audio file {file.name!r} is not a regular file")
        size = info.st_size
        etag = etag_for(size, info.st_mtime_ns)
        validators = {
            "ETag": etag,
            "Last-Modified": http_date(info.st_mtime),
            "Cache-Control": CACHE_CONTROL,
        }
        fields = {
            name: ", ".join(request.headers.getlist(name))
            for name in _CONDITIONAL_FIELDS
            if name in request.headers
        }
        decision = evaluate_conditions(request.method, fields, etag=etag, last_modified=info.st_mtime)
        if decision.outcome is Outcome.NOT_MODIFIED:
            return Response(status_code=304, headers=validators)
        if decision.outcome is Outcome.PRECONDITION_FAILED:
            return PlainTextResponse("precondition failed", status_code=412, headers=validators)

        headers = {"Accept-Ranges": "bytes", **validators}
        status, first, last = 200, 0, size - 1
        if decision.honour_range:
            try:
                selected = parse_range(fields["range"], size)
            except RangeNotSatisfiableError as exc:
                headers["Content-Range"] = f"bytes */{size}"
                return PlainTextResponse(str(exc), status_code=416, headers=headers)
            if selected is not None:
                status, (first, last) = 206, selected
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        length = last - first + 1
        headers["Content-Length"] = str(length)
        media_type = content_type(file)
        if request.method == "HEAD" or length == 0:
            return Response(b"", status_code=status, headers=headers, media_type=media_type)
        streaming = True
        return _FileStream(handle, first, length, status_code=status, headers=headers, media_type=media_type)
    finally:
        if not streaming:
            await handle.aclose()


class _FileStream(StreamingResponse):
    """A streamed body of ``length`` bytes from ``first`` on of an open file, which it closes."""

    def __init__(
        self,
        handle: AsyncFile[bytes],
        first: int,
        length: int,
        *,
        status_code: int,
        headers: Mapping[str, str],
        media_type: str,
    ) -> None:
        self._handle = handle
        self._chunks = _read(handle, first, length)
        super().__init__(self._chunks, status_code=status_code, headers=headers, media_type=media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._chunks.aclose()
                await self._handle.aclose()


async def _read(handle: AsyncFile[bytes], first: int, length: int) -> AsyncGenerator[bytes, None]:
    """``length`` bytes of ``handle`` from offset ``first``, in :data:`CHUNK_SIZE` pieces.

    Stops early if the file shrank under us: the body is then shorter than the
    Content-Length already sent, and the server drops the connection.
    """
    await handle.seek(first)
    remaining = length
    while remaining > 0:
        chunk = await handle.read(min(CHUNK_SIZE, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk
