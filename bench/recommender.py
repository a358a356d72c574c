"""Benchmark of the recommender (issue 7 targets).

1. **ranking, in process** (no Kafka): the worker's per-play logic
   (:class:`recommender_stream.processor.Processor`: decode, state update, candidates,
   MMR, encode) over a 106,574-track catalogue in 16 clusters (synthetic coordinates
   in a 40-dimensional model space), for ``--plays`` plays of ``--users`` listeners.
   Baseline measured in the same run: the naive request-time path, which reads the
   listener's cluster's tracks from MongoDB and scans them per play
   (``--naive-plays`` plays).
2. **one worker on the broker**: the real worker process (``recommender_stream.worker``:
   Faust agent, listener table with its changelog, feeds) with the same 106,574-track
   catalogue (``bench/_synthetic_worker.py`` swaps in the loader); ``--rate`` plays/s
   for ``--duration`` s after ``--warmup`` unmeasured s; latency = arrival of the
   Recommendation on the topic - publish time; then a backlog of ``--backlog`` plays for
   the sustained rate.

Bounded, loopback only; starts its own stack. Prints a table and writes
``bench/results/recommender.json``.
Run: ``.venv/bin/python bench/recommender.py``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _cli import bounded
from _faust_floor import MODES, SINK
from rich.console import Console
from rich.table import Table

from infra.kafka_clients import consumer, end_offsets, ensure_topics, producer
from infra.mongo import database, init_db
from infra.settings import Settings, child_env
from infra.stack.manager import LocalStack
from infra.stack.process import free_port
from recommender_stream.catalogue import Catalogue
from recommender_stream.listener import Limits
from recommender_stream.processor import Processor, Record
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind
from schemas.topics import PLAYS, RECOMMENDATIONS

RESULTS = Path(__file__).resolve().parent / "results" / "recommender.json"
CATALOGUE, CLUSTERS, DIMS = 106_574, 16, 40
KINDS = (PlayKind.PLAY, PlayKind.PLAY, PlayKind.COMPLETE, PlayKind.SKIP, PlayKind.LIKE)


def big_catalogue(seed: int = 1) -> Catalogue:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (CLUSTERS, DIMS))
    labels = rng.integers(0, CLUSTERS, CATALOGUE)
    coords = centres[labels] + rng.normal(0, 1, (CATALOGUE, DIMS))
    cat = Catalogue(model=None, dims=DIMS)
    for i in range(CATALOGUE):
        cat.add(i + 1, int(labels[i]), coords[i], f"track {i + 1}", "bench")
    return cat


def plays(n: int, users: int, tracks: list[int], seed: int = 2) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    picks = rng.zipf(1.3, n) % len(tracks)
    out = []
    for i in range(n):
        user = f"user{rng.integers(0, users)}"
        event = PlayEvent(user_id=user, track_id=tracks[int(picks[i])], kind=KINDS[i % len(KINDS)])
        out.append((encode_key(user), encode(event)))
    return out


def bench_in_process(n: int, users: int, naive_n: int, settings: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    cat = big_catalogue()
    build_s = time.perf_counter() - started
    processor = Processor(catalogue=cat, limits=Limits(), k=10, half_life_s=1800.0)
    records = plays(n, users, cat.ids)
    table: dict[str, Any] = {}
    started = time.perf_counter()
    for i, (key, value) in enumerate(records):
        processor.on_play(Record("plays", 0, i, key, value), table)
    elapsed = time.perf_counter() - started

    # Naive baseline: per play, read the cluster's tracks (coords stored per track) from
    # MongoDB and scan them for the nearest to the played track.
    db = database(settings)
    init_db(db)
    docs = [
        {"_id": int(t), "cluster": c, "coords": cat.coords([p]).tolist()[0]}
        for p, (t, c) in enumerate(zip(cat.ids, cat.clusters, strict=True))
        if c < 2  # two clusters are enough to time it
    ]
    for start in range(0, len(docs), 5000):
        db.tracks_naive.insert_many(docs[start : start + 5000])
    sample = [t for t, c in zip(cat.ids, cat.clusters, strict=True) if c < 2][:naive_n]
    started = time.perf_counter()
    for track in sample:
        seed = db.tracks_naive.find_one({"_id": int(track)})
        assert seed is not None
        rows = list(db.tracks_naive.find({"cluster": seed["cluster"]}, {"coords": 1}))
        matrix = np.asarray([r["coords"] for r in rows])
        d = ((matrix - np.asarray(seed["coords"])) ** 2).sum(axis=1)
        np.argsort(d)[:10]
    naive_s = (time.perf_counter() - started) / len(sample)
    per_play = elapsed / n
    return {
        "catalogue": CATALOGUE,
        "clusters": CLUSTERS,
        "dims": DIMS,
        "build_s": build_s,
        "plays": n,
        "users": users,
        "plays_per_s": n / elapsed,
        "per_play_ms": per_play * 1e3,
        "naive_plays": len(sample),
        "naive_per_play_ms": naive_s * 1e3,
        "naive_over_ours": naive_s / per_play,
        "target_plays_per_s": 2000,
        "target_met": n / elapsed >= 2000,
    }


def bench_worker(
    settings: Settings,
    rate: float,
    duration: float,
    backlog: int,
    profile: Path | None = None,
    warmup: float = 10.0,
) -> dict[str, Any]:
    """One real worker process (Faust app, agent, table, feeds) whose catalogue is the
    same 106,574-track synthetic catalogue (``bench/_synthetic_worker.py``). With
    ``profile``, ``py-spy`` (when installed) samples the worker while it drains the backlog."""
    port = free_port()
    env = worker_env(settings)
    worker = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve().parent / "_synthetic_worker.py"),
            "--web-port",
            str(port),
        ],
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
        cpu_before, machine_before = _cpu_seconds(worker.pid), _machine_busy()
        bench_before = _cpu_seconds(os.getpid())
        started = time.monotonic()
        for key, value in backlog_records:
            p.send(topic, key=key, value=value)
        p.flush()
        deadline = time.monotonic() + 300
        while count[0] - before < backlog and time.monotonic() < deadline:
            time.sleep(0.1)
        backlog_s = time.monotonic() - started
        worker_cpu_s = _cpu_seconds(worker.pid) - cpu_before
        machine_busy_s = _machine_busy() - machine_before
        bench_cpu_s = _cpu_seconds(os.getpid()) - bench_before
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
        # up (Faust's fixed 1.5 s fetch wait showed as one: recommender_stream/transport.py).
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
    """Faust's own cost per play (``bench/_faust_floor.py``): each mode's app drains the
    whole plays topic (everything the real worker was given) from the start."""
    import urllib.request

    ensure_topics(settings, [SINK])
    total = sum(end_offsets(settings, [settings.topic(PLAYS)]).get(settings.topic(PLAYS), {}).values())
    env = worker_env(settings)
    out: dict[str, Any] = {"plays": total}
    for mode in modes:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().parent / "_faust_floor.py"), "--mode", mode,
             "--web-port", str(port)],
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
            started, cpu_before = time.monotonic(), _cpu_seconds(proc.pid)
            done = first
            while done < total and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
                done = taken()
            elapsed, cpu = time.monotonic() - started, _cpu_seconds(proc.pid) - cpu_before
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


def paced(records: list[tuple[bytes, bytes]], rate: float) -> Iterator[tuple[bytes, bytes]]:
    """``records`` one by one, each at its time on a ``rate`` per second schedule."""
    started = time.monotonic()
    for i, record in enumerate(records):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield record


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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--plays", type=bounded(int, 1, 10**7), default=20_000)
    parser.add_argument("--users", type=bounded(int, 1, 10**7), default=2_000)
    parser.add_argument("--naive-plays", type=bounded(int, 1, 10**5), default=50)
    parser.add_argument("--rate", type=bounded(float, 1, 20_000), default=1000.0)
    parser.add_argument("--duration", type=bounded(float, 1, 600), default=20.0)
    parser.add_argument(
        "--warmup", type=bounded(float, 0, 600), default=10.0, help="unmeasured seconds at --rate first"
    )
    parser.add_argument("--backlog", type=bounded(int, 1, 10**6), default=20_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--skip-in-process",
        action="store_true",
        help="only the worker on the broker (the in-process part, with its slow naive baseline, is skipped)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy profile of the draining worker (.json: speedscope, .txt: raw stacks, else SVG)",
    )
    parser.add_argument(
        "--floor",
        nargs="*",
        default=list(MODES),
        choices=MODES,
        help="Faust-only apps that drain the same plays afterwards (what Faust costs per play); "
        "none with an empty --floor",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cadenza-bench-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            ferretdb_port=free_port(),
            spark_master="local[2]",
            topic_prefix="br.",
            mongodb_db="bench_reco",
        )
        stack = LocalStack(settings)
        stack.up()
        try:
            ensure_topics(settings)
            results: dict[str, Any] = {"cpus": os.cpu_count()}
            if not args.skip_in_process:
                results["in_process"] = bench_in_process(args.plays, args.users, args.naive_plays, settings)
            results["worker"] = bench_worker(
                settings, args.rate, args.duration, args.backlog, args.profile, args.warmup
            )
            if args.floor:
                results["faust_floor"] = bench_floor(settings, args.floor)
        finally:
            stack.down()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print_table(results)


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


if __name__ == "__main__":
    main()
