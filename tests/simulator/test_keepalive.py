"""The simulator's keep-alive HTTP client (simulator/keepalive.py) against small loopback servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from simulator.errors import HTTPClientError
from simulator.keepalive import KeepAlivePool, parse_head

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    """A server calling ``handler(reader, writer, connection number)``; the connections opened."""
    opened: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(len(opened))
        try:
            await handler(reader, writer, opened[-1])
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", opened


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


def _answer(status: int, body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    """Answers each request with its request line, auth header, body and connection number."""
    while True:
        try:
            line, headers, body = await _read_request(reader)
        except asyncio.IncompleteReadError:
            return
        seen = {"line": line, "auth": headers.get("authorization"), "body": json.loads(body), "conn": n}
        writer.write(_answer(202, json.dumps(seen).encode()))
        await writer.drain()


def test_requests_share_at_most_size_connections_and_get_their_own_answers() -> None:
    async def run() -> tuple[list[tuple[int, bytes]], list[int]]:
        server, base, opened = await _serve(_echo)
        pool = KeepAlivePool(base, size=3, timeout_s=5)
        answers = await asyncio.gather(
            *(
                pool.post("/api/plays", json.dumps({"i": i}).encode(), {"Authorization": f"Bearer t{i}"})
                for i in range(40)
            )
        )
        await pool.close()
        server.close()
        return answers, opened

    answers, opened = asyncio.run(run())
    assert len(opened) == 3
    for i, (status, body) in enumerate(answers):
        seen = json.loads(body)
        assert status == 202
        assert seen["line"] == "POST /api/plays HTTP/1.1"
        assert seen["auth"] == f"Bearer t{i}" and seen["body"] == {"i": i}


def test_an_idle_connection_the_server_closed_is_replaced_and_the_request_sent_once() -> None:
    async def one_answer_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        _line, _headers, body = await _read_request(reader)
        writer.write(_answer(200, body))
        await writer.drain()  # then closes, as a keep-alive timeout does, unannounced

    async def run() -> tuple[list[tuple[int, bytes]], list[int]]:
        server, base, opened = await _serve(one_answer_then_close)
        pool = KeepAlivePool(base, size=1, timeout_s=5)
        answers = [await pool.post("/", f'"{i}"'.encode(), {}) for i in range(3)]
        await asyncio.sleep(0.05)
        answers.append(await pool.post("/", b'"3"', {}))
        await pool.close()
        server.close()
        return answers, opened

    answers, opened = asyncio.run(run())
    assert answers == [(200, f'"{i}"'.encode()) for i in range(4)]
    assert len(opened) == 4  # each request on its own connection, none sent twice


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "chunked"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "mid-body"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "mid-answer"),
    ],
)
def test_an_answer_that_is_not_one_http_response_is_a_clear_error(reply: bytes, message: str) -> None:
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _read_request(reader)
        writer.write(reply)
        await writer.drain()

    async def run() -> None:
        server, base, _ = await _serve(bad)
        pool = KeepAlivePool(base, size=1, timeout_s=5)
        try:
            await pool.post("/", b"{}", {})
        finally:
            server.close()

    with pytest.raises(HTTPClientError, match=message):
        asyncio.run(run())


def test_a_server_that_never_answers_times_out_and_a_closed_port_is_refused() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await asyncio.sleep(10)

    async def run() -> tuple[type[BaseException], type[BaseException]]:
        server, base, _ = await _serve(silent)
        errors = []
        for url in (base, "http://127.0.0.1:1"):
            try:
                await KeepAlivePool(url, size=1, timeout_s=0.3).post("/", b"{}", {})
            except OSError as err:
                errors.append(type(err))
        server.close()
        return errors[0], errors[1]

    timed_out, refused = asyncio.run(run())
    assert timed_out is TimeoutError
    assert issubclass(refused, ConnectionRefusedError)


def test_parse_head_reads_status_and_lower_cases_header_names() -> None:
    status, headers = parse_head(b"HTTP/1.1 422 Unprocessable\r\nContent-Length: 7\r\nX-Thing:  a b \r\n\r\n")
    assert status == 422
    assert headers == {"content-length": "7", "x-thing": "a b"}
    with pytest.raises(ValueError, match="http:// URL"):
        KeepAlivePool("https://example.invalid", 1, 1.0)
