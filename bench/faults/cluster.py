"""Bench only: the cluster profile that ``bench.faults`` runs and breaks, and what it reads back.

:class:`Cluster` drives the local stack (``LocalStack``, ``--profile cluster``: three KRaft
brokers, FerretDB, a Spark master and two workers) and the programs under supervisord
(:mod:`infra.supervise`): batch stages, crashes and restarts, waits for readiness, for the
recommender group (:func:`infra.groups.describe_group`), for replication and for the lag to
drain. Read back from it: per round of the lag sampler (:class:`bench.common.LagSampler`) the recommender
group and the under-replicated partitions (:func:`sample_group`); after the load, how often
each accepted play is in MongoDB's ``plays`` history (:func:`history_counts`) and which plays
caused recommendations on ``cadenza.recommendations`` (:func:`read_causes`). All of it goes
to ``bench.faults`` and, from there, to ``bench.faults.analysis``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.faults.report import console
from infra import supervise
from infra.errors import InfraError
from infra.groups import GroupAssignment, describe_group
from infra.kafka_clients import consumer, describe_topics, partition_states
from infra.mongo import client as mongo_client
from infra.offsets import LagRow, lag_rows
from infra.settings import Settings, child_env
from infra.stack.kafka import KafkaBroker
from infra.stack.manager import LocalStack
from schemas.topics import PLAYS, RECOMMENDATIONS


@dataclass
class Cluster:
    settings: Settings
    stack: LocalStack = field(init=False)

    def __post_init__(self) -> None:
        self.stack = LocalStack(self.settings)

    def env(self) -> dict[str, str]:
        return child_env(self.settings, **supervise.configured(self.settings))

    def cadenza(self, module: str, *argv: str, timeout: float = 900) -> None:
        console.print(f"[dim]$ python -m {module} {' '.join(argv)}[/]", highlight=False)
        subprocess.run([sys.executable, "-m", module, *argv], env=self.env(), check=True, timeout=timeout)

    def gateways(self) -> list[str]:
        return [f"http://127.0.0.1:{self.settings.gateway_port + i}" for i in range(self.settings.gateways)]

    def program_pid(self, name: str) -> int | None:
        return supervise.program_pid(self.settings, name)

    def crash_program(self, name: str) -> float:
        """kill -9 a supervised program's process group and keep it down; returns the kill time."""
        pid = self.program_pid(name)
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.program_pid(name) == pid:
            time.sleep(0.05)
        supervise.stop_program(self.settings, name)  # stop supervisord's restart: it stays dead
        return at

    def start_program(self, name: str) -> None:
        supervise.start_program(self.settings, name)

    def wait_ready(self, url: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/readyz", timeout=3) as r:
                if r.status == 200:
                    return
            time.sleep(1)
        raise RuntimeError(f"{url} not ready after {timeout:.0f} s")

    def group(self) -> GroupAssignment:
        return describe_group(self.settings, self.settings.recommender_group)

    def wait_group(self, members: int, timeout: float = 180) -> float:
        """Seconds until the recommender group is Stable with ``members`` members holding every
        plays partition."""
        started = time.monotonic()
        topic = self.settings.topic(PLAYS)
        while time.monotonic() - started < timeout:
            try:
                g = self.group()
            except InfraError:  # a broker moving did not answer (no coordinator: g.state says so)
                time.sleep(0.5)
                continue
            if g.settled(topic, PLAYS.partitions, members):
                return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"recommender group not stable with {members} member(s) after {timeout:.0f} s")


def plays_or_query(settings: Settings) -> Callable[[LagRow], bool]:
    """The lag rows the sampler sums: every consumer of ``cadenza.plays``, and every Spark query."""
    topic = settings.topic(PLAYS)
    return lambda r: r.topic == topic or r.kind == "query"


def sample_group(settings: Settings) -> Callable[[dict[str, Any]], None]:
    """Adds to a timeline row the recommender group's state and size, then the under-replicated
    partitions (what was read before a failure stays in the row)."""

    def add(row: dict[str, Any]) -> None:
        g = describe_group(settings, settings.recommender_group)
        row["group"] = {"state": g.state, "members": len(g.members)}
        row["under_replicated"] = sum(t.under_replicated for t in describe_topics(settings))

    return add


def plays_topic_leader(cluster: Cluster, partition: int = 0) -> KafkaBroker:
    """The local broker leading ``partition`` of ``cadenza.plays`` (node id = index + 1)."""
    for p in partition_states(cluster.settings, cluster.settings.topic(PLAYS)):
        if p.partition == partition:
            return cluster.stack.brokers[p.leader - 1]
    raise RuntimeError(f"cadenza.plays has no partition {partition}")


def wait_replicated(cluster: Cluster, timeout: float = 180) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            topics = describe_topics(cluster.settings)
            if topics and all(t.under_replicated == 0 and t.offline == 0 for t in topics):
                return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError("partitions still under-replicated")


def wait_lag_zero(cluster: Cluster, timeout: float = 300) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            rows = [r for r in lag_rows(cluster.settings) if r.topic == cluster.settings.topic(PLAYS)]
            if rows and all(r.lag == 0 for r in rows):
                return time.monotonic() - started
        time.sleep(1)
    raise RuntimeError("lag did not return to 0")


def read_causes(settings: Settings) -> Counter[str]:
    """``cause_event_id`` -> how many recommendations on ``cadenza.recommendations`` it caused."""
    from kafka import TopicPartition

    topic = settings.topic(RECOMMENDATIONS)
    c = consumer(settings, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(parts)
        c.seek_to_beginning(*parts)
        ends = c.end_offsets(parts)
        causes: Counter[str] = Counter()
        while any(c.position(tp) < ends[tp] for tp in parts):
            for records in c.poll(timeout_ms=1000, max_records=5000).values():
                for record in records:
                    with contextlib.suppress(ValueError, TypeError):
                        cause = json.loads(record.value).get("cause_event_id")
                        if cause:
                            causes[str(cause)] += 1
        return causes
    finally:
        c.close()


def history_counts(
    settings: Settings, ids: list[str], timeout: float = 600
) -> tuple[Counter[str], float | None]:
    """How often each accepted play is in the ``plays`` history, once the Spark job has written
    them all (or ``timeout`` passed), and the seconds that took (None: never complete)."""
    started = time.monotonic()
    mongo = mongo_client(settings)
    try:
        plays = mongo[settings.mongodb_db].plays
        while True:
            stored: Counter[str] = Counter()
            for chunk in range(0, len(ids), 1000):
                for doc in plays.find({"_id": {"$in": ids[chunk : chunk + 1000]}}, {"_id": 1}):
                    stored[str(doc["_id"])] += 1
            if len(stored) == len(ids):
                return stored, round(time.monotonic() - started, 1)
            if time.monotonic() - started > timeout:
                return stored, None
            time.sleep(5)
    finally:
        mongo.close()
