"""Bench only: phases 1 (connections held) and 2 (Kafka -> socket delivery) of ``bench.gateway``.

Both drive the client workers (``bench.gateway.clients``) and read the gateway
(``bench.gateway.system``: ``/proc`` status, CPU seconds, ``/metrics``) before and after.
Phase 2 also produces Recommendations to ``cadenza.recommendations`` (aiokafka,
:func:`infra.kafka_clients.aio_producer`), paced on absolute times, each for a random
connected listener with ``ts`` = its send time: first a warm-up (tagged ``bench-warmup``,
not measured), then the measured load (tagged :data:`bench.gateway.clients.BENCH_TAG`). What was
read goes to :func:`bench.gateway.analysis.connections_summary` and
:func:`bench.gateway.analysis.delivery_summary`, whose dicts go back to ``bench.gateway``
(JSON, table).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bench.gateway.analysis import connections_summary, delivery_summary
from bench.gateway.clients import BENCH_TAG, ClientPool
from bench.gateway.system import GatewayProcess
from infra.kafka_clients import aio_producer
from infra.settings import Settings
from schemas.codec import encode, encode_key
from schemas.events import Recommendation, RecommendedTrack
from schemas.topics import RECOMMENDATIONS

DRAIN_TIMEOUT_S = 15.0
WARMUP_TAG = "bench-warmup"


# --- 1. connections held ----------------------------------------------------------------------


def bench_connections(gw: GatewayProcess, pool: ClientPool, n: int, hold_s: float) -> dict[str, Any]:
    clients_cpu0 = sum(r["cpu_s"] for r in pool.ask("count"))  # also: every worker is up
    before = gw.status()
    deadline_s = 60.0 + n / 20.0
    gw_cpu0, started = gw.cpu_s(), time.perf_counter()
    replies = pool.ask("connect", [deadline_s] * len(pool.pipes), timeout=deadline_s + 60)
    connect_s = time.perf_counter() - started
    gw_cpu = gw.cpu_s() - gw_cpu0
    time.sleep(hold_s)
    counts = pool.ask("count")
    after = gw.status()
    gauge = gw.metrics().get("cadenza_gateway_connections")
    return connections_summary(
        n=n,
        hold_s=hold_s,
        replies=replies,
        counts=counts,
        before=before,
        after=after,
        gauge=gauge,
        connect_s=connect_s,
        gateway_cpu_s=gw_cpu,
        clients_cpu0=clients_cpu0,
    )


# --- 2. Kafka -> socket delivery --------------------------------------------------------------


def template() -> Recommendation:
    items = [
        RecommendedTrack(
            track_id=i + 1,
            score=round(1.0 - i * 0.05, 3),
            reason="close to what you just played",
            cluster=i % 4,
            title=f"Bench track {i + 1}",
            artist="Bench",
        )
        for i in range(10)
    ]
    return Recommendation(user_id="template", items=items, model_version=BENCH_TAG)


async def produce(
    settings: Settings, users: list[str], rate: float, seconds: float, tag: str
) -> dict[str, Any]:
    """``rate`` messages/s for ``seconds`` to random ``users``, each sent at its absolute time."""
    base = template().model_copy(update={"model_version": tag})
    picks = np.random.default_rng(len(users)).integers(0, len(users), int(rate * seconds))
    topic = settings.topic(RECOMMENDATIONS)
    p = aio_producer(settings, linger_ms=1, client_id="bench-gateway")
    await p.start()
    try:
        futures = []
        behind = 0.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i, pick in enumerate(picks):
            delay = started + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
            user = users[int(pick)]
            message = base.model_copy(update={"user_id": user, "ts": datetime.now(UTC)})
            futures.append(await p.send(topic, key=encode_key(user), value=encode(message)))
        elapsed = loop.time() - started
        await asyncio.gather(*futures)  # every record acknowledged, or raise
    finally:
        await p.stop()
    return {"sent": len(picks), "send_s": elapsed, "max_behind_ms": behind * 1e3}


def bench_delivery(
    settings: Settings, gw: GatewayProcess, pool: ClientPool, listeners: int, rate: float, duration: float
) -> dict[str, Any]:
    keep = {f"bench{i}" for i in range(listeners)}
    replies = pool.ask("trim", [[u for u in users if u in keep] for users in pool.users])
    connected = [u for r in replies for u in r["kept"]]
    if not connected:
        raise RuntimeError("no listener is connected")
    time.sleep(1.0)
    warm = asyncio.run(produce(settings, connected, min(rate, 500.0), 1.0, WARMUP_TAG))
    time.sleep(1.0)
    cpu_clients = sum(r["cpu_s"] for r in pool.ask("record"))
    m0, cpu0, wall0 = gw.metrics(), gw.cpu_s(), time.monotonic()
    sent = asyncio.run(produce(settings, connected, rate, duration, BENCH_TAG))
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if sum(r["received"] for r in pool.ask("count")) >= sent["sent"]:
            break
        time.sleep(0.25)
    wall = time.monotonic() - wall0
    cpu_gw = gw.cpu_s() - cpu0
    m1, rss_after = gw.metrics(), gw.status()["VmRSS"] / 1024
    got = pool.ask("collect")
    return delivery_summary(
        listeners=listeners,
        connected=len(connected),
        rate=rate,
        duration=duration,
        warmup_sent=warm["sent"],
        sent=sent,
        got=got,
        m0=m0,
        m1=m1,
        wall=wall,
        gateway_cpu_s=cpu_gw,
        rss_after_mib=rss_after,
        clients_cpu0=cpu_clients,
    )
