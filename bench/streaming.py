"""Benchmark of the Structured Streaming jobs on Spark local[2] (issue 6 and 23 targets).

1. **plays**: a backlog of ``--plays`` PlayEvents (Zipf-popular tracks out of a
   106,574-track catalogue, ``--users`` listeners, event times spread over the last
   hour) is put on ``cadenza.plays`` first; then the plays queries (history, sessions,
   profiles, trending) start and the clock runs until every query has processed every
   offset. Sustained plays/s = plays / that time; batch durations come from each
   query's progress. Target: >= 5,000 plays/s.
2. **live**: the plays queries run while a child process publishes ``--live-rate`` plays/s
   (event time = now) and one probe play per second on a track alone in its cluster.
   After ``--live-warmup`` s, ``--live-s`` s are measured: CPU of Spark (the driver JVM,
   its Python workers and this process, where ``foreachBatch`` sinks run) per play
   published, each query's batches from its own progress (count, empty ones, duration,
   ms per input row, state shuffle partitions), and each probe's latency until it is in
   the ``plays`` history and until the probe cluster's newest ``cadenza.trending`` window
   (what the recommender and the gateways keep) counts it or a newer window replaced it.
   Targets (issue 23, at 500 plays/s): history < 10 s, trending < 15 s.
3. **assign latency**: a model trained on a synthetic catalogue is current; the
   assignment query runs with a 1-second trigger while one new track is published
   every ``--assign-interval`` seconds for ``--assign-duration`` seconds; latency =
   arrival of its ``TrackAssigned`` on the topic - publish time. Target: p99 < 5 s.

Bounded workload on loopback; starts its own stack on free ports in a temporary data
dir. The queries' settings come from the environment (``CADENZA_*``), like the jobs'.
Prints a table and writes ``bench/results/streaming.json``.
Run: ``.venv/bin/python -m bench.streaming [--plays 300000] [--only live --live-rate 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.common import RESULTS_DIR, cpu_seconds, percentiles, temporary_stack, write_json
from infra.kafka_clients import aio_producer, consumer, end_offsets, ensure_topics, producer
from infra.mongo import database, init_db
from infra.settings import Settings
from infra.spark import spark_session
from schemas.codec import decode, encode, encode_key
from schemas.events import PlayEvent, PlayKind, TrackEvent, Trending
from schemas.topics import PLAYS, TRACKS_ASSIGNED, TRACKS_NEW, TRENDING
from schemas.vectors import pack, unpack
from streaming_jobs.model.train import TrainingOptions, run_training
from streaming_jobs.streams.assign import start_assign
from streaming_jobs.streams.plays import start_plays
from streaming_jobs.streams.shared.status import Counters, processed_offsets

CATALOGUE = 106_574
KINDS = (PlayKind.PLAY, PlayKind.PLAY, PlayKind.COMPLETE, PlayKind.SKIP, PlayKind.LIKE)


def install_assignments(models_path: Path, n_tracks: int, k: int, seed: int) -> np.ndarray:
    """A current model's ``assignments.npz`` for a catalogue of ``n_tracks`` (ids 1..n)."""
    rng = np.random.default_rng(seed)
    version = "bench-plays"
    (models_path / version).mkdir(parents=True, exist_ok=True)
    ids = np.arange(1, n_tracks + 1, dtype=np.int64)
    np.savez(models_path / version / "assignments.npz", ids=ids, clusters=rng.integers(0, k, n_tracks))
    (models_path / "current").write_text(version + "\n")
    return ids


def play_backlog(n: int, users: int, seed: int, span_s: float = 3600.0) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    tracks = np.minimum(rng.zipf(1.3, n), CATALOGUE).astype(np.int64)
    tracks = (tracks * 7919) % CATALOGUE + 1  # spread the popular ids over the catalogue
    who = rng.integers(0, users, n)
    start = datetime.now(UTC) - timedelta(seconds=span_s)
    offsets = np.sort(rng.uniform(0, span_s, n))
    out = []
    for i in range(n):
        event = PlayEvent(
            user_id=f"user{who[i]}",
            track_id=int(tracks[i]),
            kind=KINDS[i % len(KINDS)],
            ts=start + timedelta(seconds=float(offsets[i])),
        )
        out.append((encode_key(event.user_id), encode(event)))
    return out


def produce_all(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    async def run() -> float:
        p = aio_producer(settings)
        await p.start()
        try:
            started = time.perf_counter()
            pending = []
            for key, value in records:
                pending.append(await p.send(topic, key=key, value=value))
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            return time.perf_counter() - started
        finally:
            await p.stop()

    return asyncio.run(run())


def processed(query: Any) -> dict[int, int]:
    offsets = processed_offsets(query.lastProgress)
    return {p: o for parts in offsets.values() for p, o in parts.items()}


def bench_plays(spark: Any, settings: Settings, n: int, users: int) -> dict[str, Any]:
    install_assignments(settings.models_path, CATALOGUE, 16, seed=1)
    started = time.perf_counter()
    records = play_backlog(n, users, seed=2)
    generate_s = time.perf_counter() - started
    topic = settings.topic(PLAYS)
    produce_s = produce_all(settings, topic, records)
    ends = end_offsets(settings, [topic])[topic]
    assert sum(ends.values()) == n, ends
    counters = Counters()
    jvm = int(spark.sparkContext._gateway.proc.pid)
    cpu0 = tree_cpu_seconds(jvm) + cpu_seconds()
    started = time.perf_counter()
    job = start_plays(spark, settings, counters)
    queries = job.queries
    done_at: dict[str, float] = {}
    durations: dict[str, list[int]] = {q.name: [] for q in queries}
    seen: dict[str, set[int]] = {q.name: set() for q in queries}
    try:
        while len(done_at) < len(queries):
            for q in queries:
                if q.exception() is not None:
                    raise RuntimeError(f"{q.name} failed: {q.exception()}")
                for p in q.recentProgress:
                    if p["batchId"] not in seen[q.name] and p["numInputRows"]:
                        seen[q.name].add(p["batchId"])
                        durations[q.name].append(int(p["durationMs"]["triggerExecution"]))
                if q.name not in done_at and processed(q) == ends:
                    done_at[q.name] = time.perf_counter() - started
            time.sleep(0.2)
            if time.perf_counter() - started > 1800:
                raise RuntimeError("plays backlog not processed within 30 minutes")
    finally:
        for q in queries:
            q.stop()
        job.close()
    elapsed = max(done_at.values())
    spark_cpu_s = tree_cpu_seconds(jvm) + cpu_seconds() - cpu0
    db = database(settings)
    return {
        "plays": n,
        "users": users,
        "catalogue": CATALOGUE,
        "generate_s": generate_s,
        "produce_s": produce_s,
        "elapsed_s": elapsed,
        "plays_per_s": n / elapsed,
        "spark_cpu_s": spark_cpu_s,
        "spark_cpu_ms_per_play": spark_cpu_s * 1000 / n,
        "per_query_s": done_at,
        "per_query_plays_per_s": {k: n / v for k, v in done_at.items()},
        "batch_ms": {
            k: {"n": len(v), "median": float(np.median(v)) if v else None, "max": max(v) if v else None}
            for k, v in durations.items()
        },
        "stored": {
            "plays": db.plays.estimated_document_count(),
            "users": db.users.estimated_document_count(),
            "trending": db.trending.estimated_document_count(),
        },
        "counters": counters.snapshot(),
        "target_plays_per_s": 5000,
        "target_met": n / elapsed >= 5000,
    }


# --- live rate: CPU per play and play -> history / trending latency -----------------------------

PROBE_TRACK = CATALOGUE + 1
PROBE_CLUSTER = 16  # the catalogue's tracks are in clusters 0..15: the probe track is alone in its own


def install_live_assignments(models_path: Path) -> None:
    """A current model: the catalogue in 16 clusters, and the probe track alone in cluster 16."""
    rng = np.random.default_rng(1)
    version = "bench-live"
    (models_path / version).mkdir(parents=True, exist_ok=True)
    ids = np.arange(1, PROBE_TRACK + 1, dtype=np.int64)
    clusters = np.append(rng.integers(0, PROBE_CLUSTER, CATALOGUE), PROBE_CLUSTER)
    np.savez(models_path / version / "assignments.npz", ids=ids, clusters=clusters)
    (models_path / "current").write_text(version + "\n")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and every live descendant, plus what they reaped (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        todo.extend(children.get(pid, []))
    return total


def live_load(settings: Settings, rate: float, seconds: float, users: int, out: Any, producing: Any) -> None:
    """Child process: ``rate`` plays/s (event time = now) for ``seconds``, a probe play on the probe
    track every second; when each probe is in ``plays`` (history) and in the probe cluster's newest
    trending window (what the recommender and the gateway keep) or superseded by a newer one."""
    rng = np.random.default_rng(5)
    p = producer(settings, linger_ms=5)
    topic = settings.topic(PLAYS)
    probes: dict[str, tuple[float, float]] = {}  # event id -> (sent wall time, event time)
    history: dict[str, float] = {}
    trending: dict[str, float] = {}
    sent_series: list[tuple[float, int]] = []
    stop = threading.Event()
    lock = threading.Lock()

    def watch_history() -> None:
        db = database(settings)
        while not stop.is_set():
            with lock:
                pending = [e for e in probes if e not in history]
            if pending:
                for doc in db.plays.find({"_id": {"$in": pending}}, {"_id": 1}):
                    history.setdefault(doc["_id"], time.time())
            stop.wait(0.1)

    def watch_trending() -> None:
        c = consumer(settings, settings.topic(TRENDING), group_id=None, auto_offset_reset="latest")
        try:
            while not stop.is_set():
                for records in c.poll(timeout_ms=200).values():
                    now = time.time()
                    for r in records:
                        w = decode(Trending, r.value)
                        if w.cluster != PROBE_CLUSTER:
                            continue
                        start, end = w.window_start.timestamp(), w.window_end.timestamp()
                        with lock:
                            inside = sorted((ts, e) for e, (_, ts) in probes.items() if start <= ts < end)
                            counted = {e for _, e in inside[: w.plays]}
                            for e, (_, ts) in probes.items():
                                if e not in trending and (e in counted or ts < start):
                                    trending[e] = now
        finally:
            c.close()

    threads = [threading.Thread(target=f, daemon=True) for f in (watch_history, watch_trending)]
    for t in threads:
        t.start()
    time.sleep(3.0)  # the trending consumer has its partitions
    tracks = (np.minimum(rng.zipf(1.3, 1_000_000), CATALOGUE).astype(np.int64) * 7919) % CATALOGUE + 1
    tick, sent, probe_at = 0.05, 0, 0.0
    started = time.time()
    producing.set()
    while (now := time.time()) < started + seconds:
        due = int((now - started) * rate) - sent
        for _ in range(max(0, due)):
            event = PlayEvent(
                user_id=f"user{rng.integers(0, users)}",
                track_id=int(tracks[sent % tracks.size]),
                kind=KINDS[sent % len(KINDS)],
            )
            p.send(topic, key=encode_key(event.user_id), value=encode(event))
            sent += 1
        if now >= probe_at:
            probe = PlayEvent(user_id="probe", track_id=PROBE_TRACK, kind=PlayKind.PLAY)
            p.send(topic, key=encode_key(probe.user_id), value=encode(probe))
            p.flush()
            with lock:
                probes[str(probe.event_id)] = (time.time(), probe.ts.timestamp())
            probe_at = now + 1.0
        sent_series.append((time.time(), sent))
        time.sleep(max(0.0, tick - (time.time() - now)))
    p.flush()
    p.close()
    time.sleep(20.0)  # the last probes land
    stop.set()
    for t in threads:
        t.join(timeout=5)
    out.put(
        {
            "sent": sent_series,
            "probes": {e: [s, history.get(e), trending.get(e)] for e, (s, _) in probes.items()},
        }
    )


def stage_times(spark: Any) -> dict[str, dict[str, float]]:
    """Per scheduler pool (= query), over the whole run: stages, tasks, and the seconds its tasks
    held a task slot (run) and spent on a CPU (cpu), from Spark's REST API (run - cpu: waiting,
    e.g. for MongoDB or for a core)."""
    import urllib.request

    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/stages?status=complete"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            stages = json.load(response)
    except OSError:
        return {}
    out: dict[str, dict[str, float]] = {}
    for stage in stages:
        pool = out.setdefault(stage["schedulingPool"], {"stages": 0, "tasks": 0, "run_s": 0.0, "cpu_s": 0.0})
        pool["stages"] += 1
        pool["tasks"] += int(stage["numCompleteTasks"])
        pool["run_s"] += stage["executorRunTime"] / 1000
        pool["cpu_s"] += stage["executorCpuTime"] / 1e9
    return out


def trigger_s(query: Any) -> float | None:
    """The processing-time trigger a started query runs with (from the JVM), in seconds."""
    found = re.search(r"(\d+)", str(query._jsq.streamingQuery().trigger()))
    return int(found.group(1)) / 1000 if found else None


def sent_between(series: list[tuple[float, int]], t0: float, t1: float) -> int:
    def at(t: float) -> int:
        before = [n for when, n in series if when <= t]
        return before[-1] if before else 0

    return at(t1) - at(t0)


def bench_live(
    spark: Any, settings: Settings, rate: float, warmup_s: float, measure_s: float, users: int
) -> dict[str, Any]:
    install_live_assignments(settings.models_path)
    counters = Counters()
    job = start_plays(spark, settings, counters)
    queries = job.queries
    jvm = int(spark.sparkContext._gateway.proc.pid)
    progress: dict[str, dict[int, dict[str, Any]]] = {q.name: {} for q in queries}
    ctx = multiprocessing.get_context("spawn")
    out, producing = ctx.Queue(), ctx.Event()
    load = ctx.Process(
        target=live_load, args=(settings, rate, warmup_s + measure_s + 5.0, users, out, producing)
    )
    try:
        time.sleep(5.0)  # the queries' first (empty) batches
        load.start()
        if not producing.wait(120):
            raise RuntimeError("the load process did not start")
        time.sleep(warmup_s)
        cpu0 = (time.time(), tree_cpu_seconds(jvm) + cpu_seconds())
        deadline = cpu0[0] + measure_s
        while time.time() < deadline:  # one cheap look per second: the measure is this process's CPU too
            for q in queries:
                if q.exception() is not None:
                    raise RuntimeError(f"{q.name} failed: {q.exception()}")
            time.sleep(1.0)
        cpu1 = (time.time(), tree_cpu_seconds(jvm) + cpu_seconds())
        for q in queries:  # the last 100 batches of each query: the measured ones and the warm-up's end
            for p in q.recentProgress:
                progress[q.name].setdefault(int(p["batchId"]), p)
        result = out.get(timeout=120)
        load.join(timeout=30)
    finally:
        if load.is_alive():
            load.terminate()
        for q in queries:
            q.stop()
        job.close()
    t0, t1 = cpu0[0], cpu1[0]
    plays = sent_between(result["sent"], t0, t1)
    stages = stage_times(spark)
    per_query = {}
    for name, batches in progress.items():
        inside = [  # batches that ran (an idle trigger reports progress too, without addBatch)
            p
            for p in batches.values()
            if t0 <= datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00")).timestamp() < t1
            and "addBatch" in p["durationMs"]
        ]
        durations = [int(p["durationMs"]["triggerExecution"]) for p in inside]
        rows = sum(int(p["numInputRows"]) for p in inside)
        per_query[name] = {
            "batches": len(inside),
            "empty_batches": sum(1 for p in inside if not p["numInputRows"]),
            "rows": rows,
            "batch_ms_total": sum(durations),
            "batch_ms_median": float(np.median(durations)) if durations else None,
            "batch_ms_max": max(durations) if durations else None,
            "batch_ms_per_row": sum(durations) / rows if rows else None,
            "duration_ms_sum": {
                part: sum(int(p["durationMs"].get(part) or 0) for p in inside)
                for part in sorted({k for p in inside for k in p["durationMs"]})
            },
            "shuffle_partitions": sorted(
                {
                    int(s.get("numShufflePartitions") or 0)
                    for p in inside
                    for s in p.get("stateOperators") or []
                }
            ),
        }
    history = [h - s for s, h, _ in result["probes"].values() if t0 <= s < t1 and h is not None]
    trending = [t - s for s, _, t in result["probes"].values() if t0 <= s < t1 and t is not None]
    probes_sent = sum(1 for s, _, _ in result["probes"].values() if t0 <= s < t1)
    return {
        "rate": rate,
        "measure_s": t1 - t0,
        "plays": plays,
        "plays_per_s": plays / (t1 - t0),
        "spark_cpu_s": cpu1[1] - cpu0[1],
        "spark_cpu_ms_per_play": (cpu1[1] - cpu0[1]) * 1000 / plays if plays else None,
        "spark_cores": (cpu1[1] - cpu0[1]) / (t1 - t0),
        "triggers_s": {q.name: trigger_s(q) for q in queries},
        "shuffle_partitions": settings.spark_shuffle_partitions,
        "queries": per_query,
        "probes": probes_sent,
        "history_latency_s": {**percentiles(history), "n": len(history)},
        "trending_latency_s": {**percentiles(trending), "n": len(trending)},
        "counters": counters.snapshot(),
        "stages_by_pool": stages,
        "timeline": {  # seconds from the start of the measure
            "batches": sorted(
                (
                    round(datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00")).timestamp() - t0, 1),
                    name,
                    int(p["numInputRows"]),
                    int(p["durationMs"]["triggerExecution"]),
                )
                for name, batches in progress.items()
                for p in batches.values()
                if "addBatch" in p["durationMs"]
            ),
            "probes": sorted(  # sent, -> history, -> trending
                [
                    round(s - t0, 1),
                    None if h is None else round(h - s, 1),
                    None if t is None else round(t - s, 1),
                ]
                for s, h, t in result["probes"].values()
            ),
        },
    }


# --- paced backlog: CPU per play at a live rate's batch sizes, whatever else runs -------------------


def plays_triggers(settings: Settings) -> dict[str, float]:
    """Trigger of each plays query under ``settings`` (before issue 23 every one but profiles
    ran on ``stream_trigger_s``)."""
    every = settings.stream_trigger_s
    return {
        "plays-history": getattr(settings, "history_trigger_s", every),
        "plays-sessions": getattr(settings, "sessions_trigger_s", every),
        "plays-profiles": settings.profile_trigger_s,
        "plays-trending": getattr(settings, "trending_trigger_s", every),
    }


def bench_paced(spark: Any, settings: Settings, rate: float, n: int, users: int) -> dict[str, Any]:
    """``n`` plays (event times over the ``n / rate`` s before now) processed in the batches the
    queries would make at ``rate`` plays/s: each reads at most ``rate`` x its trigger records a
    batch (history and trending share one cap, the smaller). Spark CPU (driver JVM and Python
    workers, this process) / plays: on a busy machine a live run's queries fall behind and
    their batches grow, this does not. Run twice (cold JVM, then warm); the warm run counts."""
    install_assignments(settings.models_path, CATALOGUE, 16, seed=1)
    triggers = plays_triggers(settings)
    caps = {
        "stream_max_offsets_per_trigger": int(
            rate * min(triggers["plays-history"], triggers["plays-trending"])
        ),
        "stream_sessions_max_offsets_per_trigger": int(rate * triggers["plays-sessions"]),
        "profile_max_offsets_per_trigger": int(rate * triggers["plays-profiles"]),
    }
    jvm = int(spark.sparkContext._gateway.proc.pid)
    runs = []
    for run in ("cold", "warm"):
        run_settings = settings.model_copy(
            update={
                **caps,
                "data_dir": settings.data_dir / run,
                "topic_prefix": f"{settings.topic_prefix}{run}.",
                "mongodb_db": f"{settings.mongodb_db}_{run}",
            }
        )
        init_db(database(run_settings))
        ensure_topics(run_settings)
        records = play_backlog(n, users, seed=2, span_s=n / rate)
        produce_all(run_settings, run_settings.topic(PLAYS), records)
        cpu0, t0 = tree_cpu_seconds(jvm) + cpu_seconds(), time.perf_counter()
        job = start_plays(spark, run_settings, Counters(), once=True)
        try:
            for q in job.queries:
                q.awaitTermination()
                if q.exception() is not None:
                    raise RuntimeError(f"{q.name} failed: {q.exception()}")
        finally:
            job.close()
        cpu, elapsed = tree_cpu_seconds(jvm) + cpu_seconds() - cpu0, time.perf_counter() - t0
        queries = {}
        for q in job.queries:
            ran = [p for p in q.recentProgress if "addBatch" in p["durationMs"]]
            durations = [int(p["durationMs"]["triggerExecution"]) for p in ran]
            queries[q.name] = {
                "batches": len(ran),
                "rows": sum(int(p["numInputRows"]) for p in ran),
                "batch_ms_median": float(np.median(durations)) if durations else None,
                "batch_ms_total": sum(durations),
            }
        runs.append(
            {
                "run": run,
                "elapsed_s": elapsed,
                "spark_cpu_s": cpu,
                "spark_cpu_ms_per_play": cpu * 1000 / n,
                "queries": queries,
            }
        )
    return {
        "rate": rate,
        "plays": n,
        "triggers_s": triggers,
        "caps": caps,
        "shuffle_partitions": settings.spark_shuffle_partitions,
        "spark_cpu_ms_per_play": runs[-1]["spark_cpu_ms_per_play"],
        "runs": runs,
    }


def synthetic_tracks(n: int, genres: int, seed: int, first_id: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (genres, 518))
    labels = rng.integers(0, genres, n)
    x = centres[labels] + rng.standard_normal((n, 518))
    return [
        {
            "_id": first_id + i,
            "title": f"t{first_id + i}",
            "features": pack(x[i]),
            "genre_top": f"g{labels[i]}",
        }
        for i in range(n)
    ]


def bench_assign(spark: Any, settings: Settings, duration_s: float, interval_s: float) -> dict[str, Any]:
    db = database(settings)
    init_db(db)
    db.tracks.insert_many(synthetic_tracks(2000, 8, seed=3, first_id=1))
    run_training(spark, db, settings, TrainingOptions(ks=(8,), projection_sample=100, promote=True))
    fresh = synthetic_tracks(int(duration_s / interval_s) + 1, 8, seed=3, first_id=500_000)
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}
    stop = threading.Event()

    def listen() -> None:
        c = consumer(settings, settings.topic(TRACKS_ASSIGNED), group_id=f"bench-{uuid.uuid4().hex[:6]}")
        try:
            while not stop.is_set():
                for records in c.poll(timeout_ms=200).values():
                    now = time.time()
                    for r in records:
                        arrived.setdefault(int(r.key.decode()), now)
        finally:
            c.close()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    query = start_assign(spark, settings, Counters())
    p = producer(settings)
    try:
        time.sleep(5.0)  # let the query and the listener settle
        topic = settings.topic(TRACKS_NEW)
        started = time.monotonic()
        for doc in fresh:
            if time.monotonic() - started > duration_s:
                break
            event = TrackEvent(
                track_id=doc["_id"], title=doc["title"], features=unpack(doc["features"]).tolist()
            )
            p.send(topic, key=encode_key(event.track_id), value=encode(event))
            p.flush()
            sent[event.track_id] = time.time()
            time.sleep(interval_s)
        deadline = time.monotonic() + 60
        while len(set(sent) & set(arrived)) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        listener.join(timeout=5)
        p.close()
        query.stop()
    latencies = np.asarray([arrived[t] - sent[t] for t in sent if t in arrived])
    return {
        "tracks": len(sent),
        "assigned": int(latencies.size),
        "trigger_s": settings.stream_trigger_s,
        "p50_s": float(np.percentile(latencies, 50)),
        "p99_s": float(np.percentile(latencies, 99)),
        "max_s": float(latencies.max()),
        "target_p99_s": 5.0,
        "target_met": bool(np.percentile(latencies, 99) < 5.0 and latencies.size == len(sent)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--assign-duration", type=float, default=60.0)
    parser.add_argument("--assign-interval", type=float, default=0.2)
    parser.add_argument("--live-rate", type=float, default=200.0, help="plays/s of the live part")
    parser.add_argument("--live-warmup", type=float, default=20.0, help="seconds of load before measuring")
    parser.add_argument("--live-s", type=float, default=60.0, help="seconds measured at the live rate")
    parser.add_argument("--paced-plays", type=int, default=12_000, help="plays of the paced part")
    parser.add_argument(
        "--only",
        choices=("plays", "live", "paced", "assign"),
        help="run one part (and keep the others' last figures)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "streaming.json")
    args = parser.parse_args()
    with temporary_stack(data="stack", spark_master="local[2]") as (stack, tmp):
        base = stack.settings
        spark = None
        try:
            results: dict[str, Any] = {"spark_master": "local[2]", "cpus": os.cpu_count()}
            if args.only and args.out.exists():
                results = {**json.loads(args.out.read_text()), **results}
            spark = spark_session(base, "cadenza-bench-streaming", kafka=True)
            plays_settings = base.model_copy(
                update={"data_dir": tmp / "plays", "topic_prefix": "bp.", "mongodb_db": "bench_plays"}
            )
            if args.only in (None, "plays"):
                ensure_topics(plays_settings)
                init_db(database(plays_settings))
                results["plays"] = bench_plays(spark, plays_settings, args.plays, args.users)
            live_settings = base.model_copy(
                update={"data_dir": tmp / "live", "topic_prefix": "bl.", "mongodb_db": "bench_live"}
            )
            if args.only in (None, "live"):
                ensure_topics(live_settings)
                init_db(database(live_settings))
                results["live"] = bench_live(
                    spark, live_settings, args.live_rate, args.live_warmup, args.live_s, args.users
                )
            paced_settings = base.model_copy(
                update={"data_dir": tmp / "paced", "topic_prefix": "bq.", "mongodb_db": "bench_paced"}
            )
            if args.only == "paced":  # not by default: the live part measures the same, on a quiet machine
                results["paced"] = bench_paced(
                    spark, paced_settings, args.live_rate, args.paced_plays, args.users
                )
            assign_settings = base.model_copy(
                update={
                    "data_dir": tmp / "assign",
                    "topic_prefix": "ba.",
                    "mongodb_db": "bench_assign",
                    "stream_trigger_s": 1.0,
                }
            )
            if args.only in (None, "assign"):
                ensure_topics(assign_settings)
                results["assign"] = bench_assign(
                    spark, assign_settings, args.assign_duration, args.assign_interval
                )
        finally:
            if spark is not None:
                spark.stop()
    write_json(args.out, results)
    print_table(results)


def print_table(r: dict[str, Any]) -> None:
    table = Table(title="Structured Streaming on local[2]")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    if p := r.get("plays"):
        table.add_row(
            f"plays query: {p['plays']:,} plays backlog", f"{p['plays_per_s']:,.0f} plays/s", ">= 5,000"
        )
        if "spark_cpu_ms_per_play" in p:
            table.add_row("  Spark CPU per play", f"{p['spark_cpu_ms_per_play']:.2f} ms", "")
        for name, rate in p["per_query_plays_per_s"].items():
            b = p["batch_ms"][name]
            table.add_row(f"  {name}", f"{rate:,.0f} plays/s, {b['n']} batches, median {b['median']} ms", "")
    if live := r.get("live"):
        table.add_row(
            f"live: {live['plays_per_s']:,.0f} plays/s for {live['measure_s']:.0f} s",
            f"{live['spark_cpu_ms_per_play']:.2f} ms Spark CPU/play ({live['spark_cores']:.2f} cores)",
            "",
        )
        for name, q in live["queries"].items():
            table.add_row(
                f"  {name} (trigger {live['triggers_s'].get(name)} s)",
                f"{q['batches']} batches ({q['empty_batches']} empty), median {q['batch_ms_median']} ms, "
                f"{q['batch_ms_per_row'] or 0:.2f} ms/row",
                "",
            )
        for what, bound in (("history", "< 10 s"), ("trending", "< 15 s")):
            lat = live[f"{what}_latency_s"]
            table.add_row(
                f"  play -> {what} p50 / max ({lat['n']} of {live['probes']} probes)",
                f"{lat['p50'] or 0:.1f} / {lat['max'] or 0:.1f} s",
                bound,
            )
    if paced := r.get("paced"):
        table.add_row(
            f"paced: {paced['plays']:,} plays in batches of {paced['rate']:,.0f} plays/s",
            f"{paced['spark_cpu_ms_per_play']:.2f} ms Spark CPU/play (warm)",
            "",
        )
        for name, q in paced["runs"][-1]["queries"].items():
            table.add_row(
                f"  {name} (trigger {paced['triggers_s'][name]:g} s)",
                f"{q['batches']} batches, median {q['batch_ms_median']} ms",
                "",
            )
    if a := r.get("assign"):
        table.add_row("new track -> TrackAssigned p50", f"{a['p50_s']:.2f} s", "")
        table.add_row("new track -> TrackAssigned p99", f"{a['p99_s']:.2f} s", "< 5 s")
        table.add_row("tracks assigned / published", f"{a['assigned']} / {a['tracks']}", "all")
    Console().print(table)


if __name__ == "__main__":
    main()
