"""Bench only: the table ``bench.gateway`` prints.

In: the run's results dict (``bench/results/gateway.json`` or ``--out``: the ``connections``,
``delivery`` and ``audio`` sections from ``bench.gateway.analysis``, plus ``cpus``). Out:
the rich table on the console (120 columns when not on a terminal), durations formatted by
:func:`bench.common.ms`. The runner writes the JSON itself (:func:`bench.common.write_json`).
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import ms
from bench.gateway.analysis import TARGET_CONNECTIONS, TARGET_P99_MS, TARGET_RSS_MIB


def print_table(r: dict[str, Any]) -> None:
    c, d = r["connections"], r["delivery"]
    t = Table(title=f"Gateway ({r['cpus']} CPUs shared by clients, broker, FerretDB and gateway)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    t.add_row(
        "websockets held by one gateway",
        f"{c['held_after_hold']:,} / {c['requested']:,} ({c['failed']} failed, {c['retries']} retries)",
        f">= {TARGET_CONNECTIONS:,}",
    )
    t.add_row("  connect time", f"{c['connect_s']:.1f} s ({c['connects_per_s']:,.0f}/s)", "")
    t.add_row(
        "  CPU while connecting: gateway / clients",
        f"{c['connect_gateway_cpu_pct']:.0f}% / {c['connect_clients_cpu_pct']:.0f}%",
        "",
    )
    t.add_row("  cadenza_gateway_connections", f"{c['gateway_connections_gauge']:,.0f}", "")
    t.add_row(
        "  gateway RSS",
        f"{c['rss_mib']:,.0f} MiB (idle {c['rss_before_mib']:,.0f})",
        f"< {TARGET_RSS_MIB:,} MiB",
    )
    if c["rss_per_socket_kib"] is not None:
        t.add_row(
            "  per socket / projected at 10,000",
            f"{c['rss_per_socket_kib']:.1f} KiB / {c['rss_projected_10k_mib']:,.0f} MiB",
            "",
        )
    t.add_row(f"delivery, {d['listeners']:,} listeners, {d['rate']:,.0f} msg/s: p50", ms(d["p50_ms"]), "")
    t.add_row("  p95", ms(d["p95_ms"]), "")
    t.add_row("  p99", ms(d["p99_ms"]), f"< {TARGET_P99_MS:.0f} ms")
    t.add_row("  max", ms(d["max_ms"]), "")
    t.add_row("  received / sent (lost)", f"{d['received']:,} / {d['sent']:,} ({d['lost']:,})", "all")
    t.add_row(
        "  producer rate achieved (most behind schedule)",
        f"{d['achieved_rate']:,.0f} msg/s ({d['max_behind_ms']:.1f} ms)",
        "",
    )
    f = d["gateway_fanout"]
    t.add_row(
        "  gateway fan-out (queue -> sent) p50 / p99 <=",
        f"{ms(f['p50_le_ms'])} / {ms(f['p99_le_ms'])}",
        "",
    )
    f = d["gateway_feed_delay"]
    t.add_row(
        "  Kafka -> gateway read (feed delay) p50 / p99 <=",
        f"{ms(f['p50_le_ms'])} / {ms(f['p99_le_ms'])}",
        "",
    )
    t.add_row("  CPU: gateway / clients", f"{d['gateway_cpu_pct']:.0f}% / {d['clients_cpu_pct']:.0f}%", "")
    for a in r["audio"].values():
        t.add_row(
            f"audio 64 KiB ranges, {a['concurrency']} in flight, {a['client']} client",
            f"{a['requests_per_s']:,.0f} req/s ({a['mb_per_s']:,.0f} MB/s)",
            "",
        )
        t.add_row("  p50 / p99", f"{ms(a['p50_ms'])} / {ms(a['p99_ms'])}", "")
        t.add_row("  errors (206 + exact 65,536 bytes checked)", str(sum(a["errors"].values())), "0")
        t.add_row("  CPU: gateway / client", f"{a['gateway_cpu_pct']:.0f}% / {a['client_cpu_pct']:.0f}%", "")
    (Console() if sys.stdout.isatty() else Console(width=120)).print(t)
