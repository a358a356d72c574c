"""End-to-end benchmark: a play sent on a listener's websocket -> its recommendation on that websocket.

The whole system, brought up once like ``tests/e2e/conftest.py`` (and ``cadenza demo``): its
own local stack (Kafka + FerretDB) on free ports in a temporary data dir, the sample
catalogue (``--tracks``/``--genres``), the ETL, a trained and promoted model, then both
Structured Streaming jobs, a recommender worker and the gateway under supervisord
(:mod:`infra.supervise`). Loopback only.

1. **ours**, once per rate of ``--rates`` (default 200 and 500 plays/s): ``cadenza simulate``'s
   runner (:func:`simulator.run.simulate`, ``--via gateway``) with ``--listeners``
   (default 1,000) websockets for ``--duration`` s (seed ``--seed`` + phase index, so each
   phase has its own listeners), in a child process (its own core and GIL, as a client fleet
   would be). Latency = arrival of the recommendation on the listener's socket - the time
   just before its ``play`` frame is sent on the listener's websocket (the simulator's
   default ``--plays-via ws``; one machine, one clock); the runner's report only has
   percentiles, so the child wraps the runner's ``Tally`` (a subclass that keeps a reference,
   nothing else changed) to read each event's send time and the arrivals. One such process
   is one event loop on one core; ``--sim-procs N`` shares the listeners and the rate among
   N of them (a phase is flagged ``client_saturated`` when a simulator process is near 100%
   CPU or the rate fell short). **Lost plays**: plays not accepted, accepted plays whose
   recommendation never arrived (``--drain`` s allowed after the schedule), and accepted
   plays missing from the ``plays`` history collection ``--settle`` s after the phase (the
   Spark job writes it). Target at 500 plays/s: p99 < 150 ms and zero lost.
2. **consumer lag**: :func:`infra.offsets.lag_rows` every ``--lag-every`` s in a thread, summed
   per consumer (the recommender group and each Spark query); after each phase, the seconds
   until each is back to 0 (within ``--settle`` s?). The recommender commits every second or
   so; a Spark query's offsets are those of its latest *planned* micro-batch
   (``offsets/<batch>``), so its lag reads 0 while that batch is still being written: the
   time until the history holds every play (``history_complete_by_s``, read once the lags
   are 0) is the end-to-end figure for the plays job.
3. **naive request-time path**, same run, after the phases: ``--naive-plays`` plays paced at
   ``--naive-rate``/s, one at a time (slower answers lower the rate: ``achieved_rate``), by
   the first phase's listeners (who have a history): ``POST /api/plays`` to the gateway, then
   what a naive gateway handler would do to answer the player's "what next?" from MongoDB at
   request time, done here in the bench process with pymongo (no second HTTP hop, which
   favours the naive path): read the listener's 20 most recent plays from ``plays``, the
   played track's cluster and feature vector from ``tracks``, every track of that cluster
   with its feature vector, scan them with numpy for the nearest (Euclidean on the 518
   features), skip recent ones, return 10. Latency = POST + that work (each step timed);
   ratio naive / ours at p50 and p99 per rate. (At the sample catalogue's size a cluster
   holds a few dozen tracks; ``bench.recommender`` times the scan at 106k tracks.)

A warm-up (a few listeners, a few plays, until every play gets its recommendation and reaches
the history) runs first and is not measured. CPU use of each supervised program (with its
Spark JVM and Python workers) and of the simulator is reported per phase: everything shares
this machine's CPUs (``cpus`` in the JSON). Prints a table, writes ``bench/results/e2e.json``
(``--out``) and ``bench/results/e2e.png`` (``--plot``: latency over time per phase, and
consumer lag over time). Stops everything it started (supervisord and its programs, the
stack), also on error or Ctrl-C.
Run: ``.venv/bin/python -m bench.e2e`` (~15-20 min: sample data, ETL and training first;
``--sim-procs 2`` if one simulator process saturates). Smoke (~6 min): ``--tracks 48
--listeners 50 --rates 20 40 --duration 8 --naive-plays 30 --out /tmp/e2e-smoke.json --plot
/tmp/e2e-smoke.png``

This module is the runner (options, set-up, the order of things, tear-down); the parts are its
siblings in ``bench.e2e``: ``system`` (stack, stages, supervised programs, CPU), ``load`` (the
simulator's child processes), ``phases`` (warm-up and measured phases), ``naive`` (the naive
path), ``analysis`` (the figures) and ``report`` (table, plot); the lag sampler, the
temporary stack and the JSON writer are :mod:`bench.common`'s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, LagSampler, bounded, ms, raise_nofile, run, temporary_stack, write_json
from bench.e2e.analysis import lag_summary, outcome
from bench.e2e.naive import run_naive
from bench.e2e.phases import run_phase, warm_up
from bench.e2e.report import plot, print_table, say
from bench.e2e.system import System
from infra.demo import wait_ready
from infra.stack.process import free_port

READY_TIMEOUT_S, WORKER_TIMEOUT_S = 300.0, 240.0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tracks", type=bounded(int, 8, 2000), default=240, help="sample catalogue size")
    parser.add_argument("--genres", type=bounded(int, 1, 16), default=8)
    parser.add_argument("--k-range", default="6:12:2", help="model train --k-range (as cadenza demo)")
    parser.add_argument("--listeners", type=bounded(int, 1, 5000), default=1000, help="websockets")
    parser.add_argument(
        "--rates", type=bounded(float, 1, 2000), nargs="+", default=[200.0, 500.0], help="plays/s"
    )
    parser.add_argument("--duration", type=bounded(float, 1, 120), default=30.0, help="seconds per rate")
    parser.add_argument(
        "--drain", type=bounded(float, 1, 120), default=30.0, help="s to wait for recommendations"
    )
    parser.add_argument("--settle", type=bounded(float, 5, 300), default=60.0, help="s for history and lag")
    parser.add_argument("--seed", type=bounded(int, 0, 2**31), default=7)
    parser.add_argument(
        "--sim-procs", type=bounded(int, 1, 8), default=1, help="simulator processes sharing the load"
    )
    parser.add_argument("--lag-every", type=bounded(float, 0.2, 10), default=1.0, help="seconds")
    parser.add_argument("--naive-plays", type=bounded(int, 0, 5000), default=200)
    parser.add_argument("--naive-rate", type=bounded(float, 0.5, 200), default=20.0, help="plays/s")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "e2e.json")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "e2e.png")
    args = parser.parse_args()
    args.out, args.plot = args.out.resolve(), args.plot.resolve()
    nofile = raise_nofile()
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "nofile_limit": nofile,
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    started = time.monotonic()
    # Ctrl-C and SIGTERM raise at once (bench.common.run), so every `finally` below stops what
    # it started; the stack is brought down last, when the `with` ends.
    with temporary_stack(
        "cadenza-bench-e2e-",
        data="data",
        up=False,
        topic_prefix="be2e.",
        mongodb_db="bench_e2e",
        gateway_port=free_port(),
        faust_port=free_port(),
        token_secret=uuid.uuid4().hex,
        demo_signin=True,
        spark_master="local[2]",
        spark_driver_memory="1g",
        fma_dir=None,
    ) as (stack, tmp):
        settings = stack.settings
        # The worker settings an A/B run changes (CADENZA_FAUST_* in this process's environment).
        results["recommender"] = {
            "faust_fetch_wait_ms": settings.faust_fetch_wait_ms,
            "faust_store": settings.faust_store,
        }
        system = System(stack, tmp)
        sampler: LagSampler | None = None
        phases: list[dict[str, Any]] = []
        naive: dict[str, Any] | None = None
        try:
            say("local stack …")
            system.stack.up()
            sample = settings.data_dir / "sample-fma"
            system.cadenza(
                "sample-data", str(sample), "--tracks", str(args.tracks), "--genres", str(args.genres)
            )
            system.cadenza("etl", "run", "--fma-dir", str(sample))
            system.cadenza("model", "train", "--k-range", args.k_range, "--promote")
            say("streaming jobs, recommender and gateway (supervisord) …")
            system.start_programs()
            wait_ready(settings, timeout=READY_TIMEOUT_S)
            deadline = time.monotonic() + WORKER_TIMEOUT_S
            while not system.worker_up():
                if time.monotonic() > deadline:
                    raise RuntimeError("the recommender worker's /metrics never answered")
                time.sleep(1.0)
            results["setup_s"] = time.monotonic() - started
            sampler = LagSampler(settings, args.lag_every)
            sampler.start()
            say("warm-up …")
            results["warm_up"] = warm_up(system, args, sampler)
            for index, rate in enumerate(args.rates):
                say(f"{rate:g} plays/s, {args.listeners:,} listeners, {args.duration:g} s …")
                phases.append(run_phase(system, sampler, args, index, rate))
                ph = phases[-1]
                say(
                    f"  p50 {ms(ph['p50_ms'])}, p99 {ms(ph['p99_ms'])}, accepted {ph['accepted']}, "
                    f"lost {ph['lost']}"
                )
            if args.naive_plays and phases:
                say(f"naive request-time path, {args.naive_plays} plays at {args.naive_rate:g}/s …")
                naive = run_naive(system, phases[0]["users"], args)
            sampler.stop()
        except BaseException:
            if system.supervised:
                print(f"program log tails:\n{system.log_tails()}", file=sys.stderr)
            raise
        finally:
            if sampler is not None:
                sampler.stop()
            say("stopping …")
            system.stop_programs()
    lag = sampler.samples if sampler is not None else []
    results["lag"] = lag_summary(sampler, args.lag_every)
    results.update(outcome(phases, naive))
    results["lag_series"] = [[round(t, 3), s] for t, s in lag]
    results["elapsed_s"] = time.monotonic() - started
    results["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(args.out, results)
    plot(results, phases, naive, lag, args.plot)
    print_table(results)
    say(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    run(main)
