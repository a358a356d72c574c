"""``/ws``: each listener's websocket, fed from their connection's queue in the hub.

Sources: the browser (its token on connect, see :mod:`gateway.routes.access`: from a
browser, the subprotocol entry ``cadenza.token.<token>`` next to ``cadenza.v1``, which
is the one accepted and echoed; then its ``play`` frames, and its pongs and whatever
else it sends, which only prove it is alive) and the connection's bounded queue in
:class:`gateway.hub.Hub` (recommendations, trending windows, pings, the answers to its
plays). Destinations: the browser (a ``hello``, then every queued message), the play
intake (:mod:`gateway.intake`: each ``play`` frame published to ``cadenza.plays`` and
answered with a ``play_ack`` or ``play_error``, in order, without holding up the
reading of the frames behind it), the hub (connects, disconnects, frames heard) and
:class:`gateway.metrics.GatewayMetrics` (connections, fan-out latency, refusals, frames).

Plays: see :mod:`gateway.intake` for the frames (``play`` in, ``play_ack`` or
``play_error`` out); a socket's plays share the listener's rate with ``POST /api/plays``.
Frames over 4 KiB are not read; over 64 KiB, uvicorn closes the socket (1009,
``cadenza gateway``'s ``ws_max_size``).

Close codes: 4401 a bad token, or one revoked while the socket is open (the account disabled
or deleted, a new password: :mod:`gateway.revocations`); 4403 the session cookie offered by
a page of another site (its ``Origin`` is not this gateway's); 4429 one socket more than
``CADENZA_WS_MAX_PER_LISTENER`` (the new socket is refused, the listener's others stay);
1013 (try again later) the process serves ``CADENZA_WS_MAX_CONNECTIONS`` already; 4408 a
connection the hub gives up on: too slow (queue full), silent (three unanswered pings), or a
send that did not complete within ``CADENZA_WS_SEND_TIMEOUT_S`` (a browser that stopped reading).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Final

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from gateway.errors import AuthError, ForbiddenError
from gateway.hub import CLOSE_SLOW, CLOSE_UNAUTHORIZED, Connection, Hub
from gateway.intake import PUBLISH_TIMEOUT_S, PlayIntake, PlayLane, read_frame
from gateway.metrics import GatewayMetrics
from gateway.routes.access import WS_PROTOCOL, Guard
from gateway.state import Gateway

#: Longest the closing handshake may take before the socket is left to the server.
CLOSE_TIMEOUT_S: Final = 1.0
#: The session cookie offered from another site's page.
CLOSE_FORBIDDEN: Final = 4403
#: Why the hub closed a socket, by code.
REASONS: Final = {CLOSE_SLOW: "too slow or silent", CLOSE_UNAUTHORIZED: "token revoked: sign in again"}


def route(gw: Gateway, guard: Guard) -> WebSocketRoute:
    """``/ws`` of the gateway ``gw``."""
    hub, metrics, settings = gw.hub, gw.metrics, gw.settings
    intake = PlayIntake(gw)

    async def ws(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or ()
        await websocket.accept(subprotocol=WS_PROTOCOL if WS_PROTOCOL in offered else None)
        try:
            who = guard.claims(websocket)
        except AuthError as err:
            await close(websocket, CLOSE_UNAUTHORIZED, str(err))
            return
        except ForbiddenError as err:
            await close(websocket, CLOSE_FORBIDDEN, str(err))
            return
        refused = hub.refuse(
            who.user_id, per_listener=settings.ws_max_per_listener, total=settings.ws_max_connections
        )
        if refused is not None:
            await close(websocket, *refused)
            return
        conn = hub.connect(who.user_id, who.issued_at)
        metrics.connections_total += 1
        lane = PlayLane(intake, hub, conn)
        try:
            try:
                await websocket.send_text(json.dumps({"type": "hello", "user_id": who.user_id}))
                hub.greet(conn)
                code = await serve(websocket, conn, hub, metrics, settings.ws_send_timeout_s, lane=lane)
            finally:
                hub.disconnect(conn)
            if code is not None:
                await close(websocket, code, REASONS.get(code, "closed"))
        finally:  # the plays received are still published (their answers find no socket)
            await lane.finish(PUBLISH_TIMEOUT_S)

    return WebSocketRoute("/ws", ws)


async def close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with ``code``, waiting at most :data:`CLOSE_TIMEOUT_S` (a browser that stopped
    reading never takes the close frame; the server then drops the socket once it can)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason[:120]), CLOSE_TIMEOUT_S)


async def serve(
    websocket: WebSocket,
    conn: Connection,
    hub: Hub,
    metrics: GatewayMetrics,
    send_timeout_s: float,
    *,
    lane: PlayLane | None = None,
) -> int | None:
    """Run one connection with two tasks: a writer draining its queue, a reader taking
    the browser's frames (plays handed to ``lane``, which publishes them in order while the
    reader goes on; without one, plays are ignored like any other frame); the close code
    when the hub gave up on the connection (4408), ``None`` when the browser went away or
    the socket broke."""

    async def writer() -> int:
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            while conn.closing is None and (message := conn.next_message()) is not None:
                text, queued = message
                try:
                    async with asyncio.timeout(send_timeout_s):
                        await websocket.send_text(text)
                except TimeoutError:
                    hub.timed_out(conn)
                    break
                metrics.pushed(time.perf_counter() - queued)
            if conn.closing is not None:
                return conn.closing

    async def reader() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            conn.heard()  # any frame: the browser is alive
            text = message.get("text")
            if not isinstance(text, str):  # bytes: nothing of ours
                metrics.ws_frames["ignored"] += 1
                continue
            frame = read_frame(text)
            if isinstance(frame, str):  # a pong, another type, or not ours: nothing to answer
                metrics.ws_frames[frame] += 1
            else:
                metrics.ws_frames["play"] += 1
                if lane is not None:
                    lane.take(frame)

    tasks = [asyncio.ensure_future(writer()), asyncio.ensure_future(reader())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
    finished = next(iter(done))
    if finished.cancelled() or finished.exception() is not None:
        return None  # the socket broke
    code: int | None = finished.result()
    return code
