"""Benchmark of the local stack: produce rate (kafka-python vs aiokafka), bulk upserts of
track documents (518 features packed as float32), and `cadenza stack up` time with warm caches.

Bounded workload on loopback; starts its own stack on free ports in a temporary data
dir. Prints a table and writes ``bench/results/stack.json``.
Run: ``.venv/bin/python -m bench.stack [--messages 100000] [--docs 10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import numpy as np
from pymongo import InsertOne, ReplaceOne
from rich.console import Console
from rich.table import Table

from bench.common import RESULTS_DIR, temporary_stack, write_json
from infra.kafka_clients import admin, aio_producer, producer
from infra.mongo import client
from infra.settings import Settings
from schemas.documents import TrackDoc


def _payload(size: int = 1024) -> bytes:
    return (b'{"pad":"' + b"x" * (size - 10) + b'"}')[:size]


def produce_kafka_python(settings: Settings, topic: str, n: int) -> float:
    p = producer(settings)
    value = _payload()
    started = time.perf_counter()
    for i in range(n):
        p.send(topic, key=str(i % 1000).encode(), value=value)
    p.flush(120)
    elapsed = time.perf_counter() - started
    p.close()
    return n / elapsed


def produce_aiokafka(settings: Settings, topic: str, n: int) -> float:
    async def run() -> float:
        p = aio_producer(settings)
        await p.start()
        value = _payload()
        try:
            started = time.perf_counter()
            batch = []
            for i in range(n):
                batch.append(await p.send(topic, key=str(i % 1000).encode(), value=value))
                if len(batch) >= 5000:
                    await asyncio.gather(*batch)
                    batch.clear()
            await asyncio.gather(*batch)
            return n / (time.perf_counter() - started)
        finally:
            await p.stop()

    return asyncio.run(run())


def _track_docs(first: int, n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, 518)).astype(np.float32)
    return [
        TrackDoc(
            id=first + i, title=f"track {first + i}", artist="bench", features=feats[i].tolist()
        ).to_mongo()
        for i in range(n)
    ]


def bulk_upserts(settings: Settings, n: int, batch: int = 500) -> dict[str, float]:
    mongo = client(settings)
    db = mongo["bench_stack"]
    db.drop_collection("tracks")
    out: dict[str, float] = {}
    for label, op in (
        ("insert_new", InsertOne),
        ("replace_upsert_existing", lambda d: ReplaceOne({"_id": d["_id"]}, d, upsert=True)),
    ):
        docs = _track_docs(1, n, seed=len(out))
        started = time.perf_counter()
        for i in range(0, n, batch):
            db.tracks.bulk_write([op(d) for d in docs[i : i + batch]], ordered=False)
        out[label] = n / (time.perf_counter() - started)
    assert db.tracks.count_documents({}) == n
    mongo.drop_database("bench_stack")
    mongo.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stack", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--docs", type=int, default=10_000)
    args = parser.parse_args()
    with temporary_stack(up=False, topic_prefix="bench.") as (stack, _):
        settings = stack.settings
        stack.prepare()  # caches warm, as the target says
        started = time.perf_counter()
        stack.up()
        up_s = time.perf_counter() - started
        from kafka.admin import NewTopic

        a = admin(settings)
        a.create_topics([NewTopic("bench.produce", num_partitions=6, replication_factor=1)])
        a.close()
        time.sleep(1)
        kp = produce_kafka_python(settings, "bench.produce", args.messages)
        ak = produce_aiokafka(settings, "bench.produce", args.messages)
        upserts = bulk_upserts(settings, args.docs)
        stack.down()
        started = time.perf_counter()
        stack.up()
        restart_s = time.perf_counter() - started
    rows = [
        ("produce 1 KiB, kafka-python (acks=all, idempotent)", f"{kp:,.0f} msg/s", ">= 20,000 msg/s"),
        ("produce 1 KiB, aiokafka (acks=all, idempotent)", f"{ak:,.0f} msg/s", ">= 20,000 msg/s"),
        (
            "bulk insert tracks (518 packed float32)",
            f"{upserts['insert_new']:,.0f} docs/s",
            ">= 2,000 docs/s",
        ),
        (
            "bulk upsert (replace) existing",
            f"{upserts['replace_upsert_existing']:,.0f} docs/s",
            ">= 2,000 docs/s",
        ),
        ("stack up, new data dir, warm cache", f"{up_s:.1f} s", "< 20 s"),
        ("stack up again after down", f"{restart_s:.1f} s", "< 20 s"),
    ]
    table = Table(title=f"bench.stack ({args.messages:,} messages, {args.docs:,} docs)")
    for col in ("measure", "result", "target"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    write_json(
        RESULTS_DIR / "stack.json",
        {
            "messages": args.messages,
            "docs": args.docs,
            "produce_msgs_per_s": {"kafka_python": kp, "aiokafka": ak},
            "mongo_docs_per_s": upserts,
            "stack_up_s": up_s,
            "stack_restart_s": restart_s,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


if __name__ == "__main__":
    main()
