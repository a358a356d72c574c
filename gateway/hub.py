"""Fan-out of recommendations and trending windows to the websockets of this gateway process.

Sources: :mod:`gateway.feed` (every ``Recommendation`` and ``Trending`` message read
from Kafka) and the websocket endpoint (connections come and go). Destinations: each
connection's bounded send queue, drained by that connection's writer task in
:mod:`gateway.app`; the latest list per listener (bounded, least recently updated
dropped first) so a (re)connecting listener gets it at once; the counters in
:class:`gateway.metrics.GatewayMetrics`.

A connection whose queue is full is a browser that cannot keep up: it is marked
``slow`` and its writer closes it with code 4408, so one slow listener never delays
the others (pushing never awaits).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from gateway.metrics import GatewayMetrics

CLOSE_SLOW: Final = 4408
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_SHUTDOWN: Final = 1001


@dataclass(eq=False)
class Connection:
    """One websocket: who it is, and what waits to be sent (text, time queued)."""

    user_id: str
    queue: asyncio.Queue[tuple[str, float]]
    #: Set when the queue overflowed: the endpoint then drops the connection (4408).
    slow: asyncio.Event = field(default_factory=asyncio.Event)
    connected: float = field(default_factory=time.monotonic)

    def offer(self, text: str) -> bool:
        """Queue ``text`` without waiting; False (and the connection marked slow) when full."""
        if self.slow.is_set():
            return False
        try:
            self.queue.put_nowait((text, time.perf_counter()))
        except asyncio.QueueFull:
            self.slow.set()
            return False
        return True


@dataclass
class Hub:
    queue_size: int
    latest_kept: int = 100_000
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    _by_user: dict[str, set[Connection]] = field(default_factory=dict)
    _latest: OrderedDict[str, str] = field(default_factory=OrderedDict)
    trending: dict[int, str] = field(default_factory=dict)
    _count: int = 0

    def connect(self, user_id: str) -> Connection:
        conn = Connection(user_id, asyncio.Queue(self.queue_size))
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

    def count(self) -> int:
        return self._count

    def listeners(self) -> int:
        return len(self._by_user)

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
        for conn in self._by_user.get(user_id, ()):
            if conn.offer(text):
                delivered += 1
            else:
                self.metrics.slow_disconnects += 1
        return delivered

    def broadcast(self, cluster: int, text: str) -> int:
        """Keep ``text`` as the cluster's trending window and queue it for every connection."""
        self.trending[cluster] = text
        delivered = 0
        for conns in self._by_user.values():
            for conn in conns:
                if conn.offer(text):
                    delivered += 1
                else:
                    self.metrics.slow_disconnects += 1
        return delivered
