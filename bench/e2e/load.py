"""Bench only: ``cadenza simulate``'s runner driven by ``bench.e2e``, one child process per share.

:func:`simulate` spawns one :func:`simulator_child` per entry of :func:`sim_options` (its own
core and GIL, as a client fleet would be). Each runs :func:`simulator.run.run`
(``--via gateway``: websockets, the plays sent as ``play`` frames on them, to the run's
gateway) and writes, to a
JSON file in the run's work dir, the runner's report and per event ``[event_id, sent at,
accepted, first recommendation at]``, the listeners' ids, repeated arrivals and its CPU
seconds. The parts, merged, go to ``bench.e2e.phases`` (warm-up and measured phases).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench.e2e.system import System
from infra.settings import Settings


def simulator_child(settings: Settings, options: dict[str, Any], out: str) -> None:
    """Run ``cadenza simulate``'s runner; write its report and each event's send and arrival times.

    The runner keeps per-event times in its ``Tally`` and reports only percentiles: a subclass
    that remembers the instance it made is put in its place, in this (child) process only."""
    from simulator import run as runner

    made: list[runner.Tally] = []

    class KeptTally(runner.Tally):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    runner.Tally = KeptTally  # type: ignore[misc,assignment]  # a subclass, in this process only
    config = runner.SimulationConfig(via="gateway", progress=False, **options)
    report = runner.run(settings, config)
    tally = made[-1]
    first: dict[str, float] = {}
    repeats = 0
    for arrival in tally.arrivals:
        cause = arrival.cause_event_id
        if cause is None or cause not in tally.sent_at:
            continue
        if cause in first:
            repeats += 1
        else:
            first[cause] = arrival.at
    accepted = set(tally.accepted)
    events = [[eid, sent, eid in accepted, first.get(eid)] for eid, sent in tally.sent_at.items()]
    users = runner.user_ids(report.run_tag, config.listeners)
    report_dict = report.to_dict()
    report_dict.pop("accepted_event_ids")
    Path(out).write_text(
        json.dumps(
            {
                "report": report_dict,
                "events": events,
                "users": users,
                "repeated_arrivals": repeats,
                "cpu_s": time.process_time(),
            }
        )
    )


def simulate(system: System, options: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    """One :func:`simulator_child` per entry of ``options``, spawned together; their outputs merged
    (events and listeners concatenated, counts summed) or RuntimeError."""
    ctx = mp.get_context("spawn")
    outs = [system.workdir / f"sim-{uuid.uuid4().hex[:8]}.json" for _ in options]
    procs = [
        ctx.Process(target=simulator_child, args=(system.settings, o, str(out)), name=f"simulator-{i}")
        for i, (o, out) in enumerate(zip(options, outs, strict=True))
    ]
    try:
        for proc in procs:
            proc.start()
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    parts = []
    for proc, out in zip(procs, outs, strict=True):
        if proc.exitcode != 0 or not out.exists():
            raise RuntimeError(f"the simulator failed (exit code {proc.exitcode}, timeout {timeout:.0f} s)")
        parts.append(json.loads(out.read_text()))
        out.unlink()
    reports = [p["report"] for p in parts]
    summed = ("scheduled", "sockets", "unmatched", "achieved_rate")
    report = {k: sum(r[k] for r in reports) for k in summed}
    for key in ("failed", "socket_errors"):
        report[key] = dict(sum((Counter(r[key]) for r in reports), Counter()))
    report["latency_ms"] = reports[0]["latency_ms"] if len(reports) == 1 else None
    return {
        "report": report,
        "events": [e for p in parts for e in p["events"]],
        "users": [u for p in parts for u in p["users"]],
        "repeated_arrivals": sum(p["repeated_arrivals"] for p in parts),
        "cpu_s": [p["cpu_s"] for p in parts],
    }


def sim_options(
    listeners: int, rate: float, duration: float, drain: float, seed: int, procs: int = 1
) -> list[dict[str, Any]]:
    """The simulation split over ``procs`` processes: listeners and rate shared out, one seed each."""
    procs = max(1, min(procs, listeners))
    return [
        {
            "listeners": listeners // procs + (1 if i < listeners % procs else 0),
            "rate": rate / procs,
            "duration_s": duration,
            "drain_s": drain,
            "seed": seed + 1000 * i,
        }
        for i in range(procs)
    ]


def sim_timeout(options: list[dict[str, Any]]) -> float:
    first = options[0]
    connect = sum(o["listeners"] for o in options) / 50  # generous: ~1,000 handshakes/s when idle
    return float(first["duration_s"] + first["drain_s"] + connect + 240)
