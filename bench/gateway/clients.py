"""Bench only: the websocket clients of ``bench.gateway``, in worker processes of their own.

:class:`ClientPool` spawns ``--workers`` processes (:func:`client_worker`), shares the
listeners (``bench0`` …) among them round-robin and drives them over pipes, one command at a
time to all (:meth:`ClientPool.ask`: ``connect``, ``count``, ``trim``, ``record``,
``collect``, ``close``; ``exit`` on :meth:`ClientPool.stop`). In each, :class:`Clients` opens
one websocket per listener to the gateway (``/ws?token=…``, tokens from
:func:`schemas.tokens.issue`, permessage-deflate offered if asked, at most ``concurrency``
handshakes in flight, retried), reads every socket and records, for the Recommendations tagged
:data:`BENCH_TAG`, receipt time - the message's ``ts`` (same machine clock), plus the sockets
the gateway closed, connect errors and the process's CPU seconds. The replies go back to
``bench.gateway.phases`` (phases 1 and 2), whose figures ``bench.gateway.analysis``
computes.

The processes are spawned (no fork of a parent holding Kafka/MongoDB client threads): each
imports this module (``bench.gateway.clients``, found where the parent found it) when it
unpickles :func:`client_worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.gateway.system import TOKEN_TTL_S
from schemas import tokens

CONNECT_ATTEMPTS, OPEN_TIMEOUT_S, ASK_TIMEOUT_S = 5, 30.0, 120.0
RECO_PREFIX = '{"type":"recommendations"'
BENCH_TAG = "bench-gateway"


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
