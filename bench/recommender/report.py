"""Bench only: the table ``bench.recommender`` prints from its results dict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.recommender.faust_floor import MODES


def print_table(r: dict[str, Any]) -> None:
    t = Table(title="Recommender")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    a, w = r.get("in_process"), r["worker"]
    if a is not None:
        t.add_row(
            f"ranking in process, {a['catalogue']:,} tracks", f"{a['plays_per_s']:,.0f} plays/s", ">= 2,000"
        )
        t.add_row("  per play", f"{a['per_play_ms']:.3f} ms", "")
        t.add_row(
            "  naive MongoDB scan per play",
            f"{a['naive_per_play_ms']:.1f} ms ({a['naive_over_ours']:,.0f}x)",
            "",
        )
    t.add_row(f"worker on Kafka, {w['rate']:.0f} plays/s: p50", f"{w['p50_ms']:.1f} ms", "")
    t.add_row("  p99", f"{w['p99_ms']:.1f} ms", "< 50 ms")
    t.add_row("  received / sent", f"{w['received']} / {w['sent']}", "all")
    sent_p = f"{w['to_produced_p50_ms']:.1f} / {w['to_produced_p99_ms']:.1f} ms"
    t.add_row("  play -> worker's send, p50 / p99", sent_p, "")
    if w["p50_ms_per_second"]:
        t.add_row(
            "  p50 per second, lowest / highest",
            f"{min(w['p50_ms_per_second']):.0f} / {max(w['p50_ms_per_second']):.0f} ms",
            "",
        )
    t.add_row("  machine busy (all cores)", f"{w['machine_busy_pct']:.0f} %", "")
    t.add_row(
        f"worker backlog of {w['backlog']:,}, {w['catalogue']:,} tracks",
        f"{w['backlog_plays_per_s']:,.0f} plays/s",
        ">= 2,000",
    )
    t.add_row("  worker CPU per play", f"{w['backlog_worker_cpu_ms_per_play']:.2f} ms", "")
    t.add_row(
        "  machine CPU per play (worker, broker, bench)", f"{w['backlog_machine_cpu_ms_per_play']:.2f} ms", ""
    )
    floor = r.get("faust_floor")
    if floor:
        for mode in MODES:
            if mode in floor:
                f = floor[mode]
                cpu = "" if f["cpu_ms_per_play"] is None else f", {f['cpu_ms_per_play']:.2f} ms CPU"
                t.add_row(
                    f"Faust alone ({mode}), {floor['plays']:,} plays",
                    f"{f['plays_per_s']:,.0f} plays/s{cpu}",
                    "",
                )
    Console().print(t)
