"""Bench only: the steady load of listeners that ``bench.faults`` keeps up while it breaks things.

Each :class:`Listener` holds a websocket to one of the cluster's gateways (reconnecting to the
other when it closes) and records each recommendation list that arrives (time, cause
``event_id``, gateway) and each reconnect; :class:`Load` posts plays (``POST /api/plays``
with a client ``event_id``, retried on the other gateway with the same id) at ``rate`` plays/s
and records the accepted ones (``event_id`` -> listener, first try) and the failures. The
records go to ``bench.faults.analysis`` (loss, latency, what each fault did).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake


@dataclass
class Listener:
    user: str
    token: str
    home: int
    on: int = -1  # gateway index of the open socket, -1 when disconnected
    arrivals: list[tuple[float, str | None, int]] = field(default_factory=list)  # (at, cause, gateway)
    reconnects: list[dict[str, float]] = field(default_factory=list)
    closed_at: float | None = None
    busy: bool = False


@dataclass
class Load:
    urls: list[str]
    listeners: list[Listener]
    rate: float
    sent: dict[str, tuple[str, float]] = field(default_factory=dict)  # event_id -> (user, accepted at)
    failed: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    running: bool = True
    posting: bool = True
    tracks: list[int] = field(default_factory=list)

    async def socket(self, lst: Listener) -> None:
        order = [lst.home, *[i for i in range(len(self.urls)) if i != lst.home]]
        attempt = 0
        while self.running:
            index = order[attempt % len(order)]
            attempt += 1
            url = self.urls[index].replace("http://", "ws://") + f"/ws?token={lst.token}"
            try:
                async with connect(
                    url, open_timeout=5, ping_interval=None, close_timeout=1, proxy=None
                ) as ws:
                    lst.on = index
                    first_list = True
                    async for raw in ws:
                        message = json.loads(raw)
                        if message.get("type") == "ping":
                            await ws.send(json.dumps({"type": "pong", "ts": message.get("ts")}))
                        elif message.get("type") == "recommendations":
                            at = time.time()
                            data = message.get("data") or {}
                            lst.arrivals.append((at, data.get("cause_event_id"), index))
                            if first_list and lst.closed_at is not None:
                                lst.reconnects.append(
                                    {"closed": lst.closed_at, "list_at": at, "gateway": index}
                                )
                                lst.closed_at = None
                            first_list = False
                    attempt = 0 if index == lst.home else attempt
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ValueError):
                pass
            if lst.on >= 0 and lst.closed_at is None and self.running:
                lst.closed_at = time.time()
            lst.on = -1
            await asyncio.sleep(0.05 if attempt <= len(order) else 0.5)

    async def post(self, http: httpx.AsyncClient, lst: Listener) -> None:
        """One play, as a player sends it: one request at a time per listener, retried on the
        other gateway with the same event_id; latency counts from the first attempt."""
        if lst.busy:
            self.failed["listener still sending"] += 1
            return
        lst.busy = True
        try:
            await self._post(http, lst)
        finally:
            lst.busy = False

    async def _post(self, http: httpx.AsyncClient, lst: Listener) -> None:
        event_id = str(uuid.uuid4())
        first_try = time.time()
        body = {
            "track_id": random.choice(self.tracks),
            "kind": "play",
            "position_s": 0.0,
            "event_id": event_id,
        }
        first = lst.on if lst.on >= 0 else lst.home
        for attempt in range(6):
            url = self.urls[(first + attempt) % len(self.urls)]
            try:
                r = await http.post(
                    url + "/api/plays", json=body, headers={"Authorization": f"Bearer {lst.token}"}
                )
            except httpx.HTTPError as err:
                self.failed[type(err).__name__] += 1
                self.retried += 1
                await asyncio.sleep(0.2)
                continue
            if r.status_code == 202:
                self.sent[event_id] = (lst.user, first_try)
                return
            self.failed[f"HTTP {r.status_code}"] += 1
            self.retried += 1
            await asyncio.sleep(0.2)
        self.failed["gave up"] += 1

    async def plays(self, duration: float) -> None:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(timeout=6, trust_env=False, limits=limits) as http:
            tasks: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            n = 0
            while time.monotonic() - start < duration and self.posting:
                n += 1
                task = asyncio.create_task(self.post(http, random.choice(self.listeners)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, start + n / self.rate - time.monotonic()))
            await asyncio.gather(*tasks, return_exceptions=True)
