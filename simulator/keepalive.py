"""A bounded pool of keep-alive HTTP/1.1 connections for the simulator's ``POST /api/plays``.

Source: the simulator's requests (a path, a JSON body, headers). Destination: the
gateway, over at most ``size`` persistent connections; the answer comes back as
``(status, body)``.

Why not httpx: its connection pool checks every connection on every request, so with
the 64 connections the simulator keeps open, the client took more CPU per play than
the gateway serving it, and on a shared machine it capped the rate it could offer
(54 plays/s of 200 asked). This client writes a request and reads one response with a
``Content-Length`` (what the gateway always sends), and nothing else: no redirects, no
chunked bodies (refused as :class:`HTTPClientError`), no TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Final
from urllib.parse import urlsplit

from simulator.errors import ClosedUnansweredError, HTTPClientError

MAX_HEADER_BYTES: Final = 64 * 1024


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class KeepAlivePool:
    def __init__(self, base_url: str, size: int, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"need an http:// URL with a host, not {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.authority = parts.netloc
        self.timeout_s = timeout_s
        self._idle: deque[Conn] = deque()
        self._slots = asyncio.Semaphore(size)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``path``; the status and the response body.
        ``OSError``/``TimeoutError``/:class:`HTTPClientError` when it cannot be done."""
        head = [f"POST {path} HTTP/1.1", f"Host: {self.authority}", "Content-Type: application/json"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with self._slots:
            reused = bool(self._idle)
            conn = self._idle.popleft() if reused else await self._open()
            try:
                status, answer, keep = await self._timed(conn, request)
            except (ClosedUnansweredError, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # An idle connection the server had closed (its keep-alive timeout): the
                # request never reached it, so it is sent once more on a new connection.
                # (Were it a crash after the request was handled, the play's event_id makes
                # the second copy the same event.)
                conn = await self._open()
                status, answer, keep = await self._timed(conn, request)
            if keep:
                self._idle.append(conn)
            else:
                _close(conn[1])
            return status, answer

    async def _timed(self, conn: Conn, request: bytes) -> tuple[int, bytes, bool]:
        try:
            return await asyncio.wait_for(self._exchange(*conn, request), self.timeout_s)
        except BaseException:
            _close(conn[1])
            raise

    async def _open(self) -> Conn:
        opening = asyncio.open_connection(self.host, self.port, limit=MAX_HEADER_BYTES)
        return await asyncio.wait_for(opening, self.timeout_s)

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes, bool]:
        writer.write(request)
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as err:
            if err.partial:
                raise HTTPClientError("the server closed the connection mid-answer") from err
            raise ClosedUnansweredError("the server closed the connection before answering") from err
        except asyncio.LimitOverrunError as err:
            raise HTTPClientError("response headers too long") from err
        status, headers = parse_head(head)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise HTTPClientError("chunked responses are not supported")
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise HTTPClientError(f"bad Content-Length: {length[:40]!r}")
        try:
            body = await reader.readexactly(int(length))
        except asyncio.IncompleteReadError as err:
            raise HTTPClientError("the server closed the connection mid-body") from err
        return status, body, headers.get("connection", "").lower() != "close"

    async def close(self) -> None:
        """Close the idle connections (call once the requests are done)."""
        while self._idle:
            _reader, writer = self._idle.popleft()
            _close(writer)
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and headers (lower-case names) of a response head; HTTPClientError if malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HTTPClientError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise HTTPClientError(f"malformed header line: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
