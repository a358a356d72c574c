"""Bench only: the figures of ``bench.e2e``, computed from what its phases recorded.

Pure functions, no IO. In: the simulator's merged events (``[event_id, sent at, accepted,
first recommendation at]``) and report (``bench.e2e.load``), the gateway's
``/metrics`` texts and the programs' CPU seconds before and after a phase, the history polls
and the consumer lag samples (:class:`bench.common.LagSampler`), the naive path's timings
(``bench.e2e.naive``). Out: the dicts that ``bench.e2e`` writes to
``bench/results/e2e.json`` and that ``bench.e2e.report`` prints and plots (percentiles,
per-second series, lost plays, CPU shares, the target verdict, naive / ours ratios).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.common import LagSampler, pct
from infra.prometheus import histogram_delta, parse_metrics

TARGET_RATE, TARGET_P99_MS = 500.0, 150.0
STAGES = {
    "play -> recommendation produced": "cadenza_gateway_recommendation_delay_seconds",
    "produced -> read by the gateway": "cadenza_gateway_feed_delay_seconds",
    "read -> sent on the socket": "cadenza_gateway_fanout_seconds",
}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def per_second(t: list[float], values: list[float]) -> Iterator[tuple[float, float, float]]:
    """(second mid-point, p50, p99) of ``values`` binned by whole seconds of ``t``."""
    bins: dict[int, list[float]] = {}
    for x, v in zip(t, values, strict=True):
        bins.setdefault(int(x), []).append(v)
    for second in sorted(bins):
        yield second + 0.5, float(np.percentile(bins[second], 50)), float(np.percentile(bins[second], 99))


def stage_means(before: str, after: str) -> dict[str, float | None]:
    """Mean of each :data:`STAGES` histogram between two ``/metrics`` texts, in ms."""
    m0, m1 = parse_metrics(before), parse_metrics(after)
    out: dict[str, float | None] = {}
    for stage, name in STAGES.items():
        mean = histogram_delta(m0, m1, name)["mean_ms"]
        out[stage] = None if mean is None else round(mean, 1)
    return out


def accepted_events(events: list[list[Any]]) -> list[list[Any]]:
    return [e for e in events if e[2]]


def send_window(events: list[list[Any]], fallback: float) -> tuple[float, float]:
    """First and last send time of ``events`` (``fallback`` twice when there are none)."""
    sent_times = [e[1] for e in events]
    return (min(sent_times), max(sent_times)) if sent_times else (fallback, fallback)


@dataclass
class PhaseRecord:
    """What one measured phase recorded (``bench.e2e.phases``'s ``run_phase``)."""

    rate: float
    seed: int
    listeners: int
    duration_s: float
    settle_s: float
    simulator_processes: int
    raw: dict[str, Any]  # bench.e2e.load's merged output
    wall: tuple[float, float]  # before and after the simulation
    cpu: tuple[dict[str, float], dict[str, float]]  # program -> CPU s, before and after
    pids: tuple[dict[str, int], dict[str, int]]  # program -> pid, before and after
    metrics: tuple[str, str]  # the gateway's /metrics text, before and after
    stored: set[str]  # accepted plays found in the history
    history_s: float | None
    polls: list[tuple[float, int, float]]
    settled: float
    zero: dict[str, float | None]
    lag_max: dict[str, int]
    #: program -> CPU s once every lag was back to 0 (or at the settle deadline): the cost of
    #: the phase's plays includes the backlog worked off after the last send.
    cpu_settled: dict[str, float] = field(default_factory=dict)
    #: The machine's busy CPU s (all cores) at the start and once settled (system.machine_cpu_s).
    machine: tuple[float, float] | None = None
    costs_until: float | None = None  # when the settled readings were taken


def costs(rec: PhaseRecord, accepted: int) -> dict[str, Any] | None:
    """CPU ms per accepted play, per stage, from the start of the phase until every lag was
    back to 0: each program (its process tree), the simulator, ``other`` (everything else the
    machine did: the bench's own sampler, the OS, anything not started by the bench) and the
    machine's total, which the rows add up to. None without the settled readings."""
    if not accepted or rec.machine is None or not rec.cpu_settled:
        return None
    cpu0, _ = rec.cpu
    pids, pids_after = rec.pids
    per_play = 1000.0 / accepted
    rows = {
        n: (rec.cpu_settled[n] - cpu0[n]) * per_play
        for n in cpu0
        if n in rec.cpu_settled and pids_after.get(n) == pids.get(n)
    }
    rows["simulator"] = sum(rec.raw["cpu_s"]) * per_play
    machine = (rec.machine[1] - rec.machine[0]) * per_play
    rows["other"] = machine - sum(rows.values())
    return {
        "window_s": round((rec.costs_until or rec.settled) - rec.wall[0], 2),
        "ms_per_play": {n: round(v, 3) for n, v in sorted(rows.items(), key=lambda kv: -kv[1])},
        "machine_ms_per_play": round(machine, 3),
    }


def phase_summary(rec: PhaseRecord) -> dict[str, Any]:
    """One phase's entry of ``phases`` (plus ``t``, ``latency_ms`` and ``users``, for the plot
    and the naive path, which the JSON leaves out)."""
    events, report = rec.raw["events"], rec.raw["report"]
    accepted = accepted_events(events)
    answered = [e for e in accepted if e[3] is not None]
    series = sorted((e[1], (e[3] - e[1]) * 1e3) for e in answered)
    lat = [ms for _, ms in series]
    wall0, wall1 = rec.wall
    cpu0, cpu1 = rec.cpu
    pids, pids_after = rec.pids
    send_start, send_end = send_window(events, wall0)
    wanted = {e[0] for e in accepted}
    refused = len(events) - len(accepted)
    no_reco = len(accepted) - len(answered)
    missing = len(wanted - rec.stored)
    p99 = pct(lat, 99)
    wall = wall1 - wall0
    sim_cpu = [c / wall * 100 for c in rec.raw["cpu_s"]]
    achieved = report["achieved_rate"]
    rate, zero = rec.rate, rec.zero
    cpu_pct = {
        **{n: (cpu1[n] - cpu0[n]) / wall * 100 for n in cpu0 if pids_after.get(n) == pids.get(n)},
        "simulator": sum(sim_cpu),
    }
    return {
        "rate": rate,
        "seed": rec.seed,
        "listeners": rec.listeners,
        "sockets": report["sockets"],
        "socket_errors": report["socket_errors"],
        "duration_s": rec.duration_s,
        "scheduled": report["scheduled"],
        "sent": len(events),
        "achieved_rate": achieved,
        "accepted": len(accepted),
        "refused_or_failed": refused,
        "failed": report["failed"],
        "received": len(answered),
        "repeated_arrivals": rec.raw["repeated_arrivals"],
        "unmatched_arrivals": report["unmatched"],
        "lost_no_recommendation": no_reco,
        "missing_from_history": missing,
        "history_complete_by_s": rec.history_s,
        "history_polls": rec.polls,
        "lost": refused + no_reco + missing,
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "p99_ms": p99,
        "max_ms": max(lat) if lat else None,
        "simulator_latency_ms": report["latency_ms"],
        # Where a recommendation's time went, on average (the gateway's histograms over the phase).
        "stages_mean_ms": stage_means(*rec.metrics),
        "lag_max": rec.lag_max,
        "lag_zero_after_s": zero,
        "lag_back_to_zero": all(v is not None and v <= rec.settle_s for v in zero.values()) and bool(zero),
        "cpu_pct": cpu_pct,
        # Everything on the machine that serves the phase (programs, stack, simulator), per play
        # accepted: what a higher rate would ask of the same machine.
        "cpu_total_pct": sum(cpu_pct.values()),
        "cpu_ms_per_play": sum(cpu_pct.values()) * 10 * wall / len(accepted) if accepted else None,
        # The cost table: per stage until the lags were back to 0, with the machine's total.
        "costs": costs(rec, len(accepted)),
        "simulator_processes": rec.simulator_processes,
        # One simulator process is one event loop on one core: near 100% (or a rate short of the
        # target) means the client, not the system, may set the latency.
        "client_saturated": max(sim_cpu) > 85.0 or achieved < 0.95 * rate,
        "restarted": sorted(n for n in pids if pids_after.get(n) != pids[n]),
        "target_p99_ms": TARGET_P99_MS if rate == TARGET_RATE else None,
        "target_met": (p99 is not None and p99 < TARGET_P99_MS and refused + no_reco + missing == 0)
        if rate == TARGET_RATE
        else None,
        "per_second": [
            [round(t - send_start, 1), p50, p99] for t, p50, p99 in per_second([t for t, _ in series], lat)
        ],
        "t": [t for t, _ in series],
        "latency_ms": lat,
        "window": [wall0, send_start, send_end, rec.settled],
        "users": rec.raw["users"],
    }


def naive_summary(
    plays: int,
    rate: float,
    elapsed: float,
    rows: list[tuple[float, float, float]],
    failed: Counter[str],
    lists: list[int],
    steps: dict[str, list[float]],
) -> dict[str, Any]:
    """The naive path's entry: ``rows`` are (start, POST ms, compute ms) of each answered play,
    ``steps`` each step's ms (and ``cluster_size``) per play, ``lists`` the lists' lengths."""
    total = [post + work for _, post, work in rows]
    return {
        "plays": plays,
        "rate": rate,
        "achieved_rate": plays / elapsed if elapsed else 0.0,
        "answered": len(rows),
        "failed": dict(failed),
        "mean_list_len": float(np.mean(lists)) if lists else None,
        "p50_ms": pct(total, 50),
        "p95_ms": pct(total, 95),
        "p99_ms": pct(total, 99),
        "max_ms": max(total) if total else None,
        "post_p50_ms": pct([r[1] for r in rows], 50),
        "compute_p50_ms": pct([r[2] for r in rows], 50),
        "compute_p99_ms": pct([r[2] for r in rows], 99),
        "steps_p50_ms": {k: pct(v, 50) for k, v in steps.items() if k != "cluster_size"},
        "mean_cluster_size": float(np.mean(steps["cluster_size"])) if steps.get("cluster_size") else None,
        "t": [r[0] for r in rows],
        "latency_ms": total,
    }


def lag_summary(sampler: LagSampler | None, every: float) -> dict[str, Any]:
    """The JSON's ``lag``: how the sampling went and each consumer's largest lag over the run."""
    lag = sampler.samples if sampler is not None else []
    return {
        "every_s": every,
        "samples": len(lag),
        "read_s_p50": pct(sampler.read_s, 50) if sampler else None,
        "errors": dict(sampler.errors) if sampler else {},
        "kinds": dict(sampler.kinds) if sampler else {},
        "max": sampler.peak() if sampler else {},
    }


def outcome(phases: list[dict[str, Any]], naive: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON's ``phases``, ``naive`` (when run), ``ratios`` and ``target_met``, in that order."""
    out: dict[str, Any] = {
        "phases": [{k: v for k, v in ph.items() if k not in ("t", "latency_ms", "users")} for ph in phases]
    }
    if naive is not None:
        out["naive"] = {k: v for k, v in naive.items() if k not in ("t", "latency_ms")}
        out["ratios"] = {
            f"{ph['rate']:g}": {
                "p50": ratio(naive["p50_ms"], ph["p50_ms"]),
                "p99": ratio(naive["p99_ms"], ph["p99_ms"]),
            }
            for ph in phases
        }
    else:
        out["ratios"] = {}
    target = [ph for ph in phases if ph["rate"] == TARGET_RATE]
    out["target_met"] = target[0]["target_met"] if target else None
    return out
