"""Fan-out of recommendations and trending windows to the websockets of this gateway process.

Sources: :mod:`gateway.feed` (every ``Recommendation`` and ``Trending`` message read
from Kafka), the websocket endpoint (connections come and go) and a heartbeat timer.
Destinations: each connection's bounded send queue, drained by that connection's
writer task in :mod:`gateway.routes.ws`; the latest list per listener (bounded, least recently updated
dropped first) so a (re)connecting listener gets it at once; the counters in
:class:`gateway.metrics.GatewayMetrics`.

A connection whose queue is full is a browser that cannot keep up: it is marked
closing, taken out of the hub there and then, and its writer closes it with code 4408,
so one slow listener never delays the others (pushing never awaits). So is a socket
that has not answered three pings, and one whose send did not complete within the
send timeout (a browser that stopped reading: :meth:`Hub.timed_out`, called by the
writer). So is every socket of a listener whose account was disabled or deleted, or whose
tokens were revoked (:meth:`Hub.revoke`, close 4401). The hub also holds the connection
caps: :meth:`Hub.refuse` says whether one more socket of a listener would pass the
per-listener or the per-process cap.

Trending windows are state, not events: the streaming job emits every open window of
every cluster it updated in a micro-batch (tens per second), and a browser only needs
each cluster's newest. So the hub keeps a window only if it is at least as new as the
one it has for that cluster, and hands the windows that changed to the sockets at most
once per ``CADENZA_GATEWAY_TRENDING_INTERVAL_S`` (:meth:`Hub.trending_pump`), never per
Kafka message: the fan-out costs sockets x intervals, not sockets x windows. A
connection holds the unsent windows per cluster (a newer one replaces an older one)
outside the bounded queue, and its writer sends them all as one ``batch`` frame
(``{"type": "batch", "messages": [<trending message>, …]}``): a burst of windows never
makes a listener "slow", and a browser gets at most one trending frame per interval.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from gateway.metrics import GatewayMetrics

CLOSE_SLOW: Final = 4408
CLOSE_UNAUTHORIZED: Final = 4401
#: One more socket than the per-listener cap: the new one is refused (the others stay).
CLOSE_TOO_MANY: Final = 4429
#: The process serves as many sockets as it may: RFC 6455's "Try Again Later".
CLOSE_TRY_LATER: Final = 1013
CLOSE_SHUTDOWN: Final = 1001


@dataclass(eq=False)
class Connection:
    """One websocket: who it is, what waits to be sent (text, time queued), and whether
    it must be closed (and with which code).

    A connection costs two asyncio tasks (its writer and its reader; a third runs only
    while plays it sent wait to be published, :class:`gateway.intake.PlayLane`); pings and
    liveness checks come from the hub's one heartbeat task, which keeps per-socket
    objects, and so garbage-collection pauses, small with thousands of sockets.
    """

    user_id: str
    limit: int
    #: When the token the socket was opened with was issued (seconds): what a revocation compares.
    issued: float = 0.0
    pending: deque[tuple[str, float]] = field(default_factory=deque)
    #: The newest unsent trending window per cluster (replaced, never queued behind). Never
    #: changed in place: a flush shares one dict (and its batch text) with every socket.
    trending: dict[int, str] = field(default_factory=dict)
    trending_at: float = 0.0
    _trending_text: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: int | None = None
    last_heard: float = field(default_factory=time.monotonic)

    def offer(self, text: str) -> bool:
        """Queue ``text`` without waiting; False when closing, or when the queue is full
        (the connection is then closed as slow)."""
        if self.closing is not None:
            return False
        if len(self.pending) >= self.limit:
            self.close(CLOSE_SLOW)
            return False
        self.pending.append((text, time.perf_counter()))
        self.wake.set()
        return True

    def offer_trending(self, windows: dict[int, str], text: str | None = None) -> bool:
        """Hold ``windows`` (cluster -> message) as the next ones to send, replacing unsent
        windows of the same clusters; ``text`` is their batch frame when already built."""
        if self.closing is not None or not windows:
            return False
        if self.trending:
            self.trending, self._trending_text = {**self.trending, **windows}, None
        else:
            self.trending, self._trending_text = windows, text
            self.trending_at = time.perf_counter()
        self.wake.set()
        return True

    def next_message(self) -> tuple[str, float] | None:
        """What the writer sends next (text, time queued): the queue first, then the held
        windows as one batch frame."""
        if self.pending:
            return self.pending.popleft()
        if self.trending:
            text = self._trending_text or batch_text(self.trending.values())
            self.trending, self._trending_text = {}, None
            return text, self.trending_at
        return None

    def close(self, code: int) -> None:
        if self.closing is None:
            self.closing = code
        self.wake.set()

    def heard(self) -> None:
        self.last_heard = time.monotonic()


@dataclass
class Hub:
    queue_size: int
    latest_kept: int = 100_000
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    _by_user: dict[str, set[Connection]] = field(default_factory=dict)
    _latest: OrderedDict[str, str] = field(default_factory=OrderedDict)
    #: Each cluster's newest trending window (text sent to browsers) and its end time.
    trending: dict[int, str] = field(default_factory=dict)
    trending_end: dict[int, float] = field(default_factory=dict)
    #: Windows kept since the last flush, handed to the sockets at the next one.
    _changed: dict[int, str] = field(default_factory=dict)
    _count: int = 0

    def refuse(self, user_id: str, *, per_listener: int, total: int) -> tuple[int, str] | None:
        """Close code and reason if one more socket of ``user_id`` would pass the process's
        cap (``total``) or the listener's (``per_listener``), counted in the metrics; else None.
        The new socket is the one refused: the listener's open players keep playing."""
        if self._count >= total:
            self.metrics.refused["ws_process_cap"] += 1
            return CLOSE_TRY_LATER, f"this gateway serves {total} websockets already; try again later"
        if len(self._by_user.get(user_id, ())) >= per_listener:
            self.metrics.refused["ws_listener_cap"] += 1
            return CLOSE_TOO_MANY, f"at most {per_listener} open players per listener: close one"
        return None

    def connect(self, user_id: str, issued: float = 0.0) -> Connection:
        conn = Connection(user_id, self.queue_size, issued)
        self._by_user.setdefault(user_id, set()).add(conn)
        self._count += 1
        self.metrics.connections = self._count
        return conn

    def disconnect(self, conn: Connection) -> None:
        conns = self._by_user.get(conn.user_id)
        if conns is not None and conn in conns:
            conns.discard(conn)
            self._count -= 1
            if not conns:
                del self._by_user[conn.user_id]
        self.metrics.connections = self._count

    def drop(self, conn: Connection, code: int) -> None:
        """Mark ``conn`` closing with ``code`` and take it out of the hub at once: it gets no
        more messages and no longer counts, whatever its writer is doing."""
        conn.close(code)
        self.disconnect(conn)

    def revoke(self, user_id: str, before: float | None) -> int:
        """Close (code 4401) the sockets of ``user_id`` opened with a token issued before
        ``before``, or all of them when ``before`` is None; how many."""
        closing = [c for c in self._by_user.get(user_id, ()) if before is None or c.issued < before]
        for conn in closing:
            self.drop(conn, CLOSE_UNAUTHORIZED)
        return len(closing)

    def timed_out(self, conn: Connection) -> None:
        """A send to ``conn`` did not complete in time (the browser stopped reading)."""
        if conn.closing is None:
            self.metrics.send_timeouts += 1
        self.drop(conn, CLOSE_SLOW)

    def count(self) -> int:
        return self._count

    def listeners(self) -> int:
        return len(self._by_user)

    def connections(self) -> list[Connection]:
        return [c for conns in self._by_user.values() for c in conns]

    async def heartbeat(self, interval_s: float) -> None:
        """Every ``interval_s``: ping every socket, and close those silent for three
        intervals (code 4408). Runs for the life of the gateway."""
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            ping = json.dumps({"type": "ping", "ts": time.time()})
            for conn in self.connections():
                if now - conn.last_heard > 3 * interval_s:
                    self.drop(conn, CLOSE_SLOW)
                else:
                    self.offer(conn, ping)

    def cached(self) -> int:
        """Listeners whose latest list is kept."""
        return len(self._latest)

    def latest(self, user_id: str) -> str | None:
        return self._latest.get(user_id)

    def remember(self, user_id: str, text: str) -> None:
        """Keep ``text`` as the listener's latest list (without pushing it)."""
        self._latest[user_id] = text
        self._latest.move_to_end(user_id)
        while len(self._latest) > self.latest_kept:
            self._latest.popitem(last=False)

    def push(self, user_id: str, text: str) -> int:
        """Remember and queue ``text`` for every connection of ``user_id``; how many took it."""
        self.remember(user_id, text)
        delivered = 0
        for conn in list(self._by_user.get(user_id, ())):  # a copy: an overflowing one leaves the set
            delivered += self.offer(conn, text)
        return delivered

    def offer(self, conn: Connection, text: str) -> bool:
        """Queue ``text`` on ``conn``; a connection that overflows is counted (once) and dropped."""
        open_before = conn.closing is None
        ok = conn.offer(text)
        if not ok and open_before and conn.closing == CLOSE_SLOW:
            self.metrics.slow_disconnects += 1
            self.disconnect(conn)
        return ok

    def keep_trending(self, cluster: int, text: str, end: float) -> bool:
        """Keep ``text`` as the cluster's window if it ends no earlier than the one kept."""
        if end < self.trending_end.get(cluster, float("-inf")):
            return False
        self.trending[cluster], self.trending_end[cluster] = text, end
        return True

    def broadcast(self, cluster: int, text: str, end: float) -> bool:
        """Keep the cluster's window for every connection's next flush, unless a newer
        window of that cluster was already seen (False)."""
        if not self.keep_trending(cluster, text, end):
            return False
        self._changed[cluster] = text
        return True

    def flush_trending(self) -> int:
        """Hand the windows kept since the last flush to every connection, as one shared
        batch; how many connections took it."""
        if not self._changed:
            return 0
        windows, self._changed = self._changed, {}
        text = batch_text(windows.values())
        delivered = 0
        for conns in self._by_user.values():
            for conn in conns:
                delivered += conn.offer_trending(windows, text)
        self.metrics.trending_flushes += 1
        return delivered

    async def trending_pump(self, interval_s: float) -> None:
        """Every ``interval_s``: :meth:`flush_trending`. Runs for the life of the gateway."""
        while True:
            await asyncio.sleep(interval_s)
            self.flush_trending()

    def greet(self, conn: Connection) -> None:
        """What a new connection gets at once: the listener's latest list, every cluster's window."""
        latest = self.latest(conn.user_id)
        if latest is not None:
            self.offer(conn, latest)
        conn.offer_trending(dict(self.trending))


def batch_text(messages: Iterable[str]) -> str:
    """One frame carrying several messages (each already a JSON object's text)."""
    return '{"type":"batch","messages":[' + ",".join(messages) + "]}"
