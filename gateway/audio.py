"""HTTP audio streaming: one track's file served by Starlette's ``FileResponse``.

Sources: the audio root directory and a track's stored relative path (from the track's
document, never from the request: :func:`resolve_audio` refuses anything that leaves
the root), one ``stat`` of the file, and the request's method and conditional headers.
Destination: the response returned to the route. Starlette's ``FileResponse`` does the
protocol: the body streamed in 64 KiB pieces (never the whole file in memory), ``ETag``
and ``Last-Modified``, ``Accept-Ranges``, single ranges (206 with ``Content-Range``),
several ranges (206 ``multipart/byteranges``), ``If-Range``, 416 with
``Content-Range: bytes */size``, HEAD without a body. This module adds what it lacks:
the confinement of stored paths to the audio root, the content types of audio files,
the preconditions that answer 304 and 412, and ignoring a Range it cannot use. Refusals
raise :class:`~gateway.errors.NotFoundError` for the caller to turn into a 404.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from email.utils import parsedate
from pathlib import Path
from types import MappingProxyType
from typing import Final

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, MalformedRangeHeader, PlainTextResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles

from gateway.errors import NotFoundError

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
"""Content-Type by (lower-case) file suffix; anything else is :data:`DEFAULT_TYPE`.

Starlette guesses types with :mod:`mimetypes`, whose table depends on the host
(``/etc/mime.types``); audio types are fixed here instead."""

_PRECONDITIONS: Final = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
# FileResponse never answers 304. Starlette's own 304 test (If-None-Match by weak comparison
# or "*", else If-Modified-Since) lives on StaticFiles but reads nothing of the instance,
# which serves no directory.
_not_modified = StaticFiles(check_dir=False).is_not_modified


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

    Raises :class:`NotFoundError` when the file is missing or not a regular file.
    """
    if request.method not in ("GET", "HEAD"):
        return PlainTextResponse("method not allowed", status_code=405, headers={"Allow": "GET, HEAD"})
    try:
        info = await anyio.to_thread.run_sync(os.stat, file)
    except OSError as exc:
        raise NotFoundError(f"audio file {file.name!r} cannot be read") from exc
    if not stat.S_ISREG(info.st_mode):
        raise NotFoundError(f"audio file {file.name!r} is not a regular file")
    response = AudioFileResponse(
        file, stat_result=info, media_type=content_type(file), headers={"Cache-Control": CACHE_CONTROL}
    )
    return _preconditions(request.headers, response) or response


def _preconditions(request_headers: Headers, response: FileResponse) -> Response | None:
    """The 412 or 304 that a GET or HEAD's preconditions call for instead of ``response``, or None.

    Starlette's FileResponse evaluates none of them (only If-Range): this is RFC 9110
    section 13.2.2, steps 1 to 4. A field sent on several lines is one list (RFC 9110
    section 5.3), so the lines are joined; Starlette's ``Headers.get`` sees only the first.
    """
    fields = Headers(
        {name: ", ".join(lines) for name in _PRECONDITIONS if (lines := request_headers.getlist(name))}
    )
    if _precondition_failed(fields, response.headers):
        return PlainTextResponse(
            "precondition failed: the audio file is not the version named by If-Match or "
            "If-Unmodified-Since; fetch it again without them",
            status_code=412,
        )
    if _not_modified(response.headers, fields):
        return NotModifiedResponse(response.headers)
    return None


def _precondition_failed(fields: Headers, validators: Mapping[str, str]) -> bool:
    """Steps 1-2: If-Match by strong comparison (``*`` matches, the file exists), or without
    it If-Unmodified-Since (an invalid date is ignored), which Starlette lacks."""
    if (if_match := fields.get("if-match")) is not None:
        tags = {tag.strip(" \t") for tag in if_match.split(",")}
        return "*" not in tags and validators["etag"] not in tags
    since = parsedate(fields.get("if-unmodified-since", ""))
    modified = parsedate(validators["last-modified"])
    return since is not None and modified is not None and since < modified


class AudioFileResponse(FileResponse):
    """Starlette's FileResponse, ignoring a Range it cannot use rather than answering 400."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        # Starlette answers a Range in another unit, or a malformed one, with a plain-text
        # 400. RFC 9110 section 14.2: a server MUST ignore a Range in a unit it does not
        # understand, and may ignore an invalid one: no ranges means the whole file, 200.
        # This hook is private to Starlette: tests/gateway/test_audio.py pins the behaviour.
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []
