"""Bench only: the figures of ``bench.gateway``, computed from what its phases read.

Pure functions, no IO. In: the client workers' replies (``bench.gateway.clients``:
connected, failed, retries, errors, open sockets, latencies, sockets dropped, CPU seconds),
the gateway's readings before and after a phase (``bench.gateway.system``: ``/proc``
status, CPU seconds, parsed ``/metrics``), the producer's counts (``bench.gateway.phases``)
and the audio loops' latencies and errors (``bench.gateway.audio``). Out: the
``connections``, ``delivery`` and ``audio`` sections that ``bench.gateway`` writes to
``bench/results/gateway.json`` and ``bench.gateway.report`` prints (percentiles, rates,
CPU shares, RSS per socket, the target verdicts).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from bench.common import pct
from infra.prometheus import histogram_delta

TARGET_CONNECTIONS, TARGET_RSS_MIB, TARGET_P99_MS = 10_000, 1536, 50.0
RANGE_SIZE = 64 << 10  # bytes per audio range GET (``bench.gateway.audio``)


def connections_summary(
    *,
    n: int,
    hold_s: float,
    replies: list[dict[str, Any]],
    counts: list[dict[str, Any]],
    before: dict[str, int],
    after: dict[str, int],
    gauge: float | None,
    connect_s: float,
    gateway_cpu_s: float,
    clients_cpu0: float,
) -> dict[str, Any]:
    """Phase 1's section: ``replies`` to ``connect`` and ``counts`` (to ``count``, after the
    hold) from the workers; the gateway's ``/proc`` status ``before`` and ``after``, its
    ``cadenza_gateway_connections`` gauge and CPU seconds while connecting; the workers'
    CPU seconds before."""
    connected = sum(r["connected"] for r in replies)
    errors: Counter[str] = Counter()
    for r in replies:
        errors.update(r["errors"])
    held = sum(r["open"] for r in counts)
    rss_mib = after["VmRSS"] / 1024
    per_socket_kib = (after["VmRSS"] - before["VmRSS"]) / connected if connected else None
    projected = (
        (before["VmRSS"] + per_socket_kib * TARGET_CONNECTIONS) / 1024 if per_socket_kib is not None else None
    )
    return {
        "requested": n,
        "connected": connected,
        "failed": n - connected,
        "retries": sum(r["retries"] for r in replies),
        "errors": dict(errors),
        "held_after_hold": held,
        "hold_s": hold_s,
        "connect_s": connect_s,
        "connects_per_s": connected / connect_s if connect_s else None,
        "connect_gateway_cpu_pct": gateway_cpu_s / connect_s * 100,
        "connect_clients_cpu_pct": (sum(r["cpu_s"] for r in replies) - clients_cpu0) / connect_s * 100,
        "gateway_connections_gauge": gauge,
        "rss_before_mib": before["VmRSS"] / 1024,
        "rss_mib": rss_mib,
        "rss_hwm_mib": after["VmHWM"] / 1024,
        "rss_per_socket_kib": per_socket_kib,
        "rss_projected_10k_mib": projected,
        "gateway_threads": after["Threads"],
        "gateway_fds": after["fds"],
        "target_connections": TARGET_CONNECTIONS,
        "target_rss_mib": TARGET_RSS_MIB,
        "all_held": connected == n and held == n and gauge == n,
        "target_met": n >= TARGET_CONNECTIONS and connected == n and held == n and rss_mib < TARGET_RSS_MIB,
    }


def counter_delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    """How much the ``/metrics`` sample ``name`` grew between two scrapes (0 where missing)."""
    return after.get(name, 0.0) - before.get(name, 0.0)


def delivery_summary(
    *,
    listeners: int,
    connected: int,
    rate: float,
    duration: float,
    warmup_sent: int,
    sent: dict[str, Any],
    got: list[dict[str, Any]],
    m0: dict[str, float],
    m1: dict[str, float],
    wall: float,
    gateway_cpu_s: float,
    rss_after_mib: float,
    clients_cpu0: float,
) -> dict[str, Any]:
    """Phase 2's section: ``sent`` is the producer's count (``sent``, ``send_s``,
    ``max_behind_ms``), ``got`` the workers' replies to ``collect``; the gateway's parsed
    ``/metrics`` before (``m0``) and after (``m1``), its CPU seconds over ``wall`` seconds
    and RSS after; the workers' CPU seconds before."""
    lat = np.asarray([x for r in got for x in r["latencies"]]) * 1e3
    received = sum(r["received"] for r in got)
    dropped: Counter[str] = Counter()
    for r in got:
        dropped.update(r["dropped"])
    p99 = pct(lat, 99)
    return {
        "listeners_requested": listeners,
        "listeners": connected,
        "rate": rate,
        "duration_s": duration,
        "warmup_sent": warmup_sent,
        **sent,
        "achieved_rate": sent["sent"] / sent["send_s"],
        "received": received,
        "lost": sent["sent"] - received,
        "sockets_dropped_by_gateway": dict(dropped),
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "p99_ms": p99,
        "max_ms": float(lat.max()) if lat.size else None,
        "gateway_fanout": histogram_delta(m0, m1, "cadenza_gateway_fanout_seconds"),
        "gateway_feed_delay": histogram_delta(m0, m1, "cadenza_gateway_feed_delay_seconds"),
        "gateway_feed_messages": counter_delta(
            m0, m1, 'cadenza_gateway_feed_messages_total{topic="recommendations"}'
        ),
        "gateway_slow_disconnects": counter_delta(m0, m1, "cadenza_gateway_slow_disconnects_total"),
        "gateway_cpu_pct": gateway_cpu_s / wall * 100,
        "gateway_rss_after_mib": rss_after_mib,
        "clients_cpu_pct": (sum(r["cpu_s"] for r in got) - clients_cpu0) / wall * 100,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": p99 is not None and p99 < TARGET_P99_MS and received == sent["sent"],
    }


def check(status: int, body: bytes, expected: bytes) -> str | None:
    """None if a range answer is right, else what is wrong with it."""
    if status != 206:
        return f"status {status}"
    if len(body) != RANGE_SIZE:
        return f"{len(body)} bytes"
    return None if body == expected else "wrong bytes"


def audio_summary(
    *,
    client: str,
    concurrency: int,
    seconds: float,
    latencies: list[float],
    errors: Counter[str],
    elapsed: float,
    gateway_cpu_s: float,
    client_cpu_s: float,
) -> dict[str, Any]:
    """One client's entry of phase 3's section (after ``file_bytes`` and ``range_bytes``):
    ``latencies`` (s) of the right answers in ``elapsed`` seconds, ``errors`` counted by
    kind, the gateway's and this process's CPU seconds over them."""
    lat = np.asarray(latencies) * 1e3
    return {
        "client": client,
        "concurrency": concurrency,
        "seconds": seconds,
        "requests": len(latencies),
        "errors": dict(errors),
        "elapsed_s": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "mb_per_s": len(latencies) * RANGE_SIZE / elapsed / 1e6,
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "gateway_cpu_pct": gateway_cpu_s / elapsed * 100,
        "client_cpu_pct": client_cpu_s / elapsed * 100,
    }
