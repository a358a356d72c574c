"""Benchmark of the gateway: websockets held, Kafka → socket delivery latency, audio ranges.

1. **connections**: ``--connections`` websockets (default 10,000) to ONE gateway process
   (``python -m infra gateway``), opened by ``--workers`` client processes (asyncio +
   ``websockets``, permessage-deflate offered as browsers do, at most
   ``--connect-concurrency`` handshakes in flight in all, transient errors retried).
   Once every socket has its hello and they were held ``--hold`` s: the gateway's RSS
   (``VmRSS`` of /proc/PID/status) and its ``cadenza_gateway_connections``.
   Target: 10,000 held with RSS < 1.5 GiB.
2. **delivery**: the sockets beyond ``--listeners`` (default 5,000) are closed, then
   ``--rate`` Recommendations/s (default 1,000) are produced for ``--duration`` s to
   ``cadenza.recommendations`` (aiokafka, paced on absolute times), each for a random
   connected listener with ``ts`` = send time; latency = receipt on the client socket - ts
   (same machine clock). Also the gateway's own fan-out histogram (``/metrics``).
   Target: p99 < 50 ms, nothing lost.
3. **audio**: ``--audio-seconds`` of GETs of random 64 KiB ``Range``s of a 16 MiB file,
   ``--audio-concurrency`` (32) in flight on keep-alive connections; each answer must be
   a 206 with exactly those 65,536 bytes. Requests/s, MB/s, latency; once with a minimal
   HTTP/1.1 client (``raw``: the gateway saturates first) and once with
   ``httpx.AsyncClient`` (which saturates its own core first), see ``--audio-clients``.

The client processes, the broker, FerretDB and the gateway share this machine's CPUs
(``cpus`` in the JSON; CPU use of the gateway and of the clients is reported). Loopback
only, bounded counts and durations; starts its own stack on free ports in a temporary
data dir and stops everything it started, also on error or Ctrl-C. Prints a table and
writes ``bench/results/gateway.json`` (``--out``).
Run: ``.venv/bin/python bench/gateway.py`` (smoke: ``--connections 500 --listeners 300
--rate 200 --duration 5 --audio-seconds 3 --out bench/results/gateway-smoke.json``)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import random
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from infra.kafka_clients import aio_producer, ensure_topics
from infra.mongo import database, init_db
from infra.prometheus import histogram_delta, parse_metrics
from infra.settings import Settings, child_env
from infra.stack.manager import LocalStack
from infra.stack.process import free_port
from schemas.codec import encode, encode_key
from schemas.events import Recommendation, RecommendedTrack
from schemas.topics import RECOMMENDATIONS

# Run as a script, this file's directory is sys.path[0] and this module (bench/gateway.py)
# would shadow the ``gateway`` package: drop that directory (nothing else is imported from it).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

RESULTS = _HERE / "results" / "gateway.json"
TARGET_CONNECTIONS, TARGET_RSS_MIB, TARGET_P99_MS = 10_000, 1536, 50.0
AUDIO_SIZE, RANGE_SIZE, TRACK_ID, AUDIO_PATH = 16 << 20, 64 << 10, 1, "000/000001.mp3"
TOKEN_TTL_S = 3600
HEARTBEAT_S = 3600.0  # no gateway pings (and no "silent socket" closes) during the bench
CONNECT_ATTEMPTS, OPEN_TIMEOUT_S = 5, 30.0
READY_TIMEOUT_S, DRAIN_TIMEOUT_S, ASK_TIMEOUT_S = 90.0, 15.0, 120.0
RECO_PREFIX = '{"type":"recommendations"'
BENCH_TAG, WARMUP_TAG = "bench-gateway", "bench-warmup"


def bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` within [low, high]."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside [{low:g}, {high:g}]")
        return value

    return parse


def raise_nofile(needed: int) -> int:
    """Raise this process's (and so its children's) open-files soft limit to the hard one."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise SystemExit(f"the gateway would need ~{needed} open files; the hard limit is {hard}")
    return int(hard)


# --- the gateway process ----------------------------------------------------------------------


class GatewayProcess:
    """``python -m infra gateway --port P`` on loopback, configured by environment."""

    def __init__(self, settings: Settings, secret: str, ws_queue_size: int, workdir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "gateway.log"
        env = child_env(
            settings,
            gateway_host="127.0.0.1",
            gateway_port=self.port,
            token_secret=secret,
            log_level="WARNING",
            ws_queue_size=ws_queue_size,
            gateway_heartbeat_s=HEARTBEAT_S,
        )
        with open(self.log, "ab") as log:
            # cwd: the temp dir, so no ``.env`` of the checkout and no shadowing module is seen.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infra", "gateway", "--port", str(self.port)],
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=self.base, timeout=10.0, trust_env=False)

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def wait_ready(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < READY_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.proc.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/readyz").status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"the gateway was not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM (KiB) and Threads from /proc/PID/status; open fds."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
        out["fds"] = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        return out

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        response = self.http.get("/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# --- client worker processes ------------------------------------------------------------------


class Clients:
    """One worker process's websockets, driven by commands from the parent over a pipe."""

    def __init__(self, port: int, secret: str, users: list[str], concurrency: int, deflate: bool) -> None:
        self.port, self.secret, self.users = port, secret, users
        self.concurrency, self.deflate = concurrency, deflate
        self.sockets: dict[str, ClientConnection] = {}
        self.readers: dict[str, asyncio.Task[None]] = {}
        self.leaving: set[str] = set()
        self.errors: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()  # close codes of sockets the gateway closed
        self.latencies: list[float] = []
        self.received = self.warmup = self.retries = 0

    async def serve(self, pipe: Pipe) -> None:
        loop = asyncio.get_running_loop()
        handlers: dict[str, Callable[[Any], Any]] = {
            "connect": self.connect_all,
            "count": self.count,
            "trim": self.trim,
            "record": self.record,
            "collect": self.collect,
            "close": self.close_all,
        }
        try:
            while True:
                try:
                    cmd, arg = await loop.run_in_executor(None, pipe.recv)
                except (EOFError, OSError):  # the parent is gone
                    break
                if cmd == "exit":
                    break
                try:
                    reply = await handlers[cmd](arg)
                except Exception as err:
                    reply = {"error": f"{type(err).__name__}: {err}"}
                pipe.send(reply)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.close_some(list(self.sockets)), 30)

    async def connect_all(self, deadline_s: float) -> dict[str, Any]:
        sem = asyncio.Semaphore(self.concurrency)
        started = time.perf_counter()
        tasks = [asyncio.create_task(self.open(u, sem)) for u in self.users]
        done, pending = await asyncio.wait(tasks, timeout=deadline_s)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            self.errors["gave up at the deadline"] += len(pending)
        ok = sum(1 for t in done if not t.cancelled() and t.exception() is None and t.result())
        return {
            "connected": ok,
            "failed": len(self.users) - ok,
            "retries": self.retries,
            "errors": dict(self.errors),
            "connect_s": time.perf_counter() - started,
            "cpu_s": time.process_time(),
        }

    async def open(self, user: str, sem: asyncio.Semaphore) -> bool:
        from gateway import tokens

        token = tokens.issue(self.secret, user, now=time.time(), ttl_s=TOKEN_TTL_S)
        url = f"ws://127.0.0.1:{self.port}/ws?token={token}"
        for attempt in range(CONNECT_ATTEMPTS):
            if attempt:
                self.retries += 1
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))
            async with sem:
                try:
                    ws = await connect(
                        url,
                        open_timeout=OPEN_TIMEOUT_S,
                        ping_interval=None,
                        close_timeout=5,
                        compression="deflate" if self.deflate else None,
                        proxy=None,
                    )
                except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as err:
                    self.errors[f"connect: {type(err).__name__}: {str(err)[:60]}"] += 1
                    continue
                try:
                    hello = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
                except (TimeoutError, ConnectionClosed, ValueError) as err:
                    self.errors[f"hello: {type(err).__name__}"] += 1
                    with contextlib.suppress(Exception):
                        await ws.close()
                    continue
            if not isinstance(hello, dict) or hello.get("type") != "hello":
                self.errors["first message not a hello"] += 1
                await ws.close()
                return False
            self.sockets[user] = ws
            self.readers[user] = asyncio.create_task(self.read(user, ws))
            return True
        return False

    async def read(self, user: str, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                now = time.time()
                if isinstance(raw, str) and raw.startswith(RECO_PREFIX):
                    data = json.loads(raw)["data"]
                    if data.get("model_version") != BENCH_TAG:
                        self.warmup += 1
                        continue
                    self.received += 1
                    self.latencies.append(now - datetime.fromisoformat(data["ts"]).timestamp())
        if user not in self.leaving:  # the gateway (or the network) closed it
            self.dropped[str(ws.close_code)] += 1
            self.sockets.pop(user, None)

    async def close_some(self, users: list[str]) -> int:
        sem = asyncio.Semaphore(200)

        async def close(user: str) -> None:
            ws = self.sockets.pop(user, None)
            if ws is None:
                return
            self.leaving.add(user)
            async with sem:
                with contextlib.suppress(Exception):
                    await ws.close()
            reader = self.readers.pop(user, None)
            if reader is not None and not reader.done():
                reader.cancel()

        await asyncio.gather(*(close(u) for u in users))
        return len(users)

    async def count(self, _arg: Any) -> dict[str, Any]:
        return {
            "open": len(self.sockets),
            "received": self.received,
            "dropped": sum(self.dropped.values()),
            "cpu_s": time.process_time(),
        }

    async def trim(self, keep: list[str]) -> dict[str, Any]:
        wanted = set(keep)
        await self.close_some([u for u in self.sockets if u not in wanted])
        return {"kept": sorted(self.sockets)}

    async def record(self, _arg: Any) -> dict[str, Any]:
        self.latencies, self.received, self.warmup = [], 0, 0
        # The held sockets live until the end: keep them out of this client's garbage
        # collections, so client pauses do not show up as delivery latency.
        gc.collect()
        gc.freeze()
        return {"cpu_s": time.process_time()}

    async def collect(self, _arg: Any) -> dict[str, Any]:
        return {
            "latencies": self.latencies,
            "received": self.received,
            "warmup": self.warmup,
            "dropped": dict(self.dropped),
            "open": len(self.sockets),
            "cpu_s": time.process_time(),
        }

    async def close_all(self, _arg: Any) -> dict[str, Any]:
        return {"closed": await self.close_some(list(self.sockets))}


def client_worker(
    pipe: Pipe, port: int, secret: str, users: list[str], concurrency: int, deflate: bool
) -> None:
    """Entry point of a client process; Ctrl-C is the parent's to handle (it sends ``exit``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(Clients(port, secret, users, concurrency, deflate).serve(pipe))
    finally:
        pipe.close()


class ClientPool:
    """``workers`` client processes sharing ``users`` round-robin, one socket per user."""

    def __init__(
        self, workers: int, port: int, secret: str, users: list[str], concurrency: int, deflate: bool
    ):
        ctx = mp.get_context("spawn")  # no fork of a parent holding Kafka/MongoDB client threads
        self.users = [users[w::workers] for w in range(workers)]
        self.pipes: list[Pipe] = []
        self.procs: list[BaseProcess] = []
        for w in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=client_worker,
                args=(child, port, secret, self.users[w], max(1, concurrency // workers), deflate),
                name=f"bench-gateway-client-{w}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def ask(
        self, cmd: str, args: list[Any] | None = None, timeout: float = ASK_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        for i, pipe in enumerate(self.pipes):
            pipe.send((cmd, None if args is None else args[i]))
        deadline = time.monotonic() + timeout
        replies = []
        for i, pipe in enumerate(self.pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"client worker {i} did not answer {cmd!r} within {timeout:.0f} s")
            reply = pipe.recv()
            if "error" in reply:
                raise RuntimeError(f"client worker {i}, {cmd!r}: {reply['error']}")
            replies.append(reply)
        return replies

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(("exit", None))
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for pipe in self.pipes:
            pipe.close()
        self.pipes, self.procs = [], []


# --- 1. connections held ----------------------------------------------------------------------


def bench_connections(gw: GatewayProcess, pool: ClientPool, n: int, hold_s: float) -> dict[str, Any]:
    clients_cpu0 = sum(r["cpu_s"] for r in pool.ask("count"))  # also: every worker is up
    before = gw.status()
    deadline_s = 60.0 + n / 20.0
    gw_cpu0, started = gw.cpu_s(), time.perf_counter()
    replies = pool.ask("connect", [deadline_s] * len(pool.pipes), timeout=deadline_s + 60)
    connect_s = time.perf_counter() - started
    gw_cpu = gw.cpu_s() - gw_cpu0
    connected = sum(r["connected"] for r in replies)
    errors: Counter[str] = Counter()
    for r in replies:
        errors.update(r["errors"])
    time.sleep(hold_s)
    counts = pool.ask("count")
    held = sum(r["open"] for r in counts)
    after = gw.status()
    gauge = gw.metrics().get("cadenza_gateway_connections")
    rss_mib = after["VmRSS"] / 1024
    per_socket_kib = (after["VmRSS"] - before["VmRSS"]) / connected if connected else None
    projected = (
        (before["VmRSS"] + per_socket_kib * TARGET_CONNECTIONS) / 1024 if per_socket_kib is not None else None
    )
    return {
        "requested": n,
        "connected": connected,
        "failed": n - connected,
        "retries": sum(r["retries"] for r in replies),
        "errors": dict(errors),
        "held_after_hold": held,
        "hold_s": hold_s,
        "connect_s": connect_s,
        "connects_per_s": connected / connect_s if connect_s else None,
        "connect_gateway_cpu_pct": gw_cpu / connect_s * 100,
        "connect_clients_cpu_pct": (sum(r["cpu_s"] for r in replies) - clients_cpu0) / connect_s * 100,
        "gateway_connections_gauge": gauge,
        "rss_before_mib": before["VmRSS"] / 1024,
        "rss_mib": rss_mib,
        "rss_hwm_mib": after["VmHWM"] / 1024,
        "rss_per_socket_kib": per_socket_kib,
        "rss_projected_10k_mib": projected,
        "gateway_threads": after["Threads"],
        "gateway_fds": after["fds"],
        "target_connections": TARGET_CONNECTIONS,
        "target_rss_mib": TARGET_RSS_MIB,
        "all_held": connected == n and held == n and gauge == n,
        "target_met": n >= TARGET_CONNECTIONS and connected == n and held == n and rss_mib < TARGET_RSS_MIB,
    }


# --- 2. Kafka -> socket delivery --------------------------------------------------------------


def template() -> Recommendation:
    items = [
        RecommendedTrack(
            track_id=i + 1,
            score=round(1.0 - i * 0.05, 3),
            reason="close to what you just played",
            cluster=i % 4,
            title=f"Bench track {i + 1}",
            artist="Bench",
        )
        for i in range(10)
    ]
    return Recommendation(user_id="template", items=items, model_version=BENCH_TAG)


async def produce(
    settings: Settings, users: list[str], rate: float, seconds: float, tag: str
) -> dict[str, Any]:
    """``rate`` messages/s for ``seconds`` to random ``users``, each sent at its absolute time."""
    base = template().model_copy(update={"model_version": tag})
    picks = np.random.default_rng(len(users)).integers(0, len(users), int(rate * seconds))
    topic = settings.topic(RECOMMENDATIONS)
    p = aio_producer(settings, linger_ms=1, client_id="bench-gateway")
    await p.start()
    try:
        futures = []
        behind = 0.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i, pick in enumerate(picks):
            delay = started + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
            user = users[int(pick)]
            message = base.model_copy(update={"user_id": user, "ts": datetime.now(UTC)})
            futures.append(await p.send(topic, key=encode_key(user), value=encode(message)))
        elapsed = loop.time() - started
        await asyncio.gather(*futures)  # every record acknowledged, or raise
    finally:
        await p.stop()
    return {"sent": len(picks), "send_s": elapsed, "max_behind_ms": behind * 1e3}


def bench_delivery(
    settings: Settings, gw: GatewayProcess, pool: ClientPool, listeners: int, rate: float, duration: float
) -> dict[str, Any]:
    keep = {f"bench{i}" for i in range(listeners)}
    replies = pool.ask("trim", [[u for u in users if u in keep] for users in pool.users])
    connected = [u for r in replies for u in r["kept"]]
    if not connected:
        raise RuntimeError("no listener is connected")
    time.sleep(1.0)
    warm = asyncio.run(produce(settings, connected, min(rate, 500.0), 1.0, WARMUP_TAG))
    time.sleep(1.0)
    cpu_clients = sum(r["cpu_s"] for r in pool.ask("record"))
    m0, cpu0, wall0 = gw.metrics(), gw.cpu_s(), time.monotonic()
    sent = asyncio.run(produce(settings, connected, rate, duration, BENCH_TAG))
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if sum(r["received"] for r in pool.ask("count")) >= sent["sent"]:
            break
        time.sleep(0.25)
    wall = time.monotonic() - wall0
    cpu_gw = gw.cpu_s() - cpu0
    m1, rss_after = gw.metrics(), gw.status()["VmRSS"] / 1024
    got = pool.ask("collect")
    lat = np.asarray([x for r in got for x in r["latencies"]]) * 1e3
    received = sum(r["received"] for r in got)
    dropped: Counter[str] = Counter()
    for r in got:
        dropped.update(r["dropped"])
    pct = {q: float(np.percentile(lat, q)) if lat.size else None for q in (50, 95, 99)}
    p99 = pct[99]
    return {
        "listeners_requested": listeners,
        "listeners": len(connected),
        "rate": rate,
        "duration_s": duration,
        "warmup_sent": warm["sent"],
        **sent,
        "achieved_rate": sent["sent"] / sent["send_s"],
        "received": received,
        "lost": sent["sent"] - received,
        "sockets_dropped_by_gateway": dict(dropped),
        "p50_ms": pct[50],
        "p95_ms": pct[95],
        "p99_ms": p99,
        "max_ms": float(lat.max()) if lat.size else None,
        "gateway_fanout": histogram_delta(m0, m1, "cadenza_gateway_fanout_seconds"),
        "gateway_feed_delay": histogram_delta(m0, m1, "cadenza_gateway_feed_delay_seconds"),
        "gateway_feed_messages": m1.get('cadenza_gateway_feed_messages_total{topic="recommendations"}', 0.0)
        - m0.get('cadenza_gateway_feed_messages_total{topic="recommendations"}', 0.0),
        "gateway_slow_disconnects": m1.get("cadenza_gateway_slow_disconnects_total", 0.0)
        - m0.get("cadenza_gateway_slow_disconnects_total", 0.0),
        "gateway_cpu_pct": cpu_gw / wall * 100,
        "gateway_rss_after_mib": rss_after,
        "clients_cpu_pct": (sum(r["cpu_s"] for r in got) - cpu_clients) / wall * 100,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": p99 is not None and p99 < TARGET_P99_MS and received == sent["sent"],
    }


# --- 3. audio ranges --------------------------------------------------------------------------


def prepare_audio(settings: Settings) -> bytes:
    data = os.urandom(AUDIO_SIZE)
    file = settings.audio_root / AUDIO_PATH
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    db = database(settings)
    db.tracks.replace_one(
        {"_id": TRACK_ID}, {"_id": TRACK_ID, "title": "bench", "audio_path": AUDIO_PATH}, upsert=True
    )
    db.client.close()
    return data


Fetch = Callable[[int], Awaitable[tuple[int, bytes]]]


def check(status: int, body: bytes, expected: bytes) -> str | None:
    """None if a range answer is right, else what is wrong with it."""
    if status != 206:
        return f"status {status}"
    if len(body) != RANGE_SIZE:
        return f"{len(body)} bytes"
    return None if body == expected else "wrong bytes"


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client for the range GETs: a few µs of CPU per request,
    so the gateway, not the client, is what saturates (httpx needs a core for ~250 req/s)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, first: int) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = (
            f"GET /audio/{TRACK_ID} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nRange: bytes={first}-{first + RANGE_SIZE - 1}\r\n\r\n"
        )
        self.writer.write(request.encode("ascii"))
        try:
            head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
            body = await self.reader.readexactly(int(fields["content-length"]))
        except (OSError, EOFError, KeyError, ValueError, asyncio.LimitOverrunError):
            self.close()
            raise
        if fields.get("connection", "").lower() == "close":
            self.close()
        return int(head[0].split()[1]), body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def audio_load(
    client: str, gw: GatewayProcess, token: str, data: bytes, seconds: float, concurrency: int
) -> dict[str, Any]:
    """``concurrency`` loops of random 64 KiB range GETs for ``seconds`` (after a 1 s warm-up)."""
    latencies: list[float] = []
    bad: Counter[str] = Counter()
    auth = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0, headers=auth, trust_env=False) as pool:

        async def via_httpx(first: int) -> tuple[int, bytes]:
            last = first + RANGE_SIZE - 1
            r = await pool.get(f"{gw.base}/audio/{TRACK_ID}", headers={"Range": f"bytes={first}-{last}"})
            return r.status_code, r.content

        async def loop(seed: int, deadline: float, record: bool) -> None:
            rng = random.Random(seed)
            raw = RawHttp(gw.port, token)
            fetch: Fetch = via_httpx if client == "httpx" else raw.get
            try:
                while time.perf_counter() < deadline:
                    first = rng.randrange(0, len(data) - RANGE_SIZE + 1)
                    started = time.perf_counter()
                    try:
                        status, body = await asyncio.wait_for(fetch(first), 30.0)
                    except (OSError, EOFError, KeyError, ValueError, httpx.HTTPError) as err:
                        bad[type(err).__name__] += 1
                        continue
                    took = time.perf_counter() - started
                    problem = check(status, body, data[first : first + RANGE_SIZE])
                    if problem is not None:
                        bad[problem] += 1
                    elif record:
                        latencies.append(took)
            finally:
                raw.close()

        warm_until = time.perf_counter() + 1.0
        await asyncio.gather(*(loop(-1 - i, warm_until, False) for i in range(concurrency)))
        if bad:
            raise RuntimeError(f"audio requests fail: {dict(bad)}")
        cpu0, gw_cpu0 = time.process_time(), gw.cpu_s()
        started = time.perf_counter()
        await asyncio.gather(*(loop(i, started + seconds, True) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
        gw_cpu = gw.cpu_s() - gw_cpu0
    lat = np.asarray(latencies) * 1e3
    return {
        "client": client,
        "concurrency": concurrency,
        "seconds": seconds,
        "requests": len(latencies),
        "errors": dict(bad),
        "elapsed_s": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "mb_per_s": len(latencies) * RANGE_SIZE / elapsed / 1e6,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "gateway_cpu_pct": gw_cpu / elapsed * 100,
        "client_cpu_pct": (time.process_time() - cpu0) / elapsed * 100,
    }


def bench_audio(
    gw: GatewayProcess, secret: str, data: bytes, seconds: float, concurrency: int, client: str
) -> dict[str, Any]:
    from gateway import tokens

    token = tokens.issue(secret, "bench-audio", now=time.time(), ttl_s=TOKEN_TTL_S)
    return {
        "file_bytes": len(data),
        "range_bytes": RANGE_SIZE,
        **asyncio.run(audio_load(client, gw, token, data, seconds, concurrency)),
    }


# --- main -------------------------------------------------------------------------------------


def interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--connections", type=bounded(int, 1, 15_000), default=10_000)
    parser.add_argument("--listeners", type=bounded(int, 1, 15_000), default=5_000)
    parser.add_argument("--rate", type=bounded(float, 1, 5_000), default=1000.0, help="messages/s")
    parser.add_argument("--duration", type=bounded(float, 1, 120), default=20.0, help="seconds")
    parser.add_argument("--audio-seconds", type=bounded(float, 1, 120), default=10.0)
    parser.add_argument("--audio-concurrency", type=bounded(int, 1, 256), default=32)
    parser.add_argument(
        "--audio-clients",
        nargs="+",
        choices=("raw", "httpx"),
        default=["raw", "httpx"],
        help="raw: minimal HTTP/1.1 keep-alive client (gateway-bound); httpx: AsyncClient (client-bound)",
    )
    parser.add_argument("--workers", type=bounded(int, 1, 8), default=4, help="client processes")
    parser.add_argument("--connect-concurrency", type=bounded(int, 1, 1000), default=100)
    parser.add_argument("--hold", type=bounded(float, 0, 60), default=5.0, help="seconds")
    parser.add_argument("--ws-queue-size", type=bounded(int, 1, 10_000), default=64)
    parser.add_argument(
        "--deflate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="offer permessage-deflate like browsers do",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.listeners = min(args.listeners, args.connections)
    nofile = raise_nofile(args.connections + 500)
    # Ctrl-C and SIGTERM raise at once, also inside asyncio.run (which would otherwise turn
    # Ctrl-C into a cancellation that aiokafka's stop() can swallow), so every `finally`
    # below stops what it started.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    secret = secrets.token_urlsafe(24)
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "nofile_limit": nofile,
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory(prefix="cadenza-bench-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            ferretdb_port=free_port(),
            topic_prefix="bgw.",
            mongodb_db="bench_gateway",
            fma_dir=None,
        )
        stack = LocalStack(settings)
        gw: GatewayProcess | None = None
        pool: ClientPool | None = None
        try:
            stack.up()
            ensure_topics(settings)
            db = database(settings)
            init_db(db)
            db.client.close()
            data = prepare_audio(settings)
            gw = GatewayProcess(settings, secret, args.ws_queue_size, Path(tmp))
            results["gateway_ready_s"] = gw.wait_ready()
            users = [f"bench{i}" for i in range(args.connections)]
            pool = ClientPool(args.workers, gw.port, secret, users, args.connect_concurrency, args.deflate)
            results["connections"] = bench_connections(gw, pool, args.connections, args.hold)
            results["delivery"] = bench_delivery(settings, gw, pool, args.listeners, args.rate, args.duration)
            pool.ask("close", timeout=300)
            pool.stop()
            pool = None
            results["audio"] = {
                client: bench_audio(gw, secret, data, args.audio_seconds, args.audio_concurrency, client)
                for client in args.audio_clients
            }
            if gw.proc.poll() is not None:
                raise RuntimeError(f"the gateway died during the bench:\n{gw.log_tail()}")
        except Exception:
            if gw is not None:
                code = gw.proc.poll()
                state = "running" if code is None else f"exited with code {code}"
                print(f"gateway ({state}) log tail:\n{gw.log_tail()}", file=sys.stderr)
            raise
        finally:
            if pool is not None:
                pool.stop()
            if gw is not None:
                gw.stop()
            stack.down()
    results["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print_table(results)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def print_table(r: dict[str, Any]) -> None:
    c, d = r["connections"], r["delivery"]
    t = Table(title=f"Gateway ({r['cpus']} CPUs shared by clients, broker, FerretDB and gateway)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    t.add_row(
        "websockets held by one gateway",
        f"{c['held_after_hold']:,} / {c['requested']:,} ({c['failed']} failed, {c['retries']} retries)",
        f">= {TARGET_CONNECTIONS:,}",
    )
    t.add_row("  connect time", f"{c['connect_s']:.1f} s ({c['connects_per_s']:,.0f}/s)", "")
    t.add_row(
        "  CPU while connecting: gateway / clients",
        f"{c['connect_gateway_cpu_pct']:.0f}% / {c['connect_clients_cpu_pct']:.0f}%",
        "",
    )
    t.add_row("  cadenza_gateway_connections", f"{c['gateway_connections_gauge']:,.0f}", "")
    t.add_row(
        "  gateway RSS",
        f"{c['rss_mib']:,.0f} MiB (idle {c['rss_before_mib']:,.0f})",
        f"< {TARGET_RSS_MIB:,} MiB",
    )
    if c["rss_per_socket_kib"] is not None:
        t.add_row(
            "  per socket / projected at 10,000",
            f"{c['rss_per_socket_kib']:.1f} KiB / {c['rss_projected_10k_mib']:,.0f} MiB",
            "",
        )
    t.add_row(f"delivery, {d['listeners']:,} listeners, {d['rate']:,.0f} msg/s: p50", ms(d["p50_ms"]), "")
    t.add_row("  p95", ms(d["p95_ms"]), "")
    t.add_row("  p99", ms(d["p99_ms"]), f"< {TARGET_P99_MS:.0f} ms")
    t.add_row("  max", ms(d["max_ms"]), "")
    t.add_row("  received / sent (lost)", f"{d['received']:,} / {d['sent']:,} ({d['lost']:,})", "all")
    t.add_row(
        "  producer rate achieved (most behind schedule)",
        f"{d['achieved_rate']:,.0f} msg/s ({d['max_behind_ms']:.1f} ms)",
        "",
    )
    f = d["gateway_fanout"]
    t.add_row(
        "  gateway fan-out (queue -> sent) p50 / p99 <=",
        f"{ms(f['p50_le_ms'])} / {ms(f['p99_le_ms'])}",
        "",
    )
    f = d["gateway_feed_delay"]
    t.add_row(
        "  Kafka -> gateway read (feed delay) p50 / p99 <=",
        f"{ms(f['p50_le_ms'])} / {ms(f['p99_le_ms'])}",
        "",
    )
    t.add_row("  CPU: gateway / clients", f"{d['gateway_cpu_pct']:.0f}% / {d['clients_cpu_pct']:.0f}%", "")
    for a in r["audio"].values():
        t.add_row(
            f"audio 64 KiB ranges, {a['concurrency']} in flight, {a['client']} client",
            f"{a['requests_per_s']:,.0f} req/s ({a['mb_per_s']:,.0f} MB/s)",
            "",
        )
        t.add_row("  p50 / p99", f"{ms(a['p50_ms'])} / {ms(a['p99_ms'])}", "")
        t.add_row("  errors (206 + exact 65,536 bytes checked)", str(sum(a["errors"].values())), "0")
        t.add_row("  CPU: gateway / client", f"{a['gateway_cpu_pct']:.0f}% / {a['client_cpu_pct']:.0f}%", "")
    (Console() if sys.stdout.isatty() else Console(width=120)).print(t)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop or 'SIGINT'}); everything started was stopped", file=sys.stderr)
        sys.exit(130)
