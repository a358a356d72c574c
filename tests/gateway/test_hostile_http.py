"""Hostile HTTP input to the gateway (issue 21): number parameters, JSON bodies, body size,
tokens in logs, the plays rate limit, and where tokens may come from.

Component tests on ``create_app(settings, start_feed=False)`` with in-memory MongoDB and
Kafka stand-ins (:mod:`tests.gateway.fakes`); what needs a socket (a body arriving in
chunks, uvicorn's access log) runs a real uvicorn on 127.0.0.1 (:mod:`tests.gateway.live_server`).
"""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn.config
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.routes.params import MAX_BODY, int_param
from infra.logs import setup_logging
from infra.settings import Settings
from tests.gateway import fakes
from tests.gateway.conftest import token_for
from tests.gateway.live_server import serve

TRACKS = [{"_id": i, "title": f"Song {i}", "genre_top": "Rock", "audio_path": f"{i}.mp3"} for i in (1, 2, 3)]


def client_with_fakes(settings: Settings) -> TestClient:
    """A component client whose gateway has the fake catalogue (tracks 1-3) and producer."""
    app = create_app(settings, start_feed=False)
    app.state.gateway.mongo = fakes.Mongo(TRACKS)
    app.state.gateway.producer = fakes.Producer()
    return TestClient(app)


@pytest.fixture
def faked(component_settings: Settings) -> Iterator[TestClient]:
    with client_with_fakes(component_settings) as client:
        yield client


def bearer(settings: Settings, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user, settings)}"}


def metric(client: TestClient, line_start: str) -> float:
    """The value of the one ``/metrics`` sample whose line starts with ``line_start``."""
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(line_start)]
    assert len(lines) == 1, (line_start, lines)
    return float(lines[0].rsplit(" ", 1)[1])


# --- finding 1: number parameters ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["²", "١٢", "１２", "⁵", "𝟗", "-1", "+1", " 1", "1 ", "", "1e3", "9" * 10])
def test_a_number_parameter_that_is_not_ascii_digits_gets_the_default(text: str) -> None:
    assert int_param(text, 7) == 7


def test_number_parameters_of_every_route_refuse_unicode_digits(
    faked: TestClient, component_settings: Settings
) -> None:
    """``"²".isdigit()`` is True but ``int("²")`` raises: each route that reads a number answers
    as if the parameter were absent, never 500."""
    h = bearer(component_settings)
    for digit in ("²", "١", "൬"):
        page = faked.get(f"/api/tracks?page={digit}&per_page={digit}", headers=h)
        assert page.status_code == 200, page.text
        assert (page.json()["page"], page.json()["per_page"]) == (1, 50)
        similar = faked.get(f"/api/tracks/1/similar?limit={digit}", headers=h)
        assert similar.status_code == 200, similar.text
    assert faked.get("/api/tracks?page=2&per_page=2", headers=h).json()["items"][0]["track_id"] == 3


# --- finding 2: deeply nested JSON -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/plays", "/api/signin"])
def test_deeply_nested_json_is_a_clear_400(
    faked: TestClient, component_settings: Settings, path: str
) -> None:
    h = bearer(component_settings)
    for body in (b"[" * 10_000, b"[" * 5_000 + b"]" * 5_000, b'{"a":' * 2_000 + b"1" + b"}" * 2_000):
        r = faked.post(path, content=body, headers=h)
        assert r.status_code == 400, (body[:10], r.status_code, r.text[:200])
        assert r.json()["field"] == "body" and "nested" in r.json()["error"]
    shallow = faked.post(path, content=b'{"a":[[[[1]]]]}', headers=h)
    assert shallow.status_code == 422  # parsed, then refused by the route's own checks


# --- finding 3: body size ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/plays", "/api/signin"])
def test_a_body_over_the_limit_is_413_and_closes_the_connection(
    faked: TestClient, component_settings: Settings, path: str
) -> None:
    h = bearer(component_settings)
    at_limit = b'{"name": "x y"}'.ljust(MAX_BODY)  # JSON, refused by either route (422)
    assert faked.post(path, content=at_limit, headers=h).status_code == 422
    over = faked.post(path, content=at_limit + b" ", headers=h)
    assert over.status_code == 413, over.text
    assert "16384" in over.json()["error"] and over.json()["field"] == "body"
    assert over.headers["connection"] == "close"
    assert metric(faked, 'cadenza_gateway_refused_total{reason="body_too_large"}') == 1


def test_a_100_mib_chunked_body_is_refused_without_being_read(component_settings: Settings) -> None:
    """A real server: the plays route reads the chunked body in pieces and answers 413 once
    past 16 KiB, closing the connection; the client's generator is never drained."""
    sent = 0
    total = 100 * 1024 * 1024

    def body() -> Iterator[bytes]:
        nonlocal sent
        chunk = b" " * 65536
        while sent < total:
            sent += len(chunk)
            yield chunk

    app = create_app(component_settings, start_feed=False)
    with serve(app) as running, httpx.Client(timeout=30) as http:
        r = http.post(f"{running.url}/api/plays", content=body(), headers=bearer(component_settings))
    assert r.status_code == 413, r.text
    assert r.json()["field"] == "body"
    assert sent < 16 * 1024 * 1024, f"the client got to send {sent:,} of {total:,} bytes"


def test_an_announced_content_length_over_the_limit_is_refused_before_reading(
    component_settings: Settings,
) -> None:
    app = create_app(component_settings, start_feed=False)
    token = token_for("alice", component_settings)
    head = (
        "POST /api/plays HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n"
    ).encode()
    with serve(app) as running, socket.create_connection(("127.0.0.1", running.port), timeout=5) as s:
        s.sendall(head + b"{")  # one byte of the announced 100 MiB, then nothing
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = s.recv(4096)  # times out (the test fails) if the server waits for the body
            assert piece, "closed without an answer"
            answer += piece
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


# --- finding 4: tokens never reach the logs ----------------------------------------------------


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_tokens_in_query_strings_never_reach_the_access_log(
    component_settings: Settings, restored_logging: None
) -> None:
    """As ``cadenza gateway`` runs: ``setup_logging``, then uvicorn with its own logging config
    and access log. Tokens sent in ``?token=`` (also percent-encoded, or with a second
    parameter) are redacted from every line uvicorn writes, HTTP and websocket."""
    setup_logging("INFO", "console")
    app = create_app(component_settings, start_feed=False)
    secret = token_for("alice", component_settings)
    lines = io.StringIO()
    capture = logging.StreamHandler(lines)
    capture.setFormatter(logging.Formatter("%(name)s %(message)s"))
    with serve(app, log_config=uvicorn.config.LOGGING_CONFIG, access_log=True) as running:
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).addHandler(capture)
        try:
            with httpx.Client(base_url=running.url) as http:
                assert http.get(f"/api/me?token={secret}").status_code == 200
                assert http.get(f"/api/me?a=1&tok%65n={secret}&b=2").status_code == 200
                assert http.get(f"/api/me?TOKEN={secret}").status_code == 401
            upgrade = (
                f"GET /ws?token={secret} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            )
            with socket.create_connection(("127.0.0.1", running.port), timeout=5) as s:
                s.sendall(upgrade.encode())
                assert s.recv(4096).startswith(b"HTTP/1.1 101")
            deadline = time.monotonic() + 5
            while "WebSocket" not in lines.getvalue() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            for name in ("uvicorn.access", "uvicorn.error"):
                logging.getLogger(name).removeHandler(capture)
    text = lines.getvalue()
    assert text.count("GET /api/me?") == 3 and "WebSocket /ws?" in text, text
    assert secret not in text and secret.split(".")[1] not in text, text
    assert "token=[redacted]" in text and "tok%65n=[redacted]" in text and "TOKEN=[redacted]" in text


# --- finding 6: the plays rate limit -------------------------------------------------------------


def test_plays_over_the_listeners_rate_get_429_with_retry_after(component_settings: Settings) -> None:
    settings = component_settings.model_copy(update={"plays_rate_per_s": 0.5, "plays_burst": 3})
    now = [1000.0]
    with client_with_fakes(settings) as client:
        gw: Any = client.app.state.gateway  # type: ignore[attr-defined]
        gw.plays_limiter.clock = lambda: now[0]
        alice, bob = bearer(settings, "alice"), bearer(settings, "bob")
        play = {"track_id": 1, "kind": "play"}
        assert [client.post("/api/plays", json=play, headers=alice).status_code for _ in range(3)] == [
            202
        ] * 3
        refused = client.post("/api/plays", json=play, headers=alice)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
        assert "rate" in refused.json()["error"]
        assert client.post("/api/plays", json=play, headers=bob).status_code == 202  # others carry on
        now[0] += 2.0  # one token back
        assert client.post("/api/plays", json=play, headers=alice).status_code == 202
        assert client.post("/api/plays", json=play, headers=alice).status_code == 429
        assert len(gw.producer.sent) == 5
        assert metric(client, 'cadenza_gateway_refused_total{reason="plays_rate"}') == 2


# --- tokens: where they may come from ------------------------------------------------------------


def test_a_listener_without_a_client_gets_503_not_500(
    component: TestClient, component_settings: Settings
) -> None:
    h = bearer(component_settings)
    for path in ("/api/tracks", "/api/tracks/1", "/api/tracks/1/similar", "/api/genres", "/audio/1"):
        r = component.get(path, headers=h)
        assert r.status_code == 503 and "MongoDB" in r.json()["error"], (path, r.text)
    r = component.post("/api/plays", json={"track_id": 1, "kind": "play"}, headers=h)
    assert r.status_code == 503


def test_a_session_cookie_lets_audio_play_without_a_token_in_the_url(
    component_settings: Settings, tmp_path: Path
) -> None:
    settings = component_settings.model_copy(update={"fma_dir": tmp_path / "audio"})
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "1.mp3").write_bytes(bytes(range(256)))
    with client_with_fakes(settings) as client:
        assert client.get("/audio/1").status_code == 401
        started = client.post("/api/session", headers=bearer(settings, "carol"))
        assert started.status_code == 200 and started.json()["user_id"] == "carol"
        cookie = started.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        part = client.get("/audio/1", headers={"Range": "bytes=0-9"})  # the cookie alone
        assert part.status_code == 206 and part.content == bytes(range(10))
        assert client.get("/api/me").json()["user_id"] == "carol"
        assert client.delete("/api/session").status_code == 204
        assert client.get("/audio/1").status_code == 401


def test_query_tokens_can_be_turned_off(component_settings: Settings) -> None:
    token = token_for("dave", component_settings)
    with TestClient(create_app(component_settings, start_feed=False)) as on:
        assert on.get(f"/api/me?token={token}").status_code == 200  # older clients, by default
    off = component_settings.model_copy(update={"gateway_query_token": False})
    with TestClient(create_app(off, start_feed=False)) as client:
        r = client.get(f"/api/me?token={token}")
        assert r.status_code == 401 and "no token" in r.json()["error"]
        assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
