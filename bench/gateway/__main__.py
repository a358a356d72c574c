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
Run: ``.venv/bin/python -m bench.gateway`` (smoke: ``--connections 500 --listeners 300
--rate 200 --duration 5 --audio-seconds 3 --out bench/results/gateway-smoke.json``)

This module is the runner (options, set-up, the order of things, tear-down); the parts are its
siblings in ``bench.gateway``: ``system`` (the gateway process and what is read from it),
``clients`` (the websocket client processes), ``phases`` (connections held, delivery),
``audio`` (audio ranges), ``analysis`` (the figures) and ``report`` (the table); the
temporary stack, the JSON writer and the open-files limit are :mod:`bench.common`'s.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, bounded, raise_nofile, run, temporary_stack, write_json
from bench.gateway.audio import bench_audio, prepare_audio
from bench.gateway.clients import ClientPool
from bench.gateway.phases import bench_connections, bench_delivery
from bench.gateway.report import print_table
from bench.gateway.system import GatewayProcess, clients_option
from infra.kafka_clients import ensure_topics
from infra.mongo import database, init_db


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--connections", type=bounded(int, 1, 15_000), default=10_000)
    parser.add_argument("--listeners", type=bounded(int, 1, 15_000), default=5_000)
    parser.add_argument("--rate", type=bounded(float, 1, 5_000), default=1000.0, help="messages/s")
    parser.add_argument("--duration", type=bounded(float, 1, 120), default=20.0, help="seconds")
    parser.add_argument("--audio-seconds", type=bounded(float, 1, 120), default=10.0)
    parser.add_argument("--audio-concurrency", type=bounded(int, 1, 256), default=32)
    clients_option(parser, "--audio-clients")
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
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "gateway.json")
    args = parser.parse_args()
    args.listeners = min(args.listeners, args.connections)
    nofile, needed = raise_nofile(), args.connections + 500
    if nofile != resource.RLIM_INFINITY and needed > nofile:
        raise SystemExit(f"the gateway would need ~{needed} open files; the hard limit is {nofile}")
    # Ctrl-C and SIGTERM raise at once, also inside asyncio.run (bench.common.run), so every
    # `finally` below stops what it started; the stack is brought down when the `with` ends.
    secret = secrets.token_urlsafe(24)
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "nofile_limit": nofile,
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    with temporary_stack(up=False, topic_prefix="bgw.", mongodb_db="bench_gateway", fma_dir=None) as (
        stack,
        tmp,
    ):
        settings = stack.settings
        gw: GatewayProcess | None = None
        pool: ClientPool | None = None
        try:
            stack.up()
            ensure_topics(settings)
            db = database(settings)
            init_db(db)
            db.client.close()
            data = prepare_audio(settings)
            gw = GatewayProcess(settings, secret, args.ws_queue_size, tmp)
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
    results["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(args.out, results)
    print_table(results)


if __name__ == "__main__":
    run(main)
