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
   catalogue (``bench.recommender.synthetic_worker`` swaps in the loader); ``--rate`` plays/s
   for ``--duration`` s after ``--warmup`` unmeasured s; latency = arrival of the
   Recommendation on the topic - publish time; then a backlog of ``--backlog`` plays for
   the sustained rate.

Bounded, loopback only; starts its own stack. Prints a table and writes
``bench/results/recommender.json``.
Run: ``.venv/bin/python -m bench.recommender``
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS_DIR, bounded, temporary_stack, write_json
from bench.recommender.data import CATALOGUE, CLUSTERS, DIMS, big_catalogue, plays
from bench.recommender.faust_floor import MODES
from bench.recommender.report import print_table
from bench.recommender.worker import bench_floor, bench_worker
from infra.kafka_clients import ensure_topics
from infra.mongo import database, init_db
from infra.settings import Settings
from recommender_stream.listener import Limits
from recommender_stream.processor import Processor, Record


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


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.recommender", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--plays", type=bounded(int, 1, 10**7), default=20_000)
    parser.add_argument("--users", type=bounded(int, 1, 10**7), default=2_000)
    parser.add_argument("--naive-plays", type=bounded(int, 1, 10**5), default=50)
    parser.add_argument("--rate", type=bounded(float, 1, 20_000), default=1000.0)
    parser.add_argument("--duration", type=bounded(float, 1, 600), default=20.0)
    parser.add_argument(
        "--warmup", type=bounded(float, 0, 600), default=10.0, help="unmeasured seconds at --rate first"
    )
    parser.add_argument("--backlog", type=bounded(int, 1, 10**6), default=20_000)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "recommender.json")
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
    with temporary_stack(spark_master="local[2]", topic_prefix="br.", mongodb_db="bench_reco") as (stack, _):
        settings = stack.settings
        ensure_topics(settings)
        results: dict[str, Any] = {"cpus": os.cpu_count()}
        if not args.skip_in_process:
            results["in_process"] = bench_in_process(args.plays, args.users, args.naive_plays, settings)
        results["worker"] = bench_worker(
            settings, args.rate, args.duration, args.backlog, args.profile, args.warmup
        )
        if args.floor:
            results["faust_floor"] = bench_floor(settings, args.floor)
    write_json(args.out, results)
    print_table(results)


if __name__ == "__main__":
    main()
