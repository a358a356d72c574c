"""Bench only: what ``bench.faults`` does to the cluster, and when.

:func:`faults` is the fault schedule run while the load (``bench.faults.load``) goes on:
a broker, a recommender worker, a Spark worker and a gateway killed in turn on the cluster
(``bench.faults.cluster``), each held down, restarted and followed by calm. Each fault
appends a mark (kind, kill and restart times, what was measured: catch-up, takeover, rejoin,
moved partitions) to ``marks``, which goes to ``bench.faults.analysis`` and the plot.
:func:`backlog_rate` times one or two recommender workers draining a backlog of plays
published straight to Kafka (the group's lag from :func:`infra.offsets.lag_rows`); its
result goes to the JSON's ``throughput``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.faults.cluster import Cluster, plays_topic_leader, wait_replicated
from bench.faults.load import Load
from bench.faults.report import console
from infra import supervise
from infra.kafka_clients import producer
from infra.offsets import lag_rows
from schemas.codec import encode
from schemas.events import PlayEvent, PlayKind
from schemas.topics import PLAYS

_T = TypeVar("_T")

FAULTS = ("broker", "recommender", "spark-worker", "gateway")


async def faults(cluster: Cluster, load: Load, args: argparse.Namespace, marks: list[dict[str, Any]]) -> None:
    """The fault schedule, while the load runs: each of ``args.faults`` in turn, the whole
    round ``args.repeat`` times (``--faults recommender --repeat 3``: a worst of three)."""

    ctx = _Fault(cluster, asyncio.get_running_loop(), args, marks)
    await asyncio.sleep(args.warm_s)
    for ctx.round in range(1, args.repeat + 1):
        for kind in args.faults:
            await _ONE[kind](ctx)


@dataclass
class _Fault:
    """What each fault below works with; :meth:`mark` records one."""

    cluster: Cluster
    loop: asyncio.AbstractEventLoop
    args: argparse.Namespace
    marks: list[dict[str, Any]]
    round: int = 1

    def mark(self, kind: str, **extra: Any) -> dict[str, Any]:
        entry = {"fault": kind, "at": time.time(), "round": self.round, **extra}
        self.marks.append(entry)
        console.print(f"[bold yellow]{kind}[/] round {self.round} {extra}", highlight=False)
        return entry

    async def run(self, fn: Callable[..., _T], *a: Any) -> _T:
        return await self.loop.run_in_executor(None, fn, *a)


async def _broker(ctx: _Fault) -> None:
    """The leader of plays partition 0."""
    broker = await ctx.run(plays_topic_leader, ctx.cluster)
    entry = ctx.mark("broker", component=broker.name)
    await ctx.run(broker.kill)
    await asyncio.sleep(ctx.args.fault_s)
    await ctx.run(ctx.cluster.stack.start, broker)
    entry["restarted"] = time.time()
    entry["caught_up_s"] = await ctx.run(wait_replicated, ctx.cluster)
    await asyncio.sleep(ctx.args.recover_s)


async def _recommender(ctx: _Fault) -> None:
    """A recommender worker, once both are in a settled group again (a broker's loss may have
    moved the group's coordinator, and a worker whose session ran out rejoins)."""
    topic = ctx.cluster.settings.topic(PLAYS)
    settled_s = await ctx.run(ctx.cluster.wait_group, 2)
    before = await ctx.run(ctx.cluster.group)
    entry = ctx.mark("recommender", program="recommender-1", group_settled_first_s=round(settled_s, 1))
    entry["at"] = await ctx.run(ctx.cluster.crash_program, "recommender-1")
    await ctx.run(ctx.cluster.wait_group, 1)
    # From the kill, not from crash_program's return (it also waits for supervisord to stop
    # the program, which took about 3 s and made takeovers look shorter than they were).
    entry["takeover_s"] = time.time() - entry["at"]
    after = await ctx.run(ctx.cluster.group)
    gone = {m.member_id for m in before.members} - {m.member_id for m in after.members}
    entry["moved_partitions"] = sorted(
        p for m in before.members if m.member_id in gone for p in m.holds(topic)
    )
    await asyncio.sleep(ctx.args.fault_s)
    await ctx.run(ctx.cluster.start_program, "recommender-1")
    entry["restarted"] = time.time()
    entry["rejoin_s"] = await ctx.run(ctx.cluster.wait_group, 2)
    await asyncio.sleep(ctx.args.recover_s)


async def _spark_worker(ctx: _Fault) -> None:
    """A Spark worker (its executors die with it)."""
    worker = ctx.cluster.stack.component("spark-worker-1")
    entry = ctx.mark("spark-worker", component="spark-worker-1")
    await ctx.run(worker.kill)
    await asyncio.sleep(ctx.args.fault_s)
    await ctx.run(ctx.cluster.stack.start, worker)
    entry["restarted"] = time.time()
    await asyncio.sleep(ctx.args.recover_s)


async def _gateway(ctx: _Fault) -> None:
    """A gateway: its listeners reconnect to the other one."""
    entry = ctx.mark("gateway", program="gateway-1")
    entry["at"] = await ctx.run(ctx.cluster.crash_program, "gateway-1")
    await asyncio.sleep(ctx.args.fault_s)
    await ctx.run(ctx.cluster.start_program, "gateway-1")
    entry["restarted"] = time.time()
    await asyncio.sleep(ctx.args.recover_s)


_ONE = {"broker": _broker, "recommender": _recommender, "spark-worker": _spark_worker, "gateway": _gateway}


def backlog_rate(cluster: Cluster, programs: list[str], backlog: int, tracks: list[int]) -> dict[str, Any]:
    """Plays/s the recommender group drains ``backlog`` plays with ``programs`` running: the
    workers are started and the group settled first, so no rebalance falls in the timing."""
    settings = cluster.settings
    for name in ("recommender-1", "recommender-2"):
        supervise.stop_program(settings, name)
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
