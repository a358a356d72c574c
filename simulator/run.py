"""``cadenza simulate``: simulated listeners playing through the gateway or straight to Kafka.

Sources: MongoDB ``tracks`` (the catalogue, read once), :mod:`simulator.plays` (what
each listener does and when) and the gateway's ``/ws`` (:mod:`simulator.sockets`: the
recommendations pushed to each listener, with the play that caused them, and the
answers to its plays). Destinations, through :mod:`simulator.senders`, with ``--via
gateway`` (one token per listener, signed here with :func:`schemas.tokens.issue` and
``CADENZA_TOKEN_SECRET``) the gateway: ``play`` frames on each listener's own ``/ws``
(``--plays-via ws``, the default) or ``POST /api/plays`` (``--plays-via http``, and
always with ``--no-sockets``: there is no socket to send on); with ``--via kafka``
``cadenza.plays`` itself. Also a rich progress bar (:mod:`simulator.progress`) and the
:class:`SimulationReport` (:mod:`simulator.report`: its summary table, and ``--out``
writes it as JSON).

Sequence: sockets first (each listener's ``/ws``, bounded connect concurrency, pings
answered), then the events on their absolute schedule for ``duration_s`` seconds
(bounded sends in flight; each listener's events stay in order: over HTTP one request at
a time per listener, over the socket and to Kafka handed over in schedule order, which the
gateway and the producer keep), then up to ``drain_s`` seconds for the recommendations
still expected. Latency of a recommendation = its arrival on the socket - the time just
before its cause was sent (one machine, one clock).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import httpx
from rich.console import Console

from infra.settings import Settings
from schemas import tokens
from schemas.events import PlayKind
from simulator import choice, plays
from simulator.closed_loop import Choices, closed_loop, compression
from simulator.errors import SimulationError
from simulator.progress import Bar
from simulator.report import SimulationReport, Tally, fill
from simulator.senders import GatewaySender, KafkaSender, SocketSender
from simulator.sockets import Sockets

Via = Literal["gateway", "kafka"]
#: How plays reach the gateway: frames on each listener's websocket, or POST /api/plays.
PlaysVia = Literal["ws", "http"]
Sender = GatewaySender | KafkaSender | SocketSender
#: Longest wait for the sends still in flight when the schedule ends.
FINISH_TIMEOUT_S: Final = 30.0
TICK_S: Final = 0.2


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; see ``cadenza simulate --help``."""

    listeners: int = 20
    rate: float = 5.0
    duration_s: float = 60.0
    via: Via = "gateway"
    sockets: bool = True
    #: With ``via="gateway"``: ``ws`` sends plays on the sockets (over HTTP when ``sockets`` is off).
    plays_via: PlaysVia = "ws"
    seed: int | None = None
    drain_s: float = 10.0
    url: str | None = None
    concurrency: int = 64
    connect_concurrency: int = 32
    progress: bool = True
    model: plays.ListenerModel = field(default_factory=plays.ListenerModel)
    #: Closed loop (needs the sockets): each listener picks its next track from the "Up next"
    #: it was pushed, or browses (simulator.choice); off: events drawn in advance (plays).
    choose: bool = True
    choice_model: choice.ChoiceModel = field(default_factory=choice.ChoiceModel)

    def __post_init__(self) -> None:
        if self.listeners < 1 or self.concurrency < 1 or self.connect_concurrency < 1:
            raise ValueError("listeners and concurrencies must be at least 1")
        if not self.rate > 0 or not self.duration_s > 0 or self.drain_s < 0:
            raise ValueError("rate and duration must be positive, drain not negative")
        if self.via not in ("gateway", "kafka"):
            raise ValueError(f"--via is 'gateway' or 'kafka', not {self.via!r}")
        if self.plays_via not in ("ws", "http"):
            raise ValueError(f"--plays-via is 'ws' or 'http', not {self.plays_via!r}")

    @property
    def plays_path(self) -> str:
        """Where the plays go: ``ws``, ``http`` (the gateway) or ``kafka``."""
        if self.via == "kafka":
            return "kafka"
        return "ws" if self.plays_via == "ws" and self.sockets else "http"


def user_ids(tag: str, count: int) -> list[str]:
    return [f"sim-{tag}-{i}" for i in range(count)]


def run_tag(seed: int | None) -> str:
    """``s<seed>`` for a seeded run (the same listeners again), else random hex."""
    return f"s{seed}" if seed is not None else secrets.token_hex(3)


def gateway_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.gateway_host in ("0.0.0.0", "::") else settings.gateway_host
    return f"http://{host}:{settings.gateway_port}"


# --- catalogue --------------------------------------------------------------------------------


def load_catalogue(settings: Settings) -> list[plays.Track]:
    """Every track of MongoDB ``tracks`` with its genre and duration; SimulationError if none."""
    from pymongo.errors import PyMongoError

    from infra.mongo import client

    mongo = client(settings)
    try:
        docs = mongo[settings.mongodb_db].tracks.find({}, {"genre_top": 1, "duration_s": 1})
        rows = [
            plays.track(int(d["_id"]), str(d["genre_top"]) if d.get("genre_top") else None, _seconds(d))
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


async def simulate(
    settings: Settings,
    config: SimulationConfig,
    tracks: list[plays.Track],
    console: Console | None = None,
) -> SimulationReport:
    """Run the simulation against the stack of ``settings``; the report."""
    seed = config.seed if config.seed is not None else secrets.randbits(32)
    tag = run_tag(config.seed)
    base = (config.url or gateway_url(settings)).rstrip("/")
    users = user_ids(tag, config.listeners)
    report = SimulationReport(tag, seed, config.via, base, config.listeners, config.rate, config.duration_s)
    report.plays_via = config.plays_path
    catalogue = plays.build_catalogue(tracks, seed=seed, zipf_exponent=config.model.zipf_exponent)
    tally = Tally()
    sockets = Sockets(base, tally, config.connect_concurrency)
    choices = Choices()
    events: Iterator[plays.Scheduled]
    if config.choose and config.sockets:
        report.listening = "closed"
        events = closed_loop(
            catalogue,
            config.listeners,
            config.rate,
            seed=seed,
            latest=lambda who: sockets.latest.get(users[who], ()),
            model=config.choice_model,
            choices=choices,
        )
    else:
        events = plays.schedule(catalogue, config.listeners, config.rate, seed=seed, model=config.model)
    secret = settings.token_secret.get_secret_value()
    ttl = int(config.duration_s + config.drain_s + 3600)
    tokens_of = {u: tokens.issue(secret, u, now=time.time(), ttl_s=ttl) for u in users}
    if config.via == "gateway" or config.sockets:
        await check_gateway(base)
    sender: Sender
    if config.plays_path == "ws":
        sender = SocketSender(sockets, tally)
    elif config.plays_path == "http":
        sender = GatewaySender(base, tokens_of, tally, config.concurrency)
    else:
        sender = KafkaSender(settings, tally)
    await sender.start()
    try:
        with Bar(console if config.progress else None, tally) as bar:
            if config.sockets:
                bar.stage("connecting sockets", float(config.listeners))
                await sockets.connect_all(tokens_of, bar)
                report.sockets = len(sockets.open)
            bar.stage("sending", config.duration_s)
            report.scheduled, report.send_s = await _send_all(
                sender, users, plays.until(events, config.duration_s), config, bar
            )
            if config.sockets and sockets.open:
                bar.stage("waiting for recommendations", config.drain_s)
                report.drain_s = await _drain(tally, set(sockets.open), config.drain_s, bar)
    finally:
        await sockets.close_all()
        await sender.stop()
    fill(report, tally, set(sockets.open), watched=config.sockets)
    if report.listening == "closed":
        report.choices = choices.to_dict(tally.started_by_source())
        report.time_compression = compression(choices, report.send_s)
    return report


async def _send_all(
    sender: Sender,
    users: list[str],
    events: Iterator[plays.Scheduled],
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
        if event.source is not None and event.kind is PlayKind.PLAY:
            tally.play_sources[event_id] = event.source
        if isinstance(sender, KafkaSender | SocketSender):  # handed over in order, answered later
            try:
                ack = await sender.send(user, event, event_id)
            except Exception as err:  # refused outright (a closed producer, no open socket)
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


def run(settings: Settings, config: SimulationConfig, console: Console | None = None) -> SimulationReport:
    """Load the catalogue and run the simulation (blocking); the report."""
    tracks = load_catalogue(settings)
    return asyncio.run(simulate(settings, config, tracks, console))


def write_report(report: SimulationReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
