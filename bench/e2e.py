"""End-to-end benchmark: POST of a play -> its recommendation on that listener's websocket.

The whole system, brought up once like ``tests/e2e/conftest.py`` (and ``cadenza demo``): its
own local stack (Kafka + FerretDB) on free ports in a temporary data dir, the sample
catalogue (``--tracks``/``--genres``), the ETL, a trained and promoted model, then both
Structured Streaming jobs, a recommender worker and the gateway under supervisord
(:mod:`infra.supervise`). Loopback only.

1. **ours**, once per rate of ``--rates`` (default 200 and 500 plays/s): ``cadenza simulate``'s
   runner (:func:`gateway.simulator.simulate`, ``--via gateway``) with ``--listeners``
   (default 1,000) websockets for ``--duration`` s (seed ``--seed`` + phase index, so each
   phase has its own listeners), in a child process (its own core and GIL, as a client fleet
   would be). Latency = arrival of the recommendation on the listener's socket - the time
   just before its ``POST /api/plays`` (one machine, one clock); the runner's report only has
   percentiles, so the child wraps the runner's ``Tally`` (a subclass that keeps a reference,
   nothing else changed) to read each event's send time and the arrivals. One such process
   is one event loop on one core; ``--sim-procs N`` shares the listeners and the rate among
   N of them (a phase is flagged ``client_saturated`` when a simulator process is near 100%
   CPU or the rate fell short). **Lost plays**: POSTs not accepted, accepted plays whose
   recommendation never arrived (``--drain`` s allowed after the schedule), and accepted
   plays missing from the ``plays`` history collection ``--settle`` s after the phase (the
   Spark job writes it). Target at 500 plays/s: p99 < 150 ms and zero lost.
2. **consumer lag**: :func:`infra.offsets.lag_rows` every ``--lag-every`` s in a thread, summed
   per consumer (the recommender group and each Spark query); after each phase, the seconds
   until each is back to 0 (within ``--settle`` s?). The recommender commits every second or
   so; a Spark query's offsets are those of its latest *planned* micro-batch
   (``offsets/<batch>``), so its lag reads 0 while that batch is still being written: the
   time until the history holds every play (``history_complete_by_s``, read once the lags
   are 0) is the end-to-end figure for the plays job.
3. **naive request-time path**, same run, after the phases: ``--naive-plays`` plays paced at
   ``--naive-rate``/s, one at a time (slower answers lower the rate: ``achieved_rate``), by
   the first phase's listeners (who have a history): ``POST /api/plays`` to the gateway, then
   what a naive gateway handler would do to answer the player's "what next?" from MongoDB at
   request time, done here in the bench process with pymongo (no second HTTP hop, which
   favours the naive path): read the listener's 20 most recent plays from ``plays``, the
   played track's cluster and feature vector from ``tracks``, every track of that cluster
   with its feature vector, scan them with numpy for the nearest (Euclidean on the 518
   features), skip recent ones, return 10. Latency = POST + that work (each step timed);
   ratio naive / ours at p50 and p99 per rate. (At the sample catalogue's size a cluster
   holds a few dozen tracks; ``bench/recommender.py`` times the scan at 106k tracks.)

A warm-up (a few listeners, a few plays, until every play gets its recommendation and reaches
the history) runs first and is not measured. CPU use of each supervised program (with its
Spark JVM and Python workers) and of the simulator is reported per phase: everything shares
this machine's CPUs (``cpus`` in the JSON). Prints a table, writes ``bench/results/e2e.json``
(``--out``) and ``bench/results/e2e.png`` (``--plot``: latency over time per phase, and
consumer lag over time). Stops everything it started (supervisord and its programs, the
stack), also on error or Ctrl-C.
Run: ``.venv/bin/python bench/e2e.py`` (~15-20 min: sample data, ETL and training first;
``--sim-procs 2`` if one simulator process saturates). Smoke (~6 min): ``--tracks 48
--listeners 50 --rates 20 40 --duration 8 --naive-plays 30 --out /tmp/e2e-smoke.json --plot
/tmp/e2e-smoke.png``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pymongo.database import Database
from rich.console import Console
from rich.table import Table

from infra import supervise
from infra.demo import gateway_url, wait_ready
from infra.mongo import client as mongo_client
from infra.offsets import lag_rows
from infra.prometheus import histogram_delta, parse_metrics
from infra.settings import Settings, child_env
from infra.stack.manager import LocalStack
from infra.stack.process import free_port

# Run as a script, this file's directory is sys.path[0] and bench/gateway.py would shadow the
# ``gateway`` package: drop that directory (``gateway`` is only imported inside functions).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

RESULTS = _HERE / "results" / "e2e.json"
PLOT = _HERE / "results" / "e2e.png"
TARGET_RATE, TARGET_P99_MS = 500.0, 150.0
RECO_K, RECENT_N = 10, 20
STAGE_TIMEOUT_S, READY_TIMEOUT_S, WORKER_TIMEOUT_S = 1800.0, 300.0, 240.0
WARMUP_ATTEMPTS, WARMUP_HISTORY_S = 4, 300.0
console = Console() if sys.stdout.isatty() else Console(width=140)


def bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` within [low, high]."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside [{low:g}, {high:g}]")
        return value

    return parse


def say(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}", highlight=False)


def pct(values: list[float] | np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# --- processes ----------------------------------------------------------------------------------


def raise_nofile() -> int:
    """Raise this process's (so supervisord's and its programs') open-files soft limit to the hard one."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(hard)


def process_cpu_s() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user + system CPU seconds) of every process, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return out


def tree_cpu_s(root: int, table: dict[int, tuple[int, float]]) -> float:
    """CPU seconds of ``root`` and its live descendants (a stream job's Spark JVM and workers)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += table.get(pid, (0, 0.0))[1]
        todo += children.get(pid, [])
    return total


@dataclass
class System:
    """The stack, the batch stages and the supervised programs of one bench run."""

    settings: Settings
    workdir: Path
    stack: LocalStack = field(init=False)
    supervised: bool = False

    def __post_init__(self) -> None:
        self.stack = LocalStack(self.settings)

    @property
    def url(self) -> str:
        return gateway_url(self.settings)

    @property
    def db(self) -> Database[dict[str, Any]]:
        return mongo_client(self.settings)[self.settings.mongodb_db]

    def gateway_metrics(self) -> str:
        """The gateway's ``/metrics`` text ("" when it does not answer)."""
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    def cadenza(self, *args: str, timeout: float = STAGE_TIMEOUT_S) -> None:
        """``python -m infra args`` in its own process group (killed whole on error or Ctrl-C)."""
        log = self.workdir / f"stage-{args[0]}.log"
        env = {**child_env(self.settings, **supervise.configured(self.settings)), "COLUMNS": "200"}
        started = time.monotonic()
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "infra", *args],
                env=env,
                cwd=self.workdir,  # no checkout .env, no bench/ module shadowing ``gateway``
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except BaseException:
                kill_group(proc)
                raise
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"cadenza {' '.join(args)} failed ({code}):\n{tail}")
        say(f"cadenza {' '.join(args)}: {time.monotonic() - started:.0f} s")

    def start_programs(self) -> None:
        self.supervised = True
        with contextlib.chdir(self.workdir):  # supervisord's programs run in its directory
            supervise.start(self.settings)

    def stop_programs(self) -> None:
        """``supervisorctl shutdown``; if supervisord still runs (e.g. not answering yet), SIGTERM
        it by the pid in its pidfile (it then stops its programs' process groups)."""
        if not self.supervised:
            return
        with contextlib.suppress(Exception):
            supervise.stop(self.settings)
        pidfile = self.settings.run_path / "supervisord.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        for sig, wait_s in ((signal.SIGTERM, 90.0), (signal.SIGKILL, 10.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.5)

    def program_pids(self) -> dict[str, int]:
        out = {}
        for program in supervise.programs(self.settings):
            done = supervise.ctl(self.settings, "pid", program.name)
            with contextlib.suppress(ValueError):
                if int(done.stdout.strip()) > 0:
                    out[program.name] = int(done.stdout.strip())
        return out

    def program_cpu(self, pids: dict[str, int]) -> dict[str, float]:
        table = process_cpu_s()
        return {name: tree_cpu_s(pid, table) for name, pid in pids.items()}

    def worker_up(self) -> bool:
        url = f"http://127.0.0.1:{self.settings.faust_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def log_tails(self, lines: int = 25) -> str:
        out = []
        for p in supervise.programs(self.settings):
            path = self.settings.logs_path / f"{p.name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
            out.append(f"--- {p.name} ---\n" + "\n".join(text))
        return "\n".join(out)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM then SIGKILL the process group that ``proc`` leads (started with a new session)."""
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


# --- consumer lag ----------------------------------------------------------------------------


class LagSampler(threading.Thread):
    """``lag_rows`` every ``every`` s: (wall time, {consumer: total lag}) samples."""

    def __init__(self, settings: Settings, every: float) -> None:
        super().__init__(name="lag-sampler", daemon=True)
        self.settings, self.every = settings, every
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.kinds: dict[str, str] = {}
        self.errors: Counter[str] = Counter()
        self.read_s: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                rows = lag_rows(self.settings)
            except Exception as err:
                self.errors[f"{type(err).__name__}: {str(err)[:80]}"] += 1
            else:
                totals: dict[str, int] = {}
                for row in rows:
                    totals[row.name] = totals.get(row.name, 0) + row.lag
                    self.kinds[row.name] = row.kind
                self.samples.append((time.time(), totals))
            took = time.monotonic() - started
            self.read_s.append(took)
            self.halt.wait(max(0.0, self.every - took))

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)

    def latest(self) -> dict[str, int]:
        return dict(self.samples[-1][1]) if self.samples else {}

    def between(self, start: float, end: float) -> list[tuple[float, dict[str, int]]]:
        return [(t, lag) for t, lag in list(self.samples) if start <= t <= end]

    def zero_after(self, since: float, until: float) -> dict[str, float | None]:
        """Per consumer, seconds from ``since`` to its first sample with lag 0 (None: not by ``until``)."""
        out: dict[str, float | None] = dict.fromkeys(self.kinds)
        for t, lag in self.between(since, until):
            for name, value in lag.items():
                if value == 0 and out.get(name) is None:
                    out[name] = t - since
        return out


# --- the simulator, in a child process ------------------------------------------------------------


def simulator_child(settings: Settings, options: dict[str, Any], out: str) -> None:
    """Run ``cadenza simulate``'s runner; write its report and each event's send and arrival times.

    The runner keeps per-event times in its ``Tally`` and reports only percentiles: a subclass
    that remembers the instance it made is put in its place, in this (child) process only."""
    from gateway import simulator

    made: list[simulator.Tally] = []

    class KeptTally(simulator.Tally):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    simulator.Tally = KeptTally  # type: ignore[misc,assignment]  # a subclass, in this process only
    config = simulator.SimulationConfig(via="gateway", progress=False, **options)
    report = simulator.run(settings, config)
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
    users = simulator.user_ids(report.run_tag, config.listeners)
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


def history_ids(db: Database[dict[str, Any]], users: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(users), 500):
        chunk = users[start : start + 500]
        found |= {str(d["_id"]) for d in db.plays.find({"user_id": {"$in": chunk}}, {"_id": 1})}
    return found


# --- the phases --------------------------------------------------------------------------------------


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
    cpu0, wall0, metrics0 = system.program_cpu(pids), time.time(), system.gateway_metrics()
    raw = simulate(system, options, sim_timeout(options))
    wall1, metrics1 = time.time(), system.gateway_metrics()
    cpu1, pids_after = system.program_cpu(pids), system.program_pids()
    events, report = raw["events"], raw["report"]
    accepted = [e for e in events if e[2]]
    answered = [e for e in accepted if e[3] is not None]
    series = sorted((e[1], (e[3] - e[1]) * 1e3) for e in answered)
    lat = [ms for _, ms in series]
    sent_times = [e[1] for e in events]
    send_start, send_end = (min(sent_times), max(sent_times)) if sent_times else (wall0, wall0)

    # Every consumer's lag back to 0 and every accepted play in the history, within --settle s.
    # The history is read once the lag is 0 (or at the deadline): reading it scans ``plays``,
    # load on FerretDB that would slow the very writes being waited for.
    wanted = {e[0] for e in accepted}
    db = system.db
    stored: set[str] = set()
    history_s: float | None = None
    polls: list[tuple[float, int, float]] = []  # (s after the last send, stored, query s)
    deadline = time.monotonic() + args.settle
    try:
        while True:
            late = time.monotonic() > deadline
            if late or not any(sampler.latest().values()):
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
    zero = sampler.zero_after(send_end, settled)
    window = sampler.between(send_start, settled)
    lag_max = {name: max((lag.get(name, 0) for _, lag in window), default=0) for name in sampler.kinds}
    refused = len(events) - len(accepted)
    no_reco = len(accepted) - len(answered)
    missing = len(wanted - stored)
    p99 = pct(lat, 99)
    wall = wall1 - wall0
    sim_cpu = [c / wall * 100 for c in raw["cpu_s"]]
    achieved = report["achieved_rate"]
    return {
        "rate": rate,
        "seed": options[0]["seed"],
        "listeners": args.listeners,
        "sockets": report["sockets"],
        "socket_errors": report["socket_errors"],
        "duration_s": args.duration,
        "scheduled": report["scheduled"],
        "sent": len(events),
        "achieved_rate": achieved,
        "accepted": len(accepted),
        "refused_or_failed": refused,
        "failed": report["failed"],
        "received": len(answered),
        "repeated_arrivals": raw["repeated_arrivals"],
        "unmatched_arrivals": report["unmatched"],
        "lost_no_recommendation": no_reco,
        "missing_from_history": missing,
        "history_complete_by_s": history_s,
        "history_polls": polls,
        "lost": refused + no_reco + missing,
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "p99_ms": p99,
        "max_ms": max(lat) if lat else None,
        "simulator_latency_ms": report["latency_ms"],
        # Where a recommendation's time went, on average (the gateway's histograms over the phase).
        "stages_mean_ms": stage_means(metrics0, metrics1),
        "lag_max": lag_max,
        "lag_zero_after_s": zero,
        "lag_back_to_zero": all(v is not None and v <= args.settle for v in zero.values()) and bool(zero),
        "cpu_pct": {
            **{n: (cpu1[n] - cpu0[n]) / wall * 100 for n in cpu0 if pids_after.get(n) == pids.get(n)},
            "simulator": sum(sim_cpu),
        },
        "simulator_processes": len(options),
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
        "window": [wall0, send_start, send_end, settled],
        "users": raw["users"],
    }


STAGES = {
    "play -> recommendation produced": "cadenza_gateway_recommendation_delay_seconds",
    "produced -> read by the gateway": "cadenza_gateway_feed_delay_seconds",
    "read -> sent on the socket": "cadenza_gateway_fanout_seconds",
}


def stage_means(before: str, after: str) -> dict[str, float | None]:
    """Mean of each :data:`STAGES` histogram between two ``/metrics`` texts, in ms."""
    m0, m1 = parse_metrics(before), parse_metrics(after)
    out: dict[str, float | None] = {}
    for stage, name in STAGES.items():
        mean = histogram_delta(m0, m1, name)["mean_ms"]
        out[stage] = None if mean is None else round(mean, 1)
    return out


# --- the naive request-time path ---------------------------------------------------------------------


def naive_recommend(
    db: Database[dict[str, Any]], user: str, track: int, steps: dict[str, list[float]]
) -> list[int]:
    """What a naive gateway handler would do per request: everything from MongoDB, then a scan.
    Appends each step's milliseconds to ``steps``."""
    t0 = time.perf_counter()
    recent = {
        int(d["track_id"])
        for d in db.plays.find({"user_id": user}, {"track_id": 1}).sort("ts", -1).limit(RECENT_N)
    }
    t1 = time.perf_counter()
    seed = db.tracks.find_one({"_id": track}, {"cluster": 1, "features": 1})
    t2 = time.perf_counter()
    if seed is None or seed.get("cluster") is None:
        return []
    rows = list(db.tracks.find({"cluster": seed["cluster"]}, {"features": 1}))
    t3 = time.perf_counter()
    rows = [r for r in rows if r.get("features")]
    ids = [int(r["_id"]) for r in rows]
    matrix = np.asarray([r["features"] for r in rows], dtype=np.float64)
    distance = ((matrix - np.asarray(seed["features"], dtype=np.float64)) ** 2).sum(axis=1)
    skip = recent | {track}
    out = [ids[j] for j in np.argsort(distance) if ids[j] not in skip][:RECO_K]
    t4 = time.perf_counter()
    took = {"recent_plays": t1 - t0, "seed_track": t2 - t1, "cluster_tracks": t3 - t2, "scan": t4 - t3}
    for name, seconds in took.items():
        steps.setdefault(name, []).append(seconds * 1e3)
    steps.setdefault("cluster_size", []).append(float(len(rows)))
    return out


def run_naive(system: System, users: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from gateway import tokens

    db = system.db
    secret = system.settings.token_secret.get_secret_value()
    token_of = {u: tokens.issue(secret, u, now=time.time(), ttl_s=3600) for u in users}
    tracks = sorted(int(d["_id"]) for d in db.tracks.find({"cluster": {"$ne": None}}, {"_id": 1}))
    rng = random.Random(f"{args.seed}:naive")
    rows: list[tuple[float, float, float]] = []  # (start, POST ms, compute ms)
    failed: Counter[str] = Counter()
    lists: list[int] = []
    steps: dict[str, list[float]] = {}
    with httpx.Client(base_url=system.url, timeout=15.0, trust_env=False) as http:

        def one(user: str, track: int) -> tuple[float, float] | None:
            body = {"track_id": track, "kind": "play", "position_s": 0.0, "event_id": str(uuid.uuid4())}
            t0 = time.perf_counter()
            try:
                r = http.post("/api/plays", json=body, headers={"Authorization": f"Bearer {token_of[user]}"})
            except httpx.HTTPError as err:
                failed[type(err).__name__] += 1
                return None
            if r.status_code != 202:
                failed[f"HTTP {r.status_code}"] += 1
                return None
            t1 = time.perf_counter()
            lists.append(len(naive_recommend(db, user, track, steps)))
            return (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3

        for _ in range(5):  # warm the connections; not measured
            one(rng.choice(users), rng.choice(tracks))
        lists.clear()
        steps.clear()
        started = time.monotonic()
        for i in range(args.naive_plays):
            delay = started + i / args.naive_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            at = time.time()
            took = one(rng.choice(users), rng.choice(tracks))
            if took is not None:
                rows.append((at, *took))
        elapsed = time.monotonic() - started
    db.client.close()
    total = [post + work for _, post, work in rows]
    return {
        "plays": args.naive_plays,
        "rate": args.naive_rate,
        "achieved_rate": args.naive_plays / elapsed if elapsed else 0.0,
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


# --- plot and table ------------------------------------------------------------------------------------


def per_second(t: list[float], values: list[float]) -> Iterator[tuple[float, float, float]]:
    """(second mid-point, p50, p99) of ``values`` binned by whole seconds of ``t``."""
    bins: dict[int, list[float]] = {}
    for x, v in zip(t, values, strict=True):
        bins.setdefault(int(x), []).append(v)
    for second in sorted(bins):
        yield second + 0.5, float(np.percentile(bins[second], 50)), float(np.percentile(bins[second], 99))


def plot(
    results: dict[str, Any],
    phases: list[dict[str, Any]],
    naive: dict[str, Any] | None,
    lag: list[tuple[float, dict[str, int]]],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = phases[0]["window"][0] if phases else (lag[0][0] if lag else time.time())
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 8), sharex=True, height_ratios=(3, 2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


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


# --- main ------------------------------------------------------------------------------------------------


def interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tracks", type=bounded(int, 8, 2000), default=240, help="sample catalogue size")
    parser.add_argument("--genres", type=bounded(int, 1, 16), default=8)
    parser.add_argument("--k-range", default="6:12:2", help="model train --k-range (as cadenza demo)")
    parser.add_argument("--listeners", type=bounded(int, 1, 5000), default=1000, help="websockets")
    parser.add_argument(
        "--rates", type=bounded(float, 1, 2000), nargs="+", default=[200.0, 500.0], help="plays/s"
    )
    parser.add_argument("--duration", type=bounded(float, 1, 120), default=30.0, help="seconds per rate")
    parser.add_argument(
        "--drain", type=bounded(float, 1, 120), default=30.0, help="s to wait for recommendations"
    )
    parser.add_argument("--settle", type=bounded(float, 5, 300), default=60.0, help="s for history and lag")
    parser.add_argument("--seed", type=bounded(int, 0, 2**31), default=7)
    parser.add_argument(
        "--sim-procs", type=bounded(int, 1, 8), default=1, help="simulator processes sharing the load"
    )
    parser.add_argument("--lag-every", type=bounded(float, 0.2, 10), default=1.0, help="seconds")
    parser.add_argument("--naive-plays", type=bounded(int, 0, 5000), default=200)
    parser.add_argument("--naive-rate", type=bounded(float, 0.5, 200), default=20.0, help="plays/s")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args()
    args.out, args.plot = args.out.resolve(), args.plot.resolve()
    # Ctrl-C and SIGTERM raise at once, so every `finally` below stops what it started.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    nofile = raise_nofile()
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "nofile_limit": nofile,
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cadenza-bench-e2e-", ignore_cleanup_errors=True) as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            ferretdb_port=free_port(),
            topic_prefix="be2e.",
            mongodb_db="bench_e2e",
            gateway_port=free_port(),
            faust_port=free_port(),
            token_secret=uuid.uuid4().hex,
            demo_signin=True,
            spark_master="local[2]",
            spark_driver_memory="1g",
            fma_dir=None,
        )
        system = System(settings, Path(tmp))
        sampler: LagSampler | None = None
        phases: list[dict[str, Any]] = []
        naive: dict[str, Any] | None = None
        try:
            say("local stack …")
            system.stack.up()
            sample = settings.data_dir / "sample-fma"
            system.cadenza(
                "sample-data", str(sample), "--tracks", str(args.tracks), "--genres", str(args.genres)
            )
            system.cadenza("etl", "run", "--fma-dir", str(sample))
            system.cadenza("model", "train", "--k-range", args.k_range, "--promote")
            say("streaming jobs, recommender and gateway (supervisord) …")
            system.start_programs()
            wait_ready(settings, timeout=READY_TIMEOUT_S)
            deadline = time.monotonic() + WORKER_TIMEOUT_S
            while not system.worker_up():
                if time.monotonic() > deadline:
                    raise RuntimeError("the recommender worker's /metrics never answered")
                time.sleep(1.0)
            results["setup_s"] = time.monotonic() - started
            sampler = LagSampler(settings, args.lag_every)
            sampler.start()
            say("warm-up …")
            results["warm_up"] = warm_up(system, args, sampler)
            for index, rate in enumerate(args.rates):
                say(f"{rate:g} plays/s, {args.listeners:,} listeners, {args.duration:g} s …")
                phases.append(run_phase(system, sampler, args, index, rate))
                ph = phases[-1]
                say(
                    f"  p50 {ms(ph['p50_ms'])}, p99 {ms(ph['p99_ms'])}, accepted {ph['accepted']}, "
                    f"lost {ph['lost']}"
                )
            if args.naive_plays and phases:
                say(f"naive request-time path, {args.naive_plays} plays at {args.naive_rate:g}/s …")
                naive = run_naive(system, phases[0]["users"], args)
            sampler.stop()
        except BaseException:
            if system.supervised:
                print(f"program log tails:\n{system.log_tails()}", file=sys.stderr)
            raise
        finally:
            if sampler is not None:
                sampler.stop()
            say("stopping …")
            system.stop_programs()
            system.stack.down()
    lag = sampler.samples if sampler is not None else []
    results["lag"] = {
        "every_s": args.lag_every,
        "samples": len(lag),
        "read_s_p50": pct(sampler.read_s, 50) if sampler else None,
        "errors": dict(sampler.errors) if sampler else {},
        "kinds": dict(sampler.kinds) if sampler else {},
        "max": {n: max((s.get(n, 0) for _, s in lag), default=0) for n in (sampler.kinds if sampler else {})},
    }
    results["phases"] = [
        {k: v for k, v in ph.items() if k not in ("t", "latency_ms", "users")} for ph in phases
    ]
    if naive is not None:
        results["naive"] = {k: v for k, v in naive.items() if k not in ("t", "latency_ms")}
        results["ratios"] = {
            f"{ph['rate']:g}": {
                "p50": ratio(naive["p50_ms"], ph["p50_ms"]),
                "p99": ratio(naive["p99_ms"], ph["p99_ms"]),
            }
            for ph in phases
        }
    else:
        results["ratios"] = {}
    target = [ph for ph in phases if ph["rate"] == TARGET_RATE]
    results["target_met"] = target[0]["target_met"] if target else None
    results["lag_series"] = [[round(t, 3), s] for t, s in lag]
    results["elapsed_s"] = time.monotonic() - started
    results["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    plot(results, phases, naive, lag, args.plot)
    print_table(results)
    say(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop or 'SIGINT'}); everything started was stopped", file=sys.stderr)
        sys.exit(130)
