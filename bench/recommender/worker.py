"""Bench only: one real recommender worker on the broker, and Faust's own floor.

``bench_worker`` starts ``bench.recommender.synthetic_worker`` (the real worker with the
synthetic catalogue of :mod:`bench.recommender.data`) against the bench's stack, publishes
plays at a rate and then a backlog to ``cadenza.plays``, and reads the Recommendations
back from ``cadenza.recommendations``: latency, per-second p50, CPU per play.
``bench_floor`` then runs ``bench.recommender.faust_floor`` apps over the same plays. Both return
dicts that ``bench.recommender`` writes to its JSON and table.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import cpu_seconds
from bench.recommender.data import CATALOGUE, paced, plays
from bench.recommender.faust_floor import SINK
from infra.kafka_clients import consumer, end_offsets, ensure_topics, producer
from infra.settings import Settings, child_env
from infra.stack.process import free_port
from schemas.topics import PLAYS, RECOMMENDATIONS


def bench_worker(
    settings: Settings,
    rate: float,
    duration: float,
    backlog: int,
    profile: Path | None = None,
    warmup: float = 10.0,
) -> dict[str, Any]:
    """One real worker process (Faust app, agent, table, feeds) whose catalogue is the
    same 106,574-track synthetic catalogue (``bench.recommender.synthetic_worker``). With
    ``profile``, ``py-spy`` (when installed) samples the worker while it drains the backlog."""
    port = free_port()
    env = worker_env(settings)
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.recommender.synthetic_worker", "--web-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tracks = list(range(1, CATALOGUE + 1))
    arrived: dict[str, float] = {}
    produced: dict[str, float] = {}  # the Recommendation's Kafka timestamp (worker's send)
    count = [0]
    stop = threading.Event()

    def listen() -> None:
        c = consumer(settings, settings.topic(RECOMMENDATIONS), group_id=f"b-{uuid.uuid4().hex[:6]}")
        try:
            while not stop.is_set():
                for records in c.poll(timeout_ms=100).values():
                    now = time.time()
                    for r in records:
                        count[0] += 1
                        # Only the cause is needed: json.loads, not the pydantic model (this
                        # thread shares the machine with the worker it measures).
                        cause = str(json.loads(r.value)["cause_event_id"])
                        arrived.setdefault(cause, now)
                        produced.setdefault(cause, r.timestamp / 1e3)
        finally:
            c.close()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    p = producer(settings)
    topic = settings.topic(PLAYS)
    try:
        warm = plays(50, 10, tracks, seed=9)
        for key, value in warm:
            p.send(topic, key=key, value=value)
        p.flush()
        deadline = time.monotonic() + 120
        while count[0] < 50 and time.monotonic() < deadline:
            time.sleep(0.2)
        # Unmeasured plays at the rate first: a fresh broker's JIT compiler took a fifth of
        # a core for the first minute, which a broker in service has long since done.
        for key, value in paced(plays(int(rate * warmup), 1000, tracks, seed=3), rate):
            p.send(topic, key=key, value=value)
        p.flush()
        sent: dict[str, float] = {}
        records = plays(int(rate * duration), 1000, tracks, seed=4)
        ids = [json.loads(value)["event_id"] for _, value in records]
        rate_machine_before = _machine_busy()
        started = time.monotonic()
        for i, (key, value) in enumerate(paced(records, rate)):
            p.send(topic, key=key, value=value)
            sent[ids[i]] = time.time()
        p.flush()
        rate_wall_s = time.monotonic() - started
        rate_busy = (_machine_busy() - rate_machine_before) / rate_wall_s / (os.cpu_count() or 1)
        deadline = time.monotonic() + 60
        while len(set(sent) & set(arrived)) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
        answered = [e for e in sent if e in arrived]
        lat = np.asarray([arrived[e] - sent[e] for e in answered]) * 1e3
        to_produced = np.asarray([produced[e] - sent[e] for e in answered]) * 1e3
        per_second = latency_per_second(sent, arrived)
        # Sustained: a backlog published at once, time until every list is out.
        before = count[0]
        backlog_records = plays(backlog, 5000, tracks, seed=5)
        spy = _py_spy(worker.pid, profile) if profile else None
        cpu_before, machine_before = cpu_seconds(worker.pid), _machine_busy()
        bench_before = cpu_seconds(os.getpid())
        started = time.monotonic()
        for key, value in backlog_records:
            p.send(topic, key=key, value=value)
        p.flush()
        deadline = time.monotonic() + 300
        while count[0] - before < backlog and time.monotonic() < deadline:
            time.sleep(0.1)
        backlog_s = time.monotonic() - started
        worker_cpu_s = cpu_seconds(worker.pid) - cpu_before
        machine_busy_s = _machine_busy() - machine_before
        bench_cpu_s = cpu_seconds(os.getpid()) - bench_before
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
    finally:
        stop.set()
        p.close()
        worker.terminate()
        worker.wait(timeout=60)
    return {
        "catalogue": CATALOGUE,
        "rate": rate,
        "faust_store": settings.faust_store,
        "event_loop": settings.event_loop,
        "fetch_wait_ms": settings.faust_fetch_wait_ms,
        "duration_s": duration,
        "warmup_s": warmup,
        "sent": len(sent),
        "received": int(lat.size),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        # Play sent -> the worker's send of its Recommendation (the rest is delivery to us).
        "to_produced_p50_ms": float(np.percentile(to_produced, 50)),
        "to_produced_p99_ms": float(np.percentile(to_produced, 99)),
        # p50 per second of the run: a step that stays is a delay the worker never makes
        # up (Faust's fixed 1.5 s fetch wait showed as one: infra/faust_internals.py).
        "p50_ms_per_second": per_second,
        "machine_busy_pct": round(100 * rate_busy, 1),
        "target_p99_ms": 50,
        "target_met": bool(np.percentile(lat, 99) < 50),
        "backlog": backlog,
        "backlog_s": backlog_s,
        "backlog_plays_per_s": (count[0] - before) / backlog_s,
        # CPU time is steadier than wall time on a shared machine.
        "backlog_worker_cpu_ms_per_play": worker_cpu_s / backlog * 1e3,
        "backlog_machine_cpu_ms_per_play": machine_busy_s / backlog * 1e3,
        "backlog_bench_cpu_ms_per_play": bench_cpu_s / backlog * 1e3,
    }


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment of a worker (or Faust floor app) on the bench's stack. Its table store,
    event loop and fetch wait follow this process's CADENZA_FAUST_STORE, CADENZA_EVENT_LOOP
    and CADENZA_FAUST_FETCH_WAIT_MS (for A/B runs); all are in the results."""
    return child_env(
        settings,
        log_level="WARNING",
        faust_store=settings.faust_store,
        event_loop=settings.event_loop,
        faust_fetch_wait_ms=settings.faust_fetch_wait_ms,
    )


def bench_floor(settings: Settings, modes: list[str]) -> dict[str, Any]:
    """Faust's own cost per play (``bench.recommender.faust_floor``): each mode's app drains the
    whole plays topic (everything the real worker was given) from the start."""
    import urllib.request

    ensure_topics(settings, [SINK])
    total = sum(end_offsets(settings, [settings.topic(PLAYS)]).get(settings.topic(PLAYS), {}).values())
    env = worker_env(settings)
    out: dict[str, Any] = {"plays": total}
    for mode in modes:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.recommender.faust_floor", "--mode", mode, "--web-port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def taken(port: int = port) -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=2) as resp:
                    return int(resp.read())
            except (OSError, ValueError):
                return 0

        try:
            deadline = time.monotonic() + 300
            first = 0
            while first == 0 and time.monotonic() < deadline and proc.poll() is None:
                first = taken()
                time.sleep(0.02)
            started, cpu_before = time.monotonic(), cpu_seconds(proc.pid)
            done = first
            while done < total and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
                done = taken()
            elapsed, cpu = time.monotonic() - started, cpu_seconds(proc.pid) - cpu_before
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        n = done - first
        out[mode] = {
            "taken": done,
            "plays_per_s": n / elapsed if elapsed > 0 else 0.0,
            "cpu_ms_per_play": cpu / n * 1e3 if n else None,
        }
    return out


def latency_per_second(sent: dict[str, float], arrived: dict[str, float]) -> list[float]:
    """p50 latency (ms) of the plays sent in each second of the run, in order."""
    if not sent:
        return []
    t0 = min(sent.values())
    buckets: dict[int, list[float]] = {}
    for e, at in sent.items():
        if e in arrived:
            buckets.setdefault(int(at - t0), []).append((arrived[e] - at) * 1e3)
    return [round(float(np.median(buckets[s])), 1) for s in sorted(buckets)]


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy (not idle or waiting on IO), all cores."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample ``pid`` with py-spy (a profiling aid, not a project dependency) until SIGINT."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: no profile")
        return None
    fmt = {".json": "speedscope", ".txt": "raw"}.get(out.suffix, "flamegraph")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "250", "--format", fmt, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
