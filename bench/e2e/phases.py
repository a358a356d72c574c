"""Bench only: the warm-up and the measured phases of ``bench.e2e``.

Each runs the simulator (``bench.e2e.load``) against the run's system
(``bench.e2e.system``), then waits, up to ``--settle`` s, for every consumer's lag
(:class:`bench.common.LagSampler`) to be back to 0 and every accepted play to be in MongoDB's ``plays``
history. A measured phase also reads the programs' CPU and the gateway's ``/metrics`` before
and after; what it recorded goes to :func:`bench.e2e.analysis.phase_summary`, whose dict goes
back to ``bench.e2e`` (JSON, table, plot).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pymongo.database import Database

from bench.common import LagSampler
from bench.e2e.analysis import PhaseRecord, accepted_events, phase_summary, send_window
from bench.e2e.load import sim_options, sim_timeout, simulate
from bench.e2e.report import say
from bench.e2e.system import System, machine_cpu_s

WARMUP_ATTEMPTS, WARMUP_HISTORY_S = 4, 300.0


def history_ids(db: Database[dict[str, Any]], users: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(users), 500):
        chunk = users[start : start + 500]
        found |= {str(d["_id"]) for d in db.plays.find({"user_id": {"$in": chunk}}, {"_id": 1})}
    return found


def warm_up(system: System, args: argparse.Namespace, sampler: LagSampler) -> dict[str, Any]:
    """A few plays until each gets its recommendation (worker assigned, gateway feed live) and all
    reach the history (the plays job has started); not measured."""
    started = time.monotonic()
    listeners = min(10, args.listeners)
    attempts: list[dict[str, int]] = []
    for attempt in range(1, WARMUP_ATTEMPTS + 1):
        options = sim_options(listeners, 4.0, 4.0, 30.0, args.seed + 100_000 + attempt)
        raw = simulate(system, options, sim_timeout(options))
        accepted = [e for e in raw["events"] if e[2]]
        answered = sum(e[3] is not None for e in accepted)
        attempts.append({"sent": len(raw["events"]), "accepted": len(accepted), "answered": answered})
        if accepted and answered == len(accepted):
            break
        say(f"[yellow]warm-up {attempt}: {answered} of {len(accepted)} accepted plays answered[/]")
    else:
        raise RuntimeError(f"warm-up: plays still get no recommendation\n{system.log_tails()}")
    wanted = {e[0] for e in accepted}
    db = system.db
    deadline = time.monotonic() + WARMUP_HISTORY_S
    try:
        while not wanted <= history_ids(db, raw["users"]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"warm-up plays not in history after {WARMUP_HISTORY_S:.0f} s")
            time.sleep(2.0)
    finally:
        db.client.close()
    settle_until = time.monotonic() + args.settle
    while any(sampler.latest().values()) and time.monotonic() < settle_until:
        time.sleep(1.0)
    return {"attempts": attempts, "seconds": time.monotonic() - started}


def run_phase(
    system: System, sampler: LagSampler, args: argparse.Namespace, index: int, rate: float
) -> dict[str, Any]:
    options = sim_options(args.listeners, rate, args.duration, args.drain, args.seed + index, args.sim_procs)
    pids = system.program_pids()
    machine0 = machine_cpu_s()
    cpu0, wall0, metrics0 = system.program_cpu(pids), time.time(), system.gateway_metrics()
    raw = simulate(system, options, sim_timeout(options))
    wall1, metrics1 = time.time(), system.gateway_metrics()
    cpu1, pids_after = system.program_cpu(pids), system.program_pids()
    send_start, send_end = send_window(raw["events"], wall0)

    # Every consumer's lag back to 0 and every accepted play in the history, within --settle s.
    # The history is read once the lag is 0 (or at the deadline): reading it scans ``plays``,
    # load on FerretDB that would slow the very writes being waited for.
    wanted = {e[0] for e in accepted_events(raw["events"])}
    db = system.db
    stored: set[str] = set()
    history_s: float | None = None
    polls: list[tuple[float, int, float]] = []  # (s after the last send, stored, query s)
    costs_at: tuple[dict[str, float], float, float] | None = None  # CPU, machine CPU, when
    deadline = time.monotonic() + args.settle
    try:
        while True:
            late = time.monotonic() > deadline
            if late or not any(sampler.latest().values()):
                if costs_at is None:  # the lags are 0: the phase's work is done, before reading
                    costs_at = (system.program_cpu(pids), machine_cpu_s(), time.time())  # history
                asked = time.time()
                stored = history_ids(db, raw["users"]) & wanted
                polls.append((round(asked - send_end, 2), len(stored), round(time.time() - asked, 3)))
                if stored == wanted:
                    history_s = time.time() - send_end
                    break
            if late:
                break
            time.sleep(2.0)
    finally:
        db.client.close()
    settled = time.time()
    cpu_settled, machine1, costs_until = costs_at or (system.program_cpu(pids), machine_cpu_s(), settled)
    return phase_summary(
        PhaseRecord(
            rate=rate,
            seed=options[0]["seed"],
            listeners=args.listeners,
            duration_s=args.duration,
            settle_s=args.settle,
            simulator_processes=len(options),
            raw=raw,
            wall=(wall0, wall1),
            cpu=(cpu0, cpu1),
            pids=(pids, pids_after),
            metrics=(metrics0, metrics1),
            stored=stored,
            history_s=history_s,
            polls=polls,
            settled=settled,
            zero=sampler.zero_after(send_end, settled),
            lag_max=sampler.peak(send_start, settled),
            cpu_settled=cpu_settled,
            machine=(machine0, machine1),
            costs_until=costs_until,
        )
    )
