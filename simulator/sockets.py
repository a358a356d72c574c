"""The simulated listeners' websockets: one ``/ws`` per listener, recommendations recorded as they arrive.

Source: the gateway's ``/ws`` (opened with each listener's signed token; bounded connect
concurrency): its ``hello``, its pings, the recommendations it pushes, each with the
event that caused it, and the answers to the listener's plays (``play_ack`` /
``play_error``, matched to the play by its ``ref``). Destinations: the pongs answering the
gateway's pings, the ``play`` frames of :class:`simulator.senders.SocketSender` (sent on
the listener's own socket, :meth:`Sockets.send_play`), and the run's
:class:`simulator.report.Tally` (each arrival with its local receive time, and socket
errors by reason), which :mod:`simulator.run` turns into the report; and each listener's
newest list (:attr:`Sockets.latest`), which closed-loop listeners choose from
(:mod:`simulator.closed_loop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from simulator.errors import SocketClosedError
from simulator.progress import Bar
from simulator.report import Tally

OPEN_TIMEOUT_S: Final = 15.0


def ws_url(base: str, token: str) -> str:
    """The websocket address of a gateway at ``base`` (http -> ws, https -> wss)."""
    scheme, sep, rest = base.rstrip("/").partition("://")
    if not sep:
        scheme, rest = "http", base.rstrip("/")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?token={token}"


class Sockets:
    """One websocket per listener: hello awaited, pings answered, recommendations recorded."""

    def __init__(self, base: str, tally: Tally, concurrency: int) -> None:
        self.base, self.tally = base, tally
        self.sem = asyncio.Semaphore(concurrency)
        self.open: dict[str, ClientConnection] = {}
        self.readers: list[asyncio.Task[None]] = []
        self.closing = False
        #: Plays sent and not answered yet: ref -> (listener, the answer to come).
        self.replies: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        #: Each listener's newest "Up next" (track ids), what a closed-loop listener chooses from.
        self.latest: dict[str, list[int]] = {}

    async def connect_all(self, tokens_of: dict[str, str], bar: Bar) -> None:
        async def one(user: str, token: str) -> None:
            await self._open(user, token)
            bar.update(len(self.open))

        await asyncio.gather(*(one(user, token) for user, token in tokens_of.items()))

    async def _open(self, user: str, token: str) -> None:
        async with self.sem:
            try:
                ws = await connect(
                    ws_url(self.base, token),
                    open_timeout=OPEN_TIMEOUT_S,
                    ping_interval=None,  # the gateway pings; we answer in _read
                    close_timeout=2,
                    proxy=None,
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as err:
                self.tally.socket_errors[f"connect: {type(err).__name__}"] += 1
                return
            try:
                hello = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
            except ConnectionClosed:  # e.g. 4401: the gateway does not accept our tokens
                self.tally.socket_errors[f"closed before hello ({ws.close_code})"] += 1
                await _close(ws)
                return
            except (TimeoutError, ValueError) as err:
                self.tally.socket_errors[f"hello: {type(err).__name__}"] += 1
                await _close(ws)
                return
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            self.tally.socket_errors["first message not a hello"] += 1
            await _close(ws)
            return
        self.open[user] = ws
        self.readers.append(asyncio.create_task(self._read(user, ws), name=f"ws-{user}"))

    async def _read(self, user: str, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                at = time.time()
                try:
                    message = json.loads(raw)
                except ValueError:
                    self.tally.socket_errors["message not JSON"] += 1
                    continue
                if not isinstance(message, dict):
                    continue
                kind = message.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "ts": message.get("ts")}))
                elif kind in ("play_ack", "play_error"):
                    waiting = self.replies.pop(str(message.get("ref")), None)
                    if waiting is not None and not waiting[1].done():
                        waiting[1].set_result(message)
                elif kind == "recommendations":
                    data = message.get("data")
                    cause = data.get("cause_event_id") if isinstance(data, dict) else None
                    self.tally.arrived(user, at, cause)
                    listed = track_ids(data.get("items") if isinstance(data, dict) else None)
                    if listed is not None:
                        self.latest[user] = listed
        except ConnectionClosed:
            pass
        if not self.closing:
            self.tally.socket_errors[f"closed by the gateway ({ws.close_code})"] += 1
        for ref, (who, answer) in list(self.replies.items()):
            if who == user:
                del self.replies[ref]
                if not answer.done():
                    answer.set_exception(SocketClosedError(f"the socket closed ({ws.close_code})"))

    async def send_play(self, user: str, ref: str, frame: str) -> asyncio.Future[dict[str, Any]]:
        """Send the ``play`` frame ``frame`` (whose ``ref`` is ``ref``) on ``user``'s socket; the
        future of the gateway's answer. :class:`SocketClosedError` if the listener has no open socket."""
        ws = self.open.get(user)
        if ws is None:
            raise SocketClosedError("the listener's socket did not open")
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[ref] = (user, answer)
        try:
            await ws.send(frame)
        except ConnectionClosed:
            self.replies.pop(ref, None)
            raise SocketClosedError(f"the socket closed ({ws.close_code})") from None
        return answer

    def forget(self, ref: str) -> None:
        """Stop waiting for the answer to ``ref`` (given up)."""
        self.replies.pop(ref, None)

    async def close_all(self) -> None:
        self.closing = True
        await asyncio.gather(*(_close(ws) for ws in self.open.values()))
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def _close(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), 3.0)


def track_ids(items: Any) -> list[int] | None:
    """The track ids of a recommendation's ``items`` (None when they are not a list; items
    without an integer ``track_id`` are left out)."""
    if not isinstance(items, list):
        return None
    ids = (item.get("track_id") if isinstance(item, dict) else None for item in items)
    return [t for t in ids if isinstance(t, int) and not isinstance(t, bool)]
