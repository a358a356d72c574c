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

Run: ``.venv/bin/python -m bench.faults`` (about 15 minutes).

This module is the runner (options, set-up, the order of things, tear-down); the parts are its
siblings in ``bench.faults``: ``cluster`` (the cluster, its waits and what is read back from
it), ``load`` (the listeners), ``schedule`` (the faults and the backlog drains), ``analysis``
(loss, duplicates, each fault's figures) and ``report`` (table, plot); the lag sampler and
the JSON writer are :mod:`bench.common`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, LagSampler, bounded, write_json
from bench.faults.analysis import analyse
from bench.faults.cluster import (
    Cluster,
    history_counts,
    plays_or_query,
    read_causes,
    sample_group,
    wait_lag_zero,
)
from bench.faults.load import Listener, Load
from bench.faults.report import console, plot, table
from bench.faults.schedule import FAULTS, backlog_rate, faults
from infra import supervise
from infra.mongo import client as mongo_client
from infra.settings import get_settings
from schemas.tokens import issue
from schemas.topics import PLAYS

SECRET = "faults-bench-secret-of-at-least-32-chars"


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
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cadenza-faults"))
    parser.add_argument("--port-base", type=int, default=41000)
    parser.add_argument("--tracks", type=bounded(int, 8, 2000), default=64)
    parser.add_argument("--listeners", type=bounded(int, 2, 5000), default=200)
    parser.add_argument("--rate", type=bounded(float, 1, 2000), default=40.0, help="plays/s in total")
    parser.add_argument("--warm-s", type=bounded(float, 1, 600), default=20.0)
    parser.add_argument("--fault-s", type=bounded(float, 1, 600), default=25.0)
    parser.add_argument("--recover-s", type=bounded(float, 1, 600), default=20.0)
    parser.add_argument("--backlog", type=bounded(int, 1, 10**6), default=6000)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "faults.json")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "faults.png")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    parser.add_argument("--skip-faults", action="store_true", help="only the two-vs-one worker drain")
    parser.add_argument(
        "--faults",
        type=lambda v: [f for f in v.split(",") if f],
        default=list(FAULTS),
        help=f"which faults, in order, comma-separated (default: {','.join(FAULTS)})",
    )
    parser.add_argument(
        "--repeat", type=bounded(int, 1, 10), default=1, help="rounds of the faults (worst of N)"
    )
    parser.add_argument(
        "--skip-backlog", action="store_true", help="no two-vs-one worker drain after the faults"
    )
    args = parser.parse_args()
    if unknown := set(args.faults) - set(FAULTS):
        parser.error(f"unknown faults {sorted(unknown)}: choose from {', '.join(FAULTS)}")

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
    sampler = LagSampler(
        settings, 1.0, keep=plays_or_query(settings), extra=sample_group(settings), steady=False
    )
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
        duration = args.warm_s + args.repeat * len(args.faults) * (args.fault_s + args.recover_s + 30) + 120

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
            stored, complete_after = history_counts(settings, list(load.sent))
            result["load"] = analyse(load, marks, stored, complete_after, read_causes(settings))

        if not args.skip_backlog:
            console.rule("two workers vs one (backlog drain)")
            # Only the recommender group works on the backlogs: the streaming queries and the
            # gateways would share the same two cores.
            for name in ("stream-plays", "stream-assign", "gateway-1", "gateway-2"):
                supervise.stop_program(settings, name)
            runs = [
                backlog_rate(cluster, ["recommender-1"], args.backlog, tracks),
                backlog_rate(cluster, ["recommender-1", "recommender-2"], args.backlog, tracks),
            ]
            result["throughput"] = runs
            if runs[0]["plays_per_s"] and runs[1]["plays_per_s"]:
                result["throughput_ratio"] = runs[1]["plays_per_s"] / runs[0]["plays_per_s"]
    finally:
        sampler.stop(10)
        result["timeline"] = sampler.rows
        if not args.keep:
            with contextlib.suppress(Exception):
                supervise.stop(settings)
            with contextlib.suppress(Exception):
                cluster.stack.down()
    if "load" in result:
        plot(args.plot, sampler.rows, sampler.t0, marks, result)
        console.print(table(result))
    write_json(args.out, result)
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
