"""Bench only: what ``bench.faults`` shows and writes.

In: the run's result dict (its ``load`` section from ``bench.faults.analysis``, the
``throughput`` runs from ``bench.faults.schedule``), the fault marks and the lag
sampler's timeline rows (:class:`bench.common.LagSampler`). Out: the rich table on the
console and the PNG (``bench/results/faults.png`` or ``--plot``: lag and the group's size
over time with the faults marked, and play -> recommendation latency); the runner writes the
JSON (``bench/results/faults.json`` or ``--out``) with :func:`bench.common.write_json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import saved_figure

console = Console()


def plot(
    path: Path, rows: list[dict[str, Any]], t0: float, marks: list[dict[str, Any]], result: dict[str, Any]
) -> None:
    """``rows``: the sampler's timeline, ``t0``: the time its ``t`` counts from."""
    with saved_figure(path, 2, figsize=(11, 7), sharex=True) as (fig, (ax1, ax2)):
        names = sorted({n for r in rows for n in r.get("lag", {})})
        for name in names:
            xs = [r["t"] for r in rows if "lag" in r]
            ys = [r["lag"].get(name, 0) for r in rows if "lag" in r]
            ax1.plot(xs, ys, label=name)
        members = [(r["t"], r["group"]["members"]) for r in rows if "group" in r]
        ax1b = ax1.twinx()
        ax1b.step([t for t, _ in members], [m for _, m in members], where="post", color="grey", alpha=0.5)
        ax1b.set_ylabel("recommender workers in the group")
        ax1b.set_ylim(0, 3)
        ax1.set_ylabel("lag on cadenza.plays (records)")
        ax1.legend(loc="upper left", fontsize=8)
        lat = result["load"]["latencies"]
        ax2.scatter([t - t0 for t, _ in lat], [v for _, v in lat], s=3)
        ax2.set_yscale("log")
        ax2.set_ylabel("play -> recommendation (ms)")
        ax2.set_xlabel("seconds")
        for m in marks:
            for ax in (ax1, ax2):
                ax.axvspan(m["at"] - t0, m.get("restarted", m["at"]) - t0, color="red", alpha=0.12)
            ax1.text(m["at"] - t0, ax1.get_ylim()[1] * 0.9, m["fault"], fontsize=8, color="darkred")
        fig.suptitle("Cadenza cluster profile under faults (red: component down)")


def _ms(lat: dict[str, float]) -> str:
    return f"p50 {lat['p50']:,.0f} / p99 {lat['p99']:,.0f} ms"


def _s(dist: dict[str, float]) -> str:
    return f"p50 {dist['p50']:.1f} / max {dist['max']:.1f} s"


def fault_rows(f: dict[str, Any]) -> list[tuple[str, str]]:
    """What one fault did, as (measure, value) rows: the dict from ``bench.faults.analysis``."""
    name = f.get("program") or f.get("component") or "?"
    rows = [(f"{f['fault']} ({name}) down", f"{f['down_s']:.1f} s, {f['posts_while_down']:,} plays posted")]
    rows.append(("  play -> recommendation meanwhile", _ms(f["latency_ms_while_down"])))
    if f.get("caught_up_s") is not None:
        rows.append(("  back in every ISR after restart", f"{f['caught_up_s']:.1f} s"))
    if "resume_s" in f:
        moved = ", ".join(str(p) for p in f.get("moved_partitions", []))
        rows.append(("  partitions moved / taken over after", f"{moved} / {f['takeover_s']:.1f} s"))
        resume = f["resume_s"]
        if resume:
            rows.append(
                ("  answered again after (per partition)", f"max {max(resume.values()):.1f} s (target 10)")
            )
        rows.append(
            ("  affected listeners' longest wait", f"{f['affected_listeners']}: {_s(f['longest_wait_s'])}")
        )
        if f.get("rejoin_s") is not None:
            rows.append(("  group stable after the restart", f"{f['rejoin_s']:.1f} s"))
    if "reconnected_listeners" in f:
        rows.append(("  listeners reconnected elsewhere", str(f["reconnected_listeners"])))
        rows.append(("  their latest list after the kill", _s(f["latest_list_after_s"])))
    return rows


def table(result: dict[str, Any]) -> Table:
    t = Table(title="Faults under load (cluster profile, loopback)", title_justify="left")
    t.add_column("measure")
    t.add_column("value", justify="right")
    load = result["load"]
    for key in (
        "accepted_plays",
        "history_missing",
        "history_duplicated",
        "without_recommendation",
        "posts_given_up",
    ):
        t.add_row(key.replace("_", " "), f"{load[key]:,}")
    t.add_row("play -> recommendation, whole run", _ms(load["latency_ms"]))
    for f in load["faults"]:
        for measure, value in fault_rows(f):
            t.add_row(measure, value)
    if worst := load.get("recommender_worst"):
        answered = worst["worst_answered_again_s"]
        t.add_row(
            f"recommender kills: worst of {worst['kills']}",
            f"taken over {worst['worst_takeover_s']:.1f} s, answered "
            + (f"{answered:.1f} s" if answered is not None else "never")
            + f" (target {worst['target_s']:.0f})",
        )
    for run in result.get("throughput", []):
        t.add_row(f"backlog drain, {run['workers']} worker(s)", f"{run['plays_per_s']:,.0f} plays/s")
    if result.get("throughput_ratio") is not None:
        t.add_row("two workers / one", f"{result['throughput_ratio']:.2f}")
    return t
