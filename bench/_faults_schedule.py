"""Bench only: what ``bench/faults.py`` does to the cluster, and when.

:func:`faults` is the fault schedule run while the load (``bench/_faults_load.py``) goes on:
a broker, a recommender worker, a Spark worker and a gateway killed in turn on the cluster
(``bench/_faults_cluster.py``), each held down, restarted and followed by calm. Each fault
appends a mark (kind, kill and restart times, what was measured: catch-up, takeover, rejoin,
moved partitions) to ``marks``, which goes to ``bench/_faults_analysis.py`` and the plot.
:func:`backlog_rate` times one or two recommender workers draining a backlog of plays
published straight to Kafka (the group's lag from :func:`infra.offsets.lag_rows`); its
result goes to the JSON's ``throughput``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from _faults_cluster import Cluster, plays_topic_leader, wait_replicated
from _faults_load import Load
from _faults_report import console

from infra import supervise
from infra.kafka_clients import producer
from infra.offsets import lag_rows
from schemas.codec import encode
from schemas.events import PlayEvent, PlayKind
from schemas.topics import PLAYS


async def faults(cluster: Cluster, load: Load, args: argparse.Namespace, marks: list[dict[str, Any]]) -> None:
    """The fault schedule, while the load runs."""

    def mark(kind: str, **extra: Any) -> dict[str, Any]:
        entry = {"fault": kind, "at": time.time(), **extra}
        marks.append(entry)
        console.print(f"[bold yellow]{kind}[/] {extra}", highlight=False)
        return entry

    loop = asyncio.get_running_loop()
    await asyncio.sleep(args.warm_s)

    # 1. the leader of plays partition 0
    broker = await loop.run_in_executor(None, plays_topic_leader, cluster)
    entry = mark("broker", component=broker.name)
    await loop.run_in_executor(None, broker.kill)
    await asyncio.sleep(args.fault_s)
    await loop.run_in_executor(None, cluster.stack.start, broker)
    entry["restarted"] = time.time()
    entry["caught_up_s"] = await loop.run_in_executor(None, wait_replicated, cluster)
    await asyncio.sleep(args.recover_s)

    # 2. a recommender worker, once both are in a settled group again (the broker's loss may
    # have moved the group's coordinator, and a worker whose session ran out rejoins)
    topic = cluster.settings.topic(PLAYS)
    settled_s = await loop.run_in_executor(None, cluster.wait_group, 2)
    before = await loop.run_in_executor(None, cluster.group)
    entry = mark("recommender", program="recommender-1", group_settled_first_s=round(settled_s, 1))
    entry["at"] = await loop.run_in_executor(None, cluster.crash_program, "recommender-1")
    entry["takeover_s"] = await loop.run_in_executor(None, cluster.wait_group, 1)
    after = await loop.run_in_executor(None, cluster.group)
    gone = {m.member_id for m in before.members} - {m.member_id for m in after.members}
    entry["moved_partitions"] = sorted(
        p for m in before.members if m.member_id in gone for p in m.holds(topic)
    )
    await asyncio.sleep(args.fault_s)
    await loop.run_in_executor(None, cluster.start_program, "recommender-1")
    entry["restarted"] = time.time()
    entry["rejoin_s"] = await loop.run_in_executor(None, cluster.wait_group, 2)
    await asyncio.sleep(args.recover_s)

    # 3. a Spark worker (its executors die with it)
    worker = cluster.stack.component("spark-worker-1")
    entry = mark("spark-worker", component="spark-worker-1")
    await loop.run_in_executor(None, worker.kill)
    await asyncio.sleep(args.fault_s)
    await loop.run_in_executor(None, cluster.stack.start, worker)
    entry["restarted"] = time.time()
    await asyncio.sleep(args.recover_s)

    # 4. a gateway
    entry = mark("gateway", program="gateway-1")
    entry["at"] = await loop.run_in_executor(None, cluster.crash_program, "gateway-1")
    await asyncio.sleep(args.fault_s)
    await loop.run_in_executor(None, cluster.start_program, "gateway-1")
    entry["restarted"] = time.time()
    await asyncio.sleep(args.recover_s)


def backlog_rate(cluster: Cluster, programs: list[str], backlog: int, tracks: list[int]) -> dict[str, Any]:
    """Plays/s the recommender group drains ``backlog`` plays with ``programs`` running: the
    workers are started and the group settled first, so no rebalance falls in the timing."""
    settings = cluster.settings
    for name in ("recommender-1", "recommender-2"):
        supervise.ctl(settings, "stop", name)
    for name in programs:
        cluster.start_program(name)
    cluster.wait_group(len(programs))
    time.sleep(3)  # the workers' recovery after the last rebalance
    topic = settings.topic(PLAYS)
    p = producer(settings)
    users = [f"backlog-{i}" for i in range(500)]
    started = time.monotonic()
    for i in range(backlog):
        user = users[i % len(users)]
        event = PlayEvent(user_id=user, track_id=random.choice(tracks), kind=PlayKind.PLAY)
        p.send(topic, key=user.encode(), value=encode(event))
    p.flush()
    p.close()
    published = time.monotonic() - started
    while time.monotonic() - started < 600:
        lag = sum(r.lag for r in lag_rows(settings, [settings.recommender_group]) if r.topic == topic)
        if lag == 0:
            elapsed = time.monotonic() - started
            return {
                "workers": len(programs),
                "backlog": backlog,
                "published_in_s": round(published, 2),
                "seconds": round(elapsed, 2),
                "plays_per_s": round(backlog / elapsed, 1),
            }
        time.sleep(0.25)
    raise RuntimeError(f"the backlog was not drained by {len(programs)} worker(s) in 600 s")
