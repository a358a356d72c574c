"""Benchmark of the Structured Streaming jobs on Spark local[2] (issue 6 targets).

1. **plays**: a backlog of ``--plays`` PlayEvents (Zipf-popular tracks out of a
   106,574-track catalogue, ``--users`` listeners, event times spread over the last
   hour) is put on ``cadenza.plays`` first; then the three plays queries
   (history, listeners, trending) start and the clock runs until every query has
   processed every offset. Sustained plays/s = plays / that time; batch durations come
   from each query's progress. Target: >= 5,000 plays/s.
2. **assign latency**: a model trained on a synthetic catalogue is current; the
   assignment query runs with a 1-second trigger while one new track is published
   every ``--assign-interval`` seconds for ``--assign-duration`` seconds; latency =
   arrival of its ``TrackAssigned`` on the topic - publish time. Target: p99 < 5 s.

Bounded workload on loopback; starts its own stack on free ports in a temporary data
dir. Prints a table and writes ``bench/results/streaming.json``.
Run: ``.venv/bin/python -m bench.streaming [--plays 300000] [--assign-duration 60]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.common import RESULTS_DIR, temporary_stack, write_json
from infra.kafka_clients import aio_producer, consumer, end_offsets, ensure_topics, producer
from infra.mongo import database, init_db
from infra.settings import Settings
from infra.spark import spark_session
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind, TrackEvent
from schemas.topics import PLAYS, TRACKS_ASSIGNED, TRACKS_NEW
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


def play_backlog(n: int, users: int, seed: int) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    tracks = np.minimum(rng.zipf(1.3, n), CATALOGUE).astype(np.int64)
    tracks = (tracks * 7919) % CATALOGUE + 1  # spread the popular ids over the catalogue
    who = rng.integers(0, users, n)
    start = datetime.now(UTC) - timedelta(hours=1)
    offsets = np.sort(rng.uniform(0, 3600, n))
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
    db = database(settings)
    return {
        "plays": n,
        "users": users,
        "catalogue": CATALOGUE,
        "generate_s": generate_s,
        "produce_s": produce_s,
        "elapsed_s": elapsed,
        "plays_per_s": n / elapsed,
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
    parser.add_argument(
        "--only", choices=("plays", "assign"), help="run one part (and keep the other's last figures)"
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
    p, a = r["plays"], r["assign"]
    table.add_row(
        f"plays query: {p['plays']:,} plays backlog", f"{p['plays_per_s']:,.0f} plays/s", ">= 5,000"
    )
    for name, rate in p["per_query_plays_per_s"].items():
        b = p["batch_ms"][name]
        table.add_row(f"  {name}", f"{rate:,.0f} plays/s, {b['n']} batches, median {b['median']} ms", "")
    table.add_row("new track -> TrackAssigned p50", f"{a['p50_s']:.2f} s", "")
    table.add_row("new track -> TrackAssigned p99", f"{a['p99_s']:.2f} s", "< 5 s")
    table.add_row("tracks assigned / published", f"{a['assigned']} / {a['tracks']}", "all")
    Console().print(table)


if __name__ == "__main__":
    main()
