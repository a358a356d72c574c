"""``cadenza simulate``: simulated listeners playing through the gateway or straight to Kafka.

Sources: MongoDB ``tracks`` (the catalogue, read once), :mod:`gateway.simulation` (what
each listener does and when) and the gateway's ``/ws`` (the recommendations pushed to
each listener, with the play that caused them). Destinations: the gateway's
``POST /api/plays`` (one signed token per listener, ``--via gateway``) or
``cadenza.plays`` itself (``--via kafka``: an idempotent aiokafka producer, key = the
listener, as an upstream service publishes); a rich progress bar and summary table; the
:class:`SimulationReport` (``--out`` writes it as JSON).

Sequence: sockets first (each listener's ``/ws``, bounded connect concurrency, pings
answered), then the events on their absolute schedule for ``duration_s`` seconds
(bounded sends in flight, one at a time per listener so each listener's events stay in
order), then up to ``drain_s`` seconds for the recommendations still expected. Latency
of a recommendation = its arrival on the socket - the time just before its cause was
sent (one machine, one clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from gateway import simulation, tokens
from gateway.errors import GatewayError
from gateway.keepalive import KeepAlivePool
from infra.settings import Settings
from schemas.events import PlayEvent

Via = Literal["gateway", "kafka"]
OPEN_TIMEOUT_S: Final = 15.0
HTTP_TIMEOUT_S: Final = 15.0
#: Longest wait for the sends still in flight when the schedule ends.
FINISH_TIMEOUT_S: Final = 30.0
TICK_S: Final = 0.2
NO_RECOMMENDER: Final = (
    "no recommendation arrived: is a recommender running (`cadenza recommender`, or `cadenza demo`)?"
)


class SimulationError(GatewayError):
    """The simulation cannot start (empty catalogue, no gateway, no broker)."""


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; see ``cadenza simulate --help``."""

    listeners: int = 20
    rate: float = 5.0
    duration_s: float = 60.0
    via: Via = "gateway"
    sockets: bool = True
    seed: int | None = None
    drain_s: float = 10.0
    url: str | None = None
    concurrency: int = 64
    connect_concurrency: int = 32
    progress: bool = True
    model: simulation.ListenerModel = field(default_factory=simulation.ListenerModel)

    def __post_init__(self) -> None:
        if self.listeners < 1 or self.concurrency < 1 or self.connect_concurrency < 1:
            raise ValueError("listeners and concurrencies must be at least 1")
        if not self.rate > 0 or not self.duration_s > 0 or self.drain_s < 0:
            raise ValueError("rate and duration must be positive, drain not negative")
        if self.via not in ("gateway", "kafka"):
            raise ValueError(f"--via is 'gateway' or 'kafka', not {self.via!r}")


@dataclass
class SimulationReport:
    """What a run did; ``accepted_event_ids`` lets a test check the plays topic exactly."""

    run_tag: str
    seed: int
    via: str
    url: str
    listeners: int
    target_rate: float
    duration_s: float
    scheduled: int = 0
    sent: int = 0
    accepted: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    sockets: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    received: int = 0
    listeners_reached: int = 0
    matched: int = 0
    unmatched: int = 0
    outstanding: int = 0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    achieved_rate: float = 0.0
    send_s: float = 0.0
    drain_s: float = 0.0
    note: str | None = None
    accepted_event_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The summary table's rows."""
        lat = self.latency_ms

        def ms(key: str) -> str:
            value = lat.get(key)
            return "-" if value is None else f"{value:.1f}"

        rows = [
            ("run", f"{self.run_tag} (seed {self.seed}) via {self.via}"),
            ("listeners / sockets connected", f"{self.listeners} / {self.sockets}"),
            ("events scheduled / sent", f"{self.scheduled} / {self.sent}"),
            ("accepted", str(self.accepted)),
            ("refused or failed", _counts(self.failed) or "none"),
            ("rate target / achieved", f"{self.target_rate:g} / {self.achieved_rate:.2f} events/s"),
            ("recommendations received", str(self.received)),
            ("listeners reached", f"{self.listeners_reached} of {self.listeners}"),
            ("matched / unmatched / outstanding", f"{self.matched} / {self.unmatched} / {self.outstanding}"),
            ("latency p50 / p95 / p99 / max (ms)", f"{ms('p50')} / {ms('p95')} / {ms('p99')} / {ms('max')}"),
        ]
        if self.socket_errors:
            rows.append(("socket errors", _counts(self.socket_errors)))
        if self.note:
            rows.append(("note", self.note))
        return rows


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


# --- pure helpers -----------------------------------------------------------------------------


def user_ids(tag: str, listeners: int) -> list[str]:
    return [f"sim-{tag}-{i}" for i in range(listeners)]


def run_tag(seed: int | None) -> str:
    """``s<seed>`` for a seeded run (the same listeners again), else random hex."""
    return f"s{seed}" if seed is not None else secrets.token_hex(3)


def ws_url(base: str, token: str) -> str:
    """The websocket address of a gateway at ``base`` (http -> ws, https -> wss)."""
    scheme, sep, rest = base.rstrip("/").partition("://")
    if not sep:
        scheme, rest = "http", base.rstrip("/")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?token={token}"


def gateway_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.gateway_host in ("0.0.0.0", "::") else settings.gateway_host
    return f"http://{host}:{settings.gateway_port}"


def latency_summary(latencies_ms: list[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max of ``latencies_ms`` (None each when there are none)."""
    if not latencies_ms:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    values = np.asarray(latencies_ms, dtype=float)
    p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
    return {"p50": p50, "p95": p95, "p99": p99, "max": float(values.max())}


@dataclass(frozen=True, slots=True)
class Arrival:
    """A recommendation as it reached a listener's socket."""

    user_id: str
    at: float
    cause_event_id: str | None


def match(arrivals: list[Arrival], sent_at: dict[str, float]) -> tuple[list[float], int]:
    """Latencies (ms) of the arrivals caused by a sent event, and how many were not."""
    latencies: list[float] = []
    unmatched = 0
    for a in arrivals:
        sent = sent_at.get(a.cause_event_id or "")
        if sent is None:
            unmatched += 1
        else:
            latencies.append((a.at - sent) * 1e3)
    return latencies, unmatched


# --- catalogue --------------------------------------------------------------------------------


def load_catalogue(settings: Settings) -> list[simulation.Track]:
    """Every track of MongoDB ``tracks`` with its genre and duration; SimulationError if none."""
    from pymongo.errors import PyMongoError

    from infra.mongo import client

    mongo = client(settings)
    try:
        docs = mongo[settings.mongodb_db].tracks.find({}, {"genre_top": 1, "duration_s": 1})
        rows = [
            simulation.track(int(d["_id"]), str(d["genre_top"]) if d.get("genre_top") else None, _seconds(d))
            for d in docs
            if isinstance(d.get("_id"), int) and 0 < d["_id"] < 2**53
        ]
    except PyMongoError as err:
        raise SimulationError(
            f"MongoDB at {settings.mongo_uri} did not answer ({type(err).__name__}); start the "
            "local stack with `cadenza stack up` or set CADENZA_MONGODB_URI"
        ) from None
    finally:
        mongo.close()
    if not rows:
        raise SimulationError(
            f"the catalogue (MongoDB {settings.mongodb_db}.tracks) is empty: "
            "run `cadenza demo` or `cadenza etl run` first"
        )
    return rows


def _seconds(doc: dict[str, Any]) -> float | None:
    value = doc.get("duration_s")
    return float(value) if isinstance(value, int | float) else None


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the run has seen so far (one event loop: no locks needed)."""

    sent: int = 0
    accepted: list[str] = field(default_factory=list)
    accepted_of: Counter[str] = field(default_factory=Counter)  # user -> accepted events
    failed: Counter[str] = field(default_factory=Counter)
    sent_at: dict[str, float] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    matched_of: Counter[str] = field(default_factory=Counter)  # user -> recommendations of our events
    socket_errors: Counter[str] = field(default_factory=Counter)

    def arrived(self, user: str, at: float, cause: Any) -> None:
        cause_id = str(cause) if cause is not None else None
        self.arrivals.append(Arrival(user, at, cause_id))
        if cause_id is not None and cause_id in self.sent_at:
            self.matched_of[user] += 1


class Sockets:
    """One websocket per listener: hello awaited, pings answered, recommendations recorded."""

    def __init__(self, base: str, tally: Tally, concurrency: int) -> None:
        self.base, self.tally = base, tally
        self.sem = asyncio.Semaphore(concurrency)
        self.open: dict[str, ClientConnection] = {}
        self.readers: list[asyncio.Task[None]] = []
        self.closing = False

    async def connect_all(self, tokens_of: dict[str, str], bar: Bar) -> None:
        async def one(user: str, token: str) -> None:
            await self._open(user, token)
            bar.update(len(self.open))

        await asyncio.gather(*(one(user, token) for user, token in tokens_of.items()))

    async def _open(self, user: str, token: str) -> None:
        async with self.sem:
            try:
                ws = await connect(
                    ws_url(self.base, token),
                    open_timeout=OPEN_TIMEOUT_S,
                    ping_interval=None,  # the gateway pings; we answer in _read
                    close_timeout=2,
                    proxy=None,
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as err:
                self.tally.socket_errors[f"connect: {type(err).__name__}"] += 1
                return
            try:
                hello = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
            except ConnectionClosed:  # e.g. 4401: the gateway does not accept our tokens
                self.tally.socket_errors[f"closed before hello ({ws.close_code})"] += 1
                await _close(ws)
                return
            except (TimeoutError, ValueError) as err:
                self.tally.socket_errors[f"hello: {type(err).__name__}"] += 1
                await _close(ws)
                return
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            self.tally.socket_errors["first message not a hello"] += 1
            await _close(ws)
            return
        self.open[user] = ws
        self.readers.append(asyncio.create_task(self._read(user, ws), name=f"ws-{user}"))

    async def _read(self, user: str, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                at = time.time()
                try:
                    message = json.loads(raw)
                except ValueError:
                    self.tally.socket_errors["message not JSON"] += 1
                    continue
                if not isinstance(message, dict):
                    continue
                kind = message.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "ts": message.get("ts")}))
                elif kind == "recommendations":
                    data = message.get("data")
                    cause = data.get("cause_event_id") if isinstance(data, dict) else None
                    self.tally.arrived(user, at, cause)
        except ConnectionClosed:
            pass
        if not self.closing:
            self.tally.socket_errors[f"closed by the gateway ({ws.close_code})"] += 1

    async def close_all(self) -> None:
        self.closing = True
        await asyncio.gather(*(_close(ws) for ws in self.open.values()))
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def _close(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), 3.0)


class GatewaySender:
    """``POST /api/plays`` with each listener's token; one request at a time per listener,
    over at most ``concurrency`` keep-alive connections (:mod:`gateway.keepalive`)."""

    def __init__(self, base: str, tokens_of: dict[str, str], tally: Tally, concurrency: int) -> None:
        self.tokens_of, self.tally = tokens_of, tally
        self.client = KeepAlivePool(base, concurrency, HTTP_TIMEOUT_S)
        self.locks: dict[str, asyncio.Lock] = {u: asyncio.Lock() for u in tokens_of}

    async def start(self) -> None:
        return None

    async def send(self, user: str, event: simulation.Scheduled, event_id: str) -> None:
        body = {
            "track_id": event.track_id,
            "kind": event.kind.value,
            "position_s": event.position_s,
            "event_id": event_id,
        }
        headers = {"Authorization": f"Bearer {self.tokens_of[user]}"}
        payload = json.dumps(body).encode()
        async with self.locks[user]:
            self.tally.sent_at[event_id] = time.time()
            try:
                status, answer = await self.client.post("/api/plays", payload, headers)
            except OSError as err:  # refused, reset, timed out, or not an HTTP answer
                self.tally.failed[type(err).__name__] += 1
                return
        if status == 202:
            self.tally.accepted.append(event_id)
            self.tally.accepted_of[user] += 1
        else:
            self.tally.failed[refusal(status, answer)] += 1

    async def stop(self) -> None:
        await self.client.close()


def refusal(status: int, answer: bytes) -> str:
    """``"HTTP 422 track_id"``: the status and, when the gateway names one, the field."""
    try:
        body = json.loads(answer)
    except ValueError:
        body = None
    where = body.get("field") if isinstance(body, dict) else None
    return f"HTTP {status}" + (f" {where}" if isinstance(where, str) else "")


class KafkaSender:
    """``PlayEvent``s to ``cadenza.plays`` (key = listener) through one idempotent producer."""

    def __init__(self, settings: Settings, tally: Tally) -> None:
        from infra.kafka_clients import aio_producer

        self.settings, self.tally = settings, tally
        self.producer = aio_producer(settings, linger_ms=2, client_id="cadenza-simulator")

    async def start(self) -> None:
        from aiokafka.errors import KafkaError

        try:
            await self.producer.start()
        except KafkaError as err:
            with contextlib.suppress(Exception):
                await self.producer.stop()
            raise SimulationError(
                f"Kafka at {self.settings.bootstrap_servers} did not answer ({type(err).__name__}); "
                "start the local stack with `cadenza stack up` or set CADENZA_KAFKA_BOOTSTRAP"
            ) from None

    async def send(self, user: str, event: simulation.Scheduled, event_id: str) -> asyncio.Future[Any]:
        """Hand the event to the producer in schedule order; the returned future is its ack."""
        from schemas.codec import encode, encode_key
        from schemas.topics import PLAYS

        message = PlayEvent(
            event_id=uuid.UUID(event_id),
            user_id=user,
            track_id=event.track_id,
            kind=event.kind,
            position_s=event.position_s,
        )
        self.tally.sent_at[event_id] = time.time()
        result: asyncio.Future[Any] = await self.producer.send(
            self.settings.topic(PLAYS), key=encode_key(user), value=encode(message)
        )
        return result

    async def acked(self, user: str, event_id: str, ack: asyncio.Future[Any]) -> None:
        from aiokafka.errors import KafkaError

        try:
            await ack
        except KafkaError as err:
            self.tally.failed[type(err).__name__] += 1
            return
        self.tally.accepted.append(event_id)
        self.tally.accepted_of[user] += 1

    async def stop(self) -> None:
        await self.producer.stop()


async def check_gateway(base: str) -> None:
    """SimulationError unless something answers ``/healthz`` at ``base``."""
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5.0, trust_env=False) as client:
            response = await client.get("/healthz")
    except httpx.HTTPError as err:
        raise SimulationError(
            f"no gateway at {base} ({type(err).__name__}): start one (`cadenza gateway` or "
            "`cadenza demo`), pass --url, or use --via kafka --no-sockets"
        ) from None
    if response.status_code != 200:
        raise SimulationError(f"{base}/healthz answered {response.status_code}: is that a Cadenza gateway?")


class Bar:
    """The progress bar (or nothing): elapsed seconds of the schedule, then of the drain."""

    def __init__(self, console: Console | None, tally: Tally) -> None:
        self.tally = tally
        self.progress: Progress | None = None
        if console is not None:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                console=console,
            )
        self.task: Any = None
        self.total = 0.0

    def __enter__(self) -> Bar:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def stage(self, description: str, total: float) -> None:
        if self.progress is None:
            return
        if self.task is not None:
            self.progress.update(self.task, completed=self.total)
        self.task, self.total = self.progress.add_task(description, total=total, counts=""), total

    def update(self, done: float) -> None:
        if self.progress is None or self.task is None:
            return
        t = self.tally
        counts = (
            f"sent {t.sent} · accepted {len(t.accepted)} · failed {sum(t.failed.values())} · "
            f"recommendations {len(t.arrivals)}"
        )
        self.progress.update(self.task, completed=done, counts=counts)


async def simulate(
    settings: Settings,
    config: SimulationConfig,
    tracks: list[simulation.Track],
    console: Console | None = None,
) -> SimulationReport:
    """Run the simulation against the stack of ``settings``; the report."""
    seed = config.seed if config.seed is not None else secrets.randbits(32)
    tag = run_tag(config.seed)
    base = (config.url or gateway_url(settings)).rstrip("/")
    users = user_ids(tag, config.listeners)
    report = SimulationReport(tag, seed, config.via, base, config.listeners, config.rate, config.duration_s)
    catalogue = simulation.build_catalogue(tracks, seed=seed, zipf_exponent=config.model.zipf_exponent)
    events = simulation.schedule(catalogue, config.listeners, config.rate, seed=seed, model=config.model)
    tally = Tally()
    secret = settings.token_secret.get_secret_value()
    ttl = int(config.duration_s + config.drain_s + 3600)
    tokens_of = {u: tokens.issue(secret, u, now=time.time(), ttl_s=ttl) for u in users}
    if config.via == "gateway" or config.sockets:
        await check_gateway(base)
    sender: GatewaySender | KafkaSender = (
        GatewaySender(base, tokens_of, tally, config.concurrency)
        if config.via == "gateway"
        else KafkaSender(settings, tally)
    )
    sockets = Sockets(base, tally, config.connect_concurrency)
    await sender.start()
    try:
        with Bar(console if config.progress else None, tally) as bar:
            if config.sockets:
                bar.stage("connecting sockets", float(config.listeners))
                await sockets.connect_all(tokens_of, bar)
                report.sockets = len(sockets.open)
            bar.stage("sending", config.duration_s)
            report.scheduled, report.send_s = await _send_all(
                sender, users, simulation.until(events, config.duration_s), config, bar
            )
            if config.sockets and sockets.open:
                bar.stage("waiting for recommendations", config.drain_s)
                report.drain_s = await _drain(tally, set(sockets.open), config.drain_s, bar)
    finally:
        await sockets.close_all()
        await sender.stop()
    _fill(report, tally, set(sockets.open), watched=config.sockets)
    return report


async def _send_all(
    sender: GatewaySender | KafkaSender,
    users: list[str],
    events: Iterator[simulation.Scheduled],
    config: SimulationConfig,
    bar: Bar,
) -> tuple[int, float]:
    """Send ``events`` on their absolute schedule, at most ``concurrency`` in flight; stops at
    ``duration_s`` even when behind. Returns how many events the schedule had and the
    seconds the sending took (the sends still in flight are then awaited)."""
    sem = asyncio.Semaphore(config.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    tally = sender.tally
    scheduled = 0
    start = time.monotonic()
    last_tick = 0.0

    async def guarded(job: Any) -> None:
        try:
            await job
        finally:
            sem.release()

    for event in events:
        scheduled += 1
        now = time.monotonic() - start
        if now >= config.duration_s:
            continue  # behind schedule: count what was planned, send no more
        if event.at_s > now:
            await asyncio.sleep(event.at_s - now)
        await sem.acquire()
        user, event_id = users[event.listener], str(uuid.uuid4())
        tally.sent += 1
        if isinstance(sender, KafkaSender):
            try:
                ack = await sender.send(user, event, event_id)
            except Exception as err:  # the producer refused it outright (e.g. closed)
                tally.failed[type(err).__name__] += 1
                sem.release()
                continue
            job: Any = sender.acked(user, event_id, ack)
        else:
            job = sender.send(user, event, event_id)
        task = asyncio.create_task(guarded(job))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if time.monotonic() - last_tick > TICK_S:
            last_tick = time.monotonic()
            bar.update(min(last_tick - start, config.duration_s))
    remaining = config.duration_s - (time.monotonic() - start)
    if remaining > 0:
        await asyncio.sleep(remaining)
    bar.update(config.duration_s)
    send_s = time.monotonic() - start
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=FINISH_TIMEOUT_S)
        for task in pending:
            task.cancel()
        tally.failed["unfinished at the end"] += len(pending)
        await asyncio.gather(*pending, return_exceptions=True)
    return scheduled, send_s


async def _drain(tally: Tally, connected: set[str], drain_s: float, bar: Bar) -> float:
    """Wait up to ``drain_s`` until every connected listener has a recommendation per accepted event."""
    start = time.monotonic()
    while (waited := time.monotonic() - start) < drain_s:
        bar.update(waited)
        if all(tally.matched_of[u] >= tally.accepted_of[u] for u in connected):
            break
        await asyncio.sleep(0.05)
    bar.update(drain_s)
    return time.monotonic() - start


def _fill(report: SimulationReport, tally: Tally, connected: set[str], *, watched: bool) -> None:
    latencies, unmatched = match(tally.arrivals, tally.sent_at)
    report.sent, report.accepted = tally.sent, len(tally.accepted)
    report.failed = {k: v for k, v in tally.failed.items() if v}
    report.socket_errors = dict(tally.socket_errors)
    report.received = len(tally.arrivals)
    report.listeners_reached = len({a.user_id for a in tally.arrivals})
    report.matched, report.unmatched = len(latencies), unmatched
    report.outstanding = sum(max(0, tally.accepted_of[u] - tally.matched_of[u]) for u in connected)
    report.latency_ms = latency_summary(latencies)
    report.achieved_rate = tally.sent / report.send_s if report.send_s > 0 else 0.0
    report.accepted_event_ids = list(tally.accepted)
    if not watched:
        report.note = "sockets off (--no-sockets): recommendations were not watched"
    elif not connected:
        report.note = "no socket connected: recommendations were not watched"
    elif report.accepted and not report.received:
        report.note = NO_RECOMMENDER
    if report.failed.get("HTTP 401") or tally.socket_errors.get("closed before hello (4401)"):
        report.note = "the gateway refused our tokens: is CADENZA_TOKEN_SECRET the gateway's?"


def run(settings: Settings, config: SimulationConfig, console: Console | None = None) -> SimulationReport:
    """Load the catalogue and run the simulation (blocking); the report."""
    tracks = load_catalogue(settings)
    return asyncio.run(simulate(settings, config, tracks, console))


def summary(report: SimulationReport) -> Table:
    table = Table(title="cadenza simulate", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for label, value in report.rows():
        table.add_row(label, value)
    return table


def write_report(report: SimulationReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
