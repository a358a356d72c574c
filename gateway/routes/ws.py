"""``/ws``: each listener's websocket, fed from their connection's queue in the hub.

Sources: the browser (its token on connect, then its pongs) and the connection's bounded
queue in :class:`gateway.hub.Hub` (recommendations, trending windows, pings).
Destinations: the browser (a ``hello``, then every queued message), the hub (connects,
disconnects, pongs heard) and :class:`gateway.metrics.GatewayMetrics` (connections,
fan-out latency). A bad token closes with 4401; a connection the hub gives up on (too
slow, or silent) with 4408.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from gateway.errors import AuthError
from gateway.hub import CLOSE_UNAUTHORIZED, Connection
from gateway.metrics import GatewayMetrics
from gateway.routes.access import Guard
from gateway.state import Gateway


def route(gw: Gateway, guard: Guard) -> WebSocketRoute:
    """``/ws`` of the gateway ``gw``."""
    hub, metrics = gw.hub, gw.metrics

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            who = guard.claims(websocket)
        except AuthError as err:
            await websocket.close(CLOSE_UNAUTHORIZED, str(err)[:120])
            return
        conn = hub.connect(who.user_id)
        metrics.connections_total += 1
        try:
            await websocket.send_text(json.dumps({"type": "hello", "user_id": who.user_id}))
            hub.greet(conn)
            await serve(websocket, conn, metrics)
        finally:
            hub.disconnect(conn)

    return WebSocketRoute("/ws", ws)


async def serve(websocket: WebSocket, conn: Connection, metrics: GatewayMetrics) -> None:
    """Run one connection with two tasks: a writer draining its queue, a reader taking
    the browser's pongs; returns when the browser leaves or the hub closes the
    connection (too slow, or silent: code 4408)."""

    async def writer() -> int:
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            while conn.closing is None and (message := conn.next_message()) is not None:
                text, queued = message
                await websocket.send_text(text)
                metrics.pushed(time.perf_counter() - queued)
            if conn.closing is not None:
                return conn.closing

    async def reader() -> None:
        while True:
            await websocket.receive_text()
            conn.heard()

    tasks = [asyncio.ensure_future(writer()), asyncio.ensure_future(reader())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
    finished = next(iter(done))
    code = None if finished.cancelled() or finished.exception() is not None else finished.result()
    if code is None:
        return  # the browser went away (WebSocketDisconnect) or the socket broke
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, "too slow or silent"), 1.0)
