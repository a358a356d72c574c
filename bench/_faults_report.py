"""Bench only: what ``bench/faults.py`` shows and writes.

In: the run's result dict (its ``load`` section from ``bench/_faults_analysis.py``, the
``throughput`` runs from ``bench/_faults_schedule.py``), the fault marks and the lag
sampler's timeline rows (``bench/_lag.py``). Out: the rich table on the console, the JSON
(``bench/results/faults.json`` or ``--out``) and the PNG (``bench/results/faults.png`` or
``--plot``: lag and the group's size over time with the faults marked, and play ->
recommendation latency).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _plot import saved_figure
from rich.console import Console
from rich.table import Table

console = Console()


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str))


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
        t.add_row(key.replace("_", " "), str(load[key]))
    t.add_row(
        "play -> recommendation p50 / p99 (ms)", f"{load['latency_ms']['p50']} / {load['latency_ms']['p99']}"
    )
    for f in load["faults"]:
        detail = {k: v for k, v in f.items() if k not in ("fault",)}
        t.add_row(f"fault: {f['fault']}", json.dumps(detail, default=str)[:160])
    for run in result.get("throughput", []):
        t.add_row(f"backlog drain, {run['workers']} worker(s) (plays/s)", str(run["plays_per_s"]))
    if result.get("throughput_ratio") is not None:
        t.add_row("two workers / one", f"{result['throughput_ratio']:.2f}")
    return t
