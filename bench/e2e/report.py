"""Bench only: what ``bench.e2e`` shows and writes.

In: the run's results dict (``bench.e2e.analysis``'s figures plus the run's parameters)
and, for the plot, the phases' and the naive path's per-play times and latencies and the
lag samples (:class:`bench.common.LagSampler`). Out: progress lines and the rich table on
the console and the PNG (``bench/results/e2e.png`` or ``--plot``: latency over time per
phase, and consumer lag over time); the runner writes the JSON (``bench/results/e2e.json`` or
``--out``) with :func:`bench.common.write_json`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import ms, saved_figure
from bench.e2e.analysis import TARGET_P99_MS, TARGET_RATE, per_second

console = Console() if sys.stdout.isatty() else Console(width=140)


def say(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", highlight=False)


def plot(
    results: dict[str, Any],
    phases: list[dict[str, Any]],
    naive: dict[str, Any] | None,
    lag: list[tuple[float, dict[str, int]]],
    path: Path,
) -> None:
    import matplotlib

    t0 = phases[0]["window"][0] if phases else (lag[0][0] if lag else time.time())
    with saved_figure(path, 2, figsize=(12, 8), sharex=True, height_ratios=(3, 2)) as (_fig, (top, bottom)):
        colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        spans: list[tuple[float, float, str]] = []
        for i, ph in enumerate(phases):
            c = colours[i % len(colours)]
            t = [x - t0 for x in ph["t"]]
            top.scatter(t, ph["latency_ms"], s=2, alpha=0.25, color=c, linewidths=0)
            mids, p50, p99 = zip(*per_second(t, ph["latency_ms"]), strict=True) if t else ((), (), ())
            top.plot(mids, p50, color=c, lw=1.5, label=f"{ph['rate']:g} plays/s: p50 per second")
            top.plot(mids, p99, color=c, lw=1.0, ls="--", label=f"{ph['rate']:g} plays/s: p99 per second")
            spans.append((ph["window"][1] - t0, ph["window"][2] - t0, f"{ph['rate']:g}/s"))
        if naive and naive["t"]:
            c = colours[len(phases) % len(colours)]
            t = [x - t0 for x in naive["t"]]
            top.scatter(t, naive["latency_ms"], s=4, alpha=0.5, color=c, linewidths=0)
            mids, p50, p99 = zip(*per_second(t, naive["latency_ms"]), strict=True)
            top.plot(mids, p50, color=c, lw=1.5, label="naive (POST + MongoDB at request time): p50")
            spans.append((t[0], t[-1], f"naive {naive['rate']:g}/s"))
        top.axhline(TARGET_P99_MS, color="red", lw=0.8, ls=":", label=f"target p99 < {TARGET_P99_MS:g} ms")
        top.set_yscale("log")
        top.set_ylabel("POST -> recommendation on socket (ms)")
        top.legend(fontsize=7, loc="best", ncols=2)
        top.set_title(
            f"Cadenza end to end: {results['params']['listeners']:,} listeners, "
            f"{results['params']['tracks']} tracks, {results['cpus']} CPUs shared by everything"
        )
        lag = [(t, sample) for t, sample in lag if t >= t0 - 5]
        names = sorted({n for _, sample in lag for n in sample})
        for name in names:
            xs = [t - t0 for t, sample in lag if name in sample]
            ys = [sample[name] for _, sample in lag if name in sample]
            bottom.step(xs, ys, where="post", lw=1.0, label=name)
        bottom.set_ylabel("consumer lag (records)")
        bottom.set_xlabel("seconds since the first phase started")
        if names:
            bottom.legend(fontsize=7, loc="best", ncols=3)
        for ax in (top, bottom):
            for start, end, _label in spans:
                ax.axvspan(start, end, color="grey", alpha=0.08)
        for start, end, label in spans:
            where = ((start + end) / 2, 0.98)
            top.annotate(label, where, xycoords=("data", "axes fraction"), ha="center", va="top", fontsize=8)


def print_table(r: dict[str, Any]) -> None:
    t = Table(title=f"End to end: POST play -> recommendation on the socket ({r['cpus']} CPUs, loopback)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    naive = r.get("naive")
    warm = r.get("warm_up", {}).get("attempts", [])
    t.add_row(
        "warm-up (not measured): answered / accepted per attempt",
        ", ".join(f"{a['answered']}/{a['accepted']}" for a in warm) or "-",
        "all",
    )
    for ph in r["phases"]:
        target = f"< {TARGET_P99_MS:g} ms" if ph["rate"] == TARGET_RATE else ""
        t.add_row(
            f"{ph['rate']:g} plays/s, {ph['sockets']:,} sockets: p50 / p95",
            f"{ms(ph['p50_ms'])} / {ms(ph['p95_ms'])}",
            "",
        )
        t.add_row("  p99 / max", f"{ms(ph['p99_ms'])} / {ms(ph['max_ms'])}", target)
        t.add_row(
            "  accepted / recommended (sent, achieved rate)",
            f"{ph['accepted']:,} / {ph['received']:,} ({ph['sent']:,}, {ph['achieved_rate']:,.0f}/s)",
            "",
        )
        t.add_row(
            "  lost: refused / no recommendation / not in history",
            f"{ph['refused_or_failed']} / {ph['lost_no_recommendation']} / {ph['missing_from_history']}",
            "0" if ph["rate"] == TARGET_RATE else "",
        )
        worst = ", ".join(f"{n} {v:,}" for n, v in sorted(ph["lag_max"].items()))
        t.add_row("  max lag", worst or "-", "")
        late = [n for n, v in ph["lag_zero_after_s"].items() if v is None]
        back = max((v for v in ph["lag_zero_after_s"].values() if v is not None), default=0.0)
        t.add_row(
            "  lag back to 0 after the phase",
            f"all in {back:.0f} s"
            if not late
            else f"not within {r['params']['settle']:g} s: {', '.join(late)}",
            f"<= {r['params']['settle']:g} s",
        )
        done = ph["history_complete_by_s"]
        t.add_row(
            "  every accepted play in the plays history by",
            "never" if done is None else f"{done:.0f} s after the last send",
            f"<= {r['params']['settle']:g} s",
        )
        stages = ", ".join(f"{n} {ms(v)}" for n, v in ph.get("stages_mean_ms", {}).items())
        t.add_row("  mean per stage (gateway's histograms)", stages, "")
        cpu = ", ".join(f"{n} {v:.0f}%" for n, v in ph["cpu_pct"].items())
        t.add_row("  CPU", cpu, "")
        if ph.get("cpu_ms_per_play") is not None:
            t.add_row(
                "  CPU, all of the above",
                f"{ph['cpu_total_pct']:.0f}% of {r['cpus'] * 100}%, {ph['cpu_ms_per_play']:.2f} ms per play",
                "",
            )
        if ph.get("costs"):
            c = ph["costs"]
            rows = ", ".join(f"{n} {v:.2f}" for n, v in c["ms_per_play"].items())
            t.add_row(
                f"  CPU ms per play until the lags were 0 ({c['window_s']:.0f} s)",
                f"{rows} = machine {c['machine_ms_per_play']:.2f}",
                "",
            )
        if ph["restarted"]:
            t.add_row("  [red]restarted during the phase[/]", ", ".join(ph["restarted"]), "none")
        if ph["client_saturated"]:
            t.add_row(
                "  [yellow]simulator saturated[/] (a core or the rate short)",
                f"{ph['cpu_pct']['simulator']:.0f}% CPU, {ph['achieved_rate']:,.0f}/s",
                "",
            )
        if ph["target_met"] is not None:
            t.add_row("  target met", "[green]yes[/]" if ph["target_met"] else "[red]no[/]", "")
    if naive:
        t.add_row(
            f"naive request-time path, {naive['answered']} plays one at a time "
            f"({naive['achieved_rate']:.1f}/s of {naive['rate']:g}/s): p50 / p99",
            f"{ms(naive['p50_ms'])} / {ms(naive['p99_ms'])}",
            "",
        )
        t.add_row(
            "  of which POST p50 / MongoDB + scan p50",
            f"{ms(naive['post_p50_ms'])} / {ms(naive['compute_p50_ms'])}",
            "",
        )
        steps = ", ".join(f"{k} {v:.1f}" for k, v in naive["steps_p50_ms"].items() if v is not None)
        t.add_row(f"  steps p50 (ms; ~{naive['mean_cluster_size'] or 0:.0f} tracks per cluster)", steps, "")
        for rate, rat in r["ratios"].items():
            p50, p99 = rat["p50"], rat["p99"]
            t.add_row(
                f"  naive / ours at {rate} plays/s: p50 / p99",
                f"{'-' if p50 is None else f'{p50:.2f}x'} / {'-' if p99 is None else f'{p99:.2f}x'}",
                "",
            )
    console.print(t)
