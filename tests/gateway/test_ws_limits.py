"""Websockets under hostile or broken clients (issue 21): a browser that stops reading, too many
sockets per listener or per process, the token in a subprotocol, odd frames.

The send timeout needs a real socket whose reader stalls (:mod:`tests.gateway.live_server`):
the TestClient's websocket never blocks a send. The rest are component tests.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from gateway.app import create_app
from gateway.hub import CLOSE_SLOW, CLOSE_TOO_MANY, CLOSE_TRY_LATER, CLOSE_UNAUTHORIZED, Hub
from gateway.routes.access import TOKEN_PROTOCOL, WS_PROTOCOL
from infra.prometheus import parse_metrics
from infra.settings import Settings
from tests.gateway.conftest import token_for
from tests.gateway.live_server import serve


def receive(ws: Any) -> dict[str, Any]:
    return json.loads(ws.receive_text())  # type: ignore[no-any-return]


def hub_of(client: TestClient) -> Hub:
    return client.app.state.gateway.hub  # type: ignore[attr-defined,no-any-return]


def metrics(client: TestClient) -> dict[str, float]:
    return parse_metrics(client.get("/metrics").text)


# --- finding 5: a browser that stops reading -----------------------------------------------------


def test_a_connection_marked_closing_leaves_the_hub_at_once() -> None:
    """Queue overflow and silence mark a connection closing; it is out of the hub's counts and
    fan-out there and then, whatever its writer is doing (e.g. stuck in a send)."""

    async def scenario() -> None:
        hub = Hub(queue_size=2)
        slow, other = hub.connect("a"), hub.connect("a")
        for i in range(3):
            hub.push("a", f"m{i}")
        assert slow.closing == other.closing == CLOSE_SLOW
        assert hub.count() == 0 and hub.listeners() == 0 and hub.metrics.connections == 0
        quiet = hub.connect("q")
        beat = asyncio.create_task(hub.heartbeat(0.01))
        await asyncio.sleep(0.08)
        beat.cancel()
        assert quiet.closing == CLOSE_SLOW and hub.count() == 0
        hub.disconnect(quiet)  # the endpoint's own disconnect later changes nothing
        assert hub.count() == 0 and hub.metrics.connections == 0

    asyncio.run(scenario())


def stalled_websocket(port: int, token: str) -> socket.socket:
    """A websocket handshake on a socket with a tiny receive buffer, which is then never read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_a_browser_that_stops_reading_is_timed_out_removed_and_dropped(component_settings: Settings) -> None:
    settings = component_settings.model_copy(update={"ws_send_timeout_s": 0.5, "ws_queue_size": 64})
    app = create_app(settings, start_feed=False)
    with serve(app) as running:
        hub = running.gateway.hub
        stalled = stalled_websocket(running.port, token_for("stalled", settings))
        try:
            deadline = time.monotonic() + 5
            while running.call(hub.count) != 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            big = json.dumps({"type": "recommendations", "data": {"pad": "x" * (1 << 20)}})
            for _ in range(16):  # 16 MiB: far more than the socket buffers hold; the queue keeps 64
                running.call(hub.push, "stalled", big)
            pushed = time.monotonic()
            while running.call(hub.count) != 0:
                assert time.monotonic() - pushed < 0.5 + 3.0, "still in the hub after the send timeout"
                time.sleep(0.02)
            assert running.gateway.metrics.send_timeouts == 1
            # ... and the endpoint has given up on its closing handshake and returned (its tasks
            # and queue are gone), though the client never read another byte. The TCP socket
            # itself is uvicorn's to drop: it waits for its buffer to drain (see the README).
            while running.asgi_tasks() != 0:
                assert time.monotonic() - pushed < 0.5 + 1.0 + 3.0, "the websocket endpoint is still running"
                time.sleep(0.02)
        finally:
            stalled.close()


# --- finding 6: connection caps ------------------------------------------------------------------


def test_a_listener_gets_at_most_the_cap_of_sockets_and_the_next_is_refused(
    component_settings: Settings,
) -> None:
    settings = component_settings.model_copy(update={"ws_max_per_listener": 2})
    with TestClient(create_app(settings, start_feed=False)) as client:
        hub = hub_of(client)
        protocols = [WS_PROTOCOL, TOKEN_PROTOCOL + token_for("erin", settings)]
        with client.websocket_connect("/ws", subprotocols=protocols) as a:
            assert receive(a)["type"] == "hello"
            with client.websocket_connect("/ws", subprotocols=protocols) as b:
                assert receive(b)["type"] == "hello"
                with (
                    client.websocket_connect("/ws", subprotocols=protocols) as c,
                    pytest.raises(WebSocketDisconnect) as refused,
                ):
                    c.receive_text()
                assert refused.value.code == CLOSE_TOO_MANY and "2" in refused.value.reason
                assert hub.count() == 2
                other = [WS_PROTOCOL, TOKEN_PROTOCOL + token_for("frank", settings)]
                with client.websocket_connect("/ws", subprotocols=other) as f:  # someone else is fine
                    assert receive(f)["type"] == "hello"
            with client.websocket_connect("/ws", subprotocols=protocols) as again:  # one left: room again
                assert receive(again)["type"] == "hello"
        assert metrics(client)['cadenza_gateway_refused_total{reason="ws_listener_cap"}'] == 1


def test_the_process_cap_refuses_with_try_again_later(component_settings: Settings) -> None:
    settings = component_settings.model_copy(update={"ws_max_connections": 2})
    with TestClient(create_app(settings, start_feed=False)) as client:
        url = "/ws"

        def protocols(user: str) -> list[str]:
            return [WS_PROTOCOL, TOKEN_PROTOCOL + token_for(user, settings)]

        with (
            client.websocket_connect(url, subprotocols=protocols("u1")) as a,
            client.websocket_connect(url, subprotocols=protocols("u2")) as b,
        ):
            receive(a), receive(b)
            with (
                client.websocket_connect(url, subprotocols=protocols("u3")) as c,
                pytest.raises(WebSocketDisconnect) as refused,
            ):
                c.receive_text()
            assert refused.value.code == CLOSE_TRY_LATER
        assert metrics(client)['cadenza_gateway_refused_total{reason="ws_process_cap"}'] == 1


# --- tokens in the subprotocol ------------------------------------------------------------------


def test_the_token_can_come_in_a_subprotocol_and_is_never_echoed(component_settings: Settings) -> None:
    token = token_for("gina", component_settings)
    with TestClient(create_app(component_settings, start_feed=False)) as client:
        with client.websocket_connect("/ws", subprotocols=[WS_PROTOCOL, TOKEN_PROTOCOL + token]) as ws:
            assert receive(ws) == {"type": "hello", "user_id": "gina"}
            assert ws.accepted_subprotocol == WS_PROTOCOL  # type: ignore[attr-defined]
        forged = TOKEN_PROTOCOL + token[:-2] + "xx"
        with (
            client.websocket_connect("/ws", subprotocols=[WS_PROTOCOL, forged]) as ws,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            ws.receive_text()
        assert closed.value.code == CLOSE_UNAUTHORIZED


def test_binary_and_junk_frames_from_the_browser_do_not_break_the_socket(
    component_settings: Settings,
) -> None:
    token = token_for("hal", component_settings)
    with TestClient(create_app(component_settings, start_feed=False)) as client:
        hub = hub_of(client)
        with client.websocket_connect("/ws", subprotocols=[WS_PROTOCOL, TOKEN_PROTOCOL + token]) as ws:
            receive(ws)
            ws.send_bytes(b"\xff\x00" * 100)
            ws.send_text("\x00" * 1000)
            ws.send_text("[" * 10_000)
            client.portal.call(hub.push, "hal", '{"type":"recommendations","data":{"items":[]}}')  # type: ignore[union-attr]
            assert receive(ws)["type"] == "recommendations"
