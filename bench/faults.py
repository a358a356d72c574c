"""Fault injection on the local cluster profile, under a steady load of listeners.

Brings up ``cadenza stack up --profile cluster`` in its own data dir and ports (three KRaft
brokers with replication 3 and ``min.insync.replicas=2``, FerretDB, a Spark standalone
master and two workers), loads the sample catalogue, runs the ETL and the training through
the spark-submit recipe (``python -m infra.deploy.submit``), then both Structured Streaming
queries (submitted to the cluster), two recommender workers in one group and two gateways
under supervisord (:mod:`infra.supervise`, the demo's own configuration). Loopback only.

Load: ``--listeners`` listeners, half on each gateway, each with a websocket, posting plays
(``POST /api/plays`` with a client ``event_id``) at ``--rate`` plays/s in total. A listener
whose socket closes reconnects to the other gateway at once (then back to the first when
that one fails); a POST that fails is retried with the same ``event_id`` on the other
gateway, so retries never double a play.

Faults, in turn, each held ``--fault-s`` seconds, then undone, then ``--recover-s`` of calm:

1. **broker**: kill -9 the broker leading ``cadenza.plays`` partition 0; restart it; the time
   until no partition is under-replicated (it caught up).
2. **recommender**: kill -9 ``recommender-1`` and keep it down (supervisord's restart is
   stopped); the surviving worker takes its partitions. Measured: the time until the group
   is stable again with one member holding every partition, and for the listeners on the
   dead worker's partitions the gap from the kill to their next recommendation.
3. **spark worker**: kill -9 ``spark-worker-1`` (its executors die with it); the streaming
   queries carry on with the other worker's executors; restart it.
4. **gateway**: kill -9 ``gateway-1`` and keep it down; its listeners reconnect to
   ``gateway-2``: the time from the kill until each has its latest list again.

Checks after the load stops and every lag is back to 0: every accepted play is in the
``plays`` history exactly once (no loss, no duplicate), every accepted play caused at least one
recommendation on ``cadenza.recommendations``, and POSTs that failed on both gateways.

Then **two workers vs one**: the streaming queries and gateways stopped (they would share the
two cores), one worker started and its group settled, ``--backlog`` plays published straight to
Kafka and timed until the group's lag is 0; again with two workers; the ratio of the two rates.
``--skip-faults`` runs only this part.

A sampler reads every consumer's lag (``infra.offsets.lag_rows``, the source of ``cadenza lag``
and ``/metrics``), the recommender group's members and state, and the under-replicated
partitions once a second. Prints a table, writes ``bench/results/faults.json`` (``--out``) and
``bench/results/faults.png`` (``--plot``: lag over time with the faults marked, and play ->
recommendation latency). Stops everything it started, also on error or Ctrl-C.

Run: ``.venv/bin/python bench/faults.py`` (about 15 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # bench/gateway.py shadow

import httpx  # noqa: E402
from kafka.partitioner.default import murmur2  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidHandshake  # noqa: E402

from gateway.sim_report import latency_summary  # noqa: E402
from gateway.tokens import issue  # noqa: E402
from infra import supervise  # noqa: E402
from infra.errors import InfraError  # noqa: E402
from infra.groups import GroupAssignment, describe_group  # noqa: E402
from infra.kafka_clients import consumer, describe_topics, partition_states, producer  # noqa: E402
from infra.mongo import client as mongo_client  # noqa: E402
from infra.offsets import lag_rows  # noqa: E402
from infra.settings import Settings, child_env, get_settings  # noqa: E402
from infra.stack.kafka import KafkaBroker  # noqa: E402
from infra.stack.manager import LocalStack  # noqa: E402
from schemas.codec import encode  # noqa: E402
from schemas.events import PlayEvent, PlayKind  # noqa: E402
from schemas.topics import PLAYS, RECOMMENDATIONS  # noqa: E402

console = Console()
SECRET = "faults-bench-secret"


# --- the system -------------------------------------------------------------------------------


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
        out = supervise.ctl(self.settings, "pid", name).stdout.strip()
        return int(out) if out.isdigit() and int(out) > 0 else None

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
        supervise.ctl(self.settings, "stop", name)  # stop supervisord's restart: it stays dead
        return at

    def start_program(self, name: str) -> None:
        supervise.ctl(self.settings, "start", name)

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
            except InfraError:  # no coordinator yet (offsets topic being created), or a broker moving
                time.sleep(0.5)
                continue
            if g.state == "Stable" and len(g.members) == members and len(g.owners(topic)) == PLAYS.partitions:
                return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"recommender group not stable with {members} member(s) after {timeout:.0f} s")


# --- sampling ---------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Every second: lag per consumer, the recommender group, under-replicated partitions."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="sampler")
        self.settings = settings
        self.rows: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.t0 = time.time()

    def run(self) -> None:
        while not self.stopping.is_set():
            row: dict[str, Any] = {"t": time.time() - self.t0}
            try:
                lag: Counter[str] = Counter()
                for r in lag_rows(self.settings):
                    if r.topic == self.settings.topic(PLAYS) or r.kind == "query":
                        lag[r.name] += r.lag
                row["lag"] = dict(lag)
                g = describe_group(self.settings, self.settings.recommender_group)
                row["group"] = {"state": g.state, "members": len(g.members)}
                row["under_replicated"] = sum(t.under_replicated for t in describe_topics(self.settings))
            except Exception as err:  # a broker just died: note it, keep sampling
                row["error"] = f"{type(err).__name__}: {err}"[:200]
            self.rows.append(row)
            self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(10)


# --- listeners --------------------------------------------------------------------------------


@dataclass
class Listener:
    user: str
    token: str
    home: int
    on: int = -1  # gateway index of the open socket, -1 when disconnected
    arrivals: list[tuple[float, str | None, int]] = field(default_factory=list)  # (at, cause, gateway)
    reconnects: list[dict[str, float]] = field(default_factory=list)
    closed_at: float | None = None
    busy: bool = False


@dataclass
class Load:
    urls: list[str]
    listeners: list[Listener]
    rate: float
    sent: dict[str, tuple[str, float]] = field(default_factory=dict)  # event_id -> (user, accepted at)
    failed: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    running: bool = True
    posting: bool = True
    tracks: list[int] = field(default_factory=list)

    async def socket(self, lst: Listener) -> None:
        order = [lst.home, *[i for i in range(len(self.urls)) if i != lst.home]]
        attempt = 0
        while self.running:
            index = order[attempt % len(order)]
            attempt += 1
            url = self.urls[index].replace("http://", "ws://") + f"/ws?token={lst.token}"
            try:
                async with connect(
                    url, open_timeout=5, ping_interval=None, close_timeout=1, proxy=None
                ) as ws:
                    lst.on = index
                    first_list = True
                    async for raw in ws:
                        message = json.loads(raw)
                        if message.get("type") == "ping":
                            await ws.send(json.dumps({"type": "pong", "ts": message.get("ts")}))
                        elif message.get("type") == "recommendations":
                            at = time.time()
                            data = message.get("data") or {}
                            lst.arrivals.append((at, data.get("cause_event_id"), index))
                            if first_list and lst.closed_at is not None:
                                lst.reconnects.append(
                                    {"closed": lst.closed_at, "list_at": at, "gateway": index}
                                )
                                lst.closed_at = None
                            first_list = False
                    attempt = 0 if index == lst.home else attempt
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ValueError):
                pass
            if lst.on >= 0 and lst.closed_at is None and self.running:
                lst.closed_at = time.time()
            lst.on = -1
            await asyncio.sleep(0.05 if attempt <= len(order) else 0.5)

    async def post(self, http: httpx.AsyncClient, lst: Listener) -> None:
        """One play, as a player sends it: one request at a time per listener, retried on the
        other gateway with the same event_id; latency counts from the first attempt."""
        if lst.busy:
            self.failed["listener still sending"] += 1
            return
        lst.busy = True
        try:
            await self._post(http, lst)
        finally:
            lst.busy = False

    async def _post(self, http: httpx.AsyncClient, lst: Listener) -> None:
        event_id = str(uuid.uuid4())
        first_try = time.time()
        body = {
            "track_id": random.choice(self.tracks),
            "kind": "play",
            "position_s": 0.0,
            "event_id": event_id,
        }
        first = lst.on if lst.on >= 0 else lst.home
        for attempt in range(6):
            url = self.urls[(first + attempt) % len(self.urls)]
            try:
                r = await http.post(
                    url + "/api/plays", json=body, headers={"Authorization": f"Bearer {lst.token}"}
                )
            except httpx.HTTPError as err:
                self.failed[type(err).__name__] += 1
                self.retried += 1
                await asyncio.sleep(0.2)
                continue
            if r.status_code == 202:
                self.sent[event_id] = (lst.user, first_try)
                return
            self.failed[f"HTTP {r.status_code}"] += 1
            self.retried += 1
            await asyncio.sleep(0.2)
        self.failed["gave up"] += 1

    async def plays(self, duration: float) -> None:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(timeout=6, trust_env=False, limits=limits) as http:
            tasks: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            n = 0
            while time.monotonic() - start < duration and self.posting:
                n += 1
                task = asyncio.create_task(self.post(http, random.choice(self.listeners)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, start + n / self.rate - time.monotonic()))
            await asyncio.gather(*tasks, return_exceptions=True)


# --- the run ----------------------------------------------------------------------------------


def partition_of(user: str, partitions: int) -> int:
    return (murmur2(user.encode()) & 0x7FFFFFFF) % partitions


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


def resumption(
    load: Load, first_arrival: dict[str, float], killed: float, restarted: float, moved: set[int]
) -> dict[str, Any]:
    """How a worker's crash looked on the partitions it held.

    ``resume_s``: per moved partition, the kill to the first answer to a play sent after it
    (the partition is processed in order, so everything before that play is answered too).
    ``longest_wait_s``: per listener on those partitions, the longest any play they sent
    while the worker was down (or just before, unanswered at the kill) waited for its answer.
    (The kill to a listener's next answer is not used: it counts their time between plays.)
    """
    resumed: dict[int, float] = {}
    waits: dict[str, float] = {}
    for event_id, (user, sent_at) in load.sent.items():
        part = partition_of(user, PLAYS.partitions)
        arrived = first_arrival.get(event_id)
        if part not in moved or arrived is None or arrived < killed or sent_at > restarted:
            continue
        waits[user] = max(waits.get(user, 0.0), arrived - sent_at)
        if sent_at > killed:
            resumed[part] = min(resumed.get(part, arrived - killed), arrived - killed)
    return {
        "resume_s": {str(p): round(v, 2) for p, v in sorted(resumed.items())},
        "affected_listeners": len(waits),
        "longest_wait_s": latency_summary(list(waits.values())),
    }


def analyse(cluster: Cluster, load: Load, marks: list[dict[str, Any]]) -> dict[str, Any]:
    """Loss, duplicates and what listeners saw around each fault."""
    settings = cluster.settings
    ids = list(load.sent)
    stored, complete_after = history_counts(settings, ids)
    causes = read_causes(settings)
    latencies: list[tuple[float, float]] = []  # (sent at, ms) for the first arrival of each play
    first_arrival: dict[str, float] = {}
    for lst in load.listeners:
        for at, cause, _gw in lst.arrivals:
            if cause and cause not in first_arrival:
                first_arrival[cause] = at
    for event_id, (_user, sent_at) in load.sent.items():
        if event_id in first_arrival:
            latencies.append((sent_at, (first_arrival[event_id] - sent_at) * 1e3))
    out: dict[str, Any] = {
        "accepted_plays": len(ids),
        "history_complete_after_s": complete_after,
        "history_missing": sum(1 for e in ids if stored[e] == 0),
        "history_duplicated": sum(1 for e in ids if stored[e] > 1),
        "without_recommendation": sum(1 for e in ids if causes[e] == 0),
        "recommendations_per_play_max": max((causes[e] for e in ids), default=0),
        "post_failures": dict(load.failed),
        "posts_given_up": load.failed.get("gave up", 0),
        "latency_ms": latency_summary([v for _, v in latencies]),
        "faults": [],
    }
    for m in marks:
        fault = {k: v for k, v in m.items() if k not in ("at", "restarted")}
        start, end = m["at"], m.get("restarted", m["at"])
        window = [v for t, v in latencies if start <= t <= end]
        fault["down_s"] = round(end - start, 1)
        fault["latency_ms_while_down"] = latency_summary(window)
        fault["posts_while_down"] = len(window)
        if m["fault"] == "recommender":
            fault.update(resumption(load, first_arrival, start, end, set(m.get("moved_partitions", []))))
        if m["fault"] == "gateway":
            moved_to = [
                r["list_at"] - start
                for lst in load.listeners
                for r in lst.reconnects
                if start <= r["closed"] <= end + 1
            ]
            fault["reconnected_listeners"] = len(moved_to)
            fault["latest_list_after_s"] = latency_summary(moved_to)
        out["faults"].append(fault)
    out["latencies"] = [(round(t, 3), round(v, 1)) for t, v in latencies]
    return out


# --- two workers vs one -----------------------------------------------------------------------


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


# --- output -----------------------------------------------------------------------------------


def plot(path: Path, sampler: Sampler, marks: list[dict[str, Any]], result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    names = sorted({n for r in sampler.rows for n in r.get("lag", {})})
    for name in names:
        xs = [r["t"] for r in sampler.rows if "lag" in r]
        ys = [r["lag"].get(name, 0) for r in sampler.rows if "lag" in r]
        ax1.plot(xs, ys, label=name)
    members = [(r["t"], r["group"]["members"]) for r in sampler.rows if "group" in r]
    ax1b = ax1.twinx()
    ax1b.step([t for t, _ in members], [m for _, m in members], where="post", color="grey", alpha=0.5)
    ax1b.set_ylabel("recommender workers in the group")
    ax1b.set_ylim(0, 3)
    ax1.set_ylabel("lag on cadenza.plays (records)")
    ax1.legend(loc="upper left", fontsize=8)
    lat = result["load"]["latencies"]
    ax2.scatter([t - sampler.t0 for t, _ in lat], [v for _, v in lat], s=3)
    ax2.set_yscale("log")
    ax2.set_ylabel("play -> recommendation (ms)")
    ax2.set_xlabel("seconds")
    for m in marks:
        for ax in (ax1, ax2):
            ax.axvspan(
                m["at"] - sampler.t0, m.get("restarted", m["at"]) - sampler.t0, color="red", alpha=0.12
            )
        ax1.text(m["at"] - sampler.t0, ax1.get_ylim()[1] * 0.9, m["fault"], fontsize=8, color="darkred")
    fig.suptitle("Cadenza cluster profile under faults (red: component down)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(result: dict[str, Any]) -> Table:
    t = Table(title="Faults under load (cluster profile, loopback)", title_justify="left")
    t.add_column("measure")
    t.add_column("value", justify="right")
    load = result["load"]
    for key in (
        "accepted_plays",
        "history_missing",
        "history_duplicated",
        "without_recommendation",
        "posts_given_up",
    ):
        t.add_row(key.replace("_", " "), str(load[key]))
    t.add_row(
        "play -> recommendation p50 / p99 (ms)", f"{load['latency_ms']['p50']} / {load['latency_ms']['p99']}"
    )
    for f in load["faults"]:
        detail = {k: v for k, v in f.items() if k not in ("fault",)}
        t.add_row(f"fault: {f['fault']}", json.dumps(detail, default=str)[:160])
    for run in result.get("throughput", []):
        t.add_row(f"backlog drain, {run['workers']} worker(s) (plays/s)", str(run["plays_per_s"]))
    if result.get("throughput_ratio") is not None:
        t.add_row("two workers / one", f"{result['throughput_ratio']:.2f}")
    return t


def ports(base: int) -> dict[str, int]:
    return {
        "kafka_port": base,
        "kafka_controller_port": base + 1,
        "ferretdb_port": base + 2,
        "spark_master_port": base + 3,
        "spark_ui_port": base + 10,
        "gateway_port": base + 20,
        "faust_port": base + 30,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cadenza-faults"))
    parser.add_argument("--port-base", type=int, default=41000)
    parser.add_argument("--tracks", type=int, default=64)
    parser.add_argument("--listeners", type=int, default=200)
    parser.add_argument("--rate", type=float, default=40.0, help="plays/s in total")
    parser.add_argument("--warm-s", type=float, default=20.0)
    parser.add_argument("--fault-s", type=float, default=25.0)
    parser.add_argument("--recover-s", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=6000)
    parser.add_argument("--out", type=Path, default=_HERE / "results" / "faults.json")
    parser.add_argument("--plot", type=Path, default=_HERE / "results" / "faults.png")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    parser.add_argument("--skip-faults", action="store_true", help="only the two-vs-one worker drain")
    args = parser.parse_args()

    shutil.rmtree(args.data_dir, ignore_errors=True)
    settings = get_settings(
        stack_profile="cluster",
        data_dir=args.data_dir,
        token_secret=SECRET,
        spark_workers=2,
        gateway_replay_s=900.0,
        **ports(args.port_base),
    )
    cluster = Cluster(settings)
    sampler = Sampler(settings)
    marks: list[dict[str, Any]] = []
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "cpus": os.cpu_count()}
    try:
        started = time.monotonic()
        console.rule("cluster stack up")
        cluster.stack.up(report=lambda msg: console.print(f"  {msg}", highlight=False))
        result["stack_up_s"] = round(time.monotonic() - started, 1)
        sample = str((args.data_dir / "sample-fma").resolve())
        cluster.cadenza("infra", "sample-data", sample, "--tracks", str(args.tracks))
        for what, argv in (
            ("etl", ("etl", "run", "--fma-dir", sample)),
            ("train", ("model", "train", "--k", "4", "--promote")),
        ):
            t = time.monotonic()
            cluster.cadenza(supervise.SUBMIT_MODULE, *argv)
            result[f"{what}_on_cluster_s"] = round(time.monotonic() - t, 1)
        console.rule("streaming queries, two recommender workers, two gateways")
        supervise.start(settings)
        for url in cluster.gateways():
            cluster.wait_ready(url)
        cluster.wait_group(2)
        result["assignment_before"] = {
            m.worker or m.member_id: list(m.holds(settings.topic(PLAYS))) for m in cluster.group().members
        }
        sampler.start()

        tracks = [
            int(d["_id"]) for d in mongo_client(settings)[settings.mongodb_db].tracks.find({}, {"_id": 1})
        ]
        now = time.time()
        listeners = [
            Listener(
                f"faults-{i}", issue(SECRET, f"faults-{i}", now=now, ttl_s=7200), home=i % settings.gateways
            )
            for i in range(args.listeners)
        ]
        load = Load(cluster.gateways(), listeners, args.rate, tracks=tracks)
        duration = args.warm_s + 4 * (args.fault_s + args.recover_s) + 120

        async def run_load() -> None:
            sockets = [asyncio.create_task(load.socket(lst)) for lst in listeners]
            await asyncio.sleep(3)
            plays = asyncio.create_task(load.plays(duration))
            await faults(cluster, load, args, marks)
            load.posting = False  # stop posting; the requests in flight finish
            await plays
            await asyncio.sleep(10)  # the last answers
            load.running = False
            for task in sockets:
                task.cancel()
            await asyncio.gather(*sockets, return_exceptions=True)

        if not args.skip_faults:
            console.rule("load and faults")
            asyncio.run(run_load())
            result["lag_back_to_zero_s"] = round(wait_lag_zero(cluster), 1)
            result["load"] = analyse(cluster, load, marks)

        console.rule("two workers vs one (backlog drain)")
        # Only the recommender group works on the backlogs: the streaming queries and the
        # gateways would share the same two cores.
        for name in ("stream-plays", "stream-assign", "gateway-1", "gateway-2"):
            supervise.ctl(settings, "stop", name)
        runs = [
            backlog_rate(cluster, ["recommender-1"], args.backlog, tracks),
            backlog_rate(cluster, ["recommender-1", "recommender-2"], args.backlog, tracks),
        ]
        result["throughput"] = runs
        if runs[0]["plays_per_s"] and runs[1]["plays_per_s"]:
            result["throughput_ratio"] = runs[1]["plays_per_s"] / runs[0]["plays_per_s"]
    finally:
        sampler.stop()
        result["timeline"] = sampler.rows
        if not args.keep:
            with contextlib.suppress(Exception):
                supervise.stop(settings)
            with contextlib.suppress(Exception):
                cluster.stack.down()
    if "load" in result:
        plot(args.plot, sampler, marks, result)
        console.print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    console.print(f"wrote {args.out}" + (f" and {args.plot}" if "load" in result else ""))
    load_result = result.get("load", {})
    if (
        load_result.get("history_missing")
        or load_result.get("history_duplicated")
        or load_result.get("without_recommendation")
    ):
        raise SystemExit("FAILED: plays lost or duplicated (see the table)")


if __name__ == "__main__":
    main()
