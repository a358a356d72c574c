"""Benchmark: the whole pipeline at the FMA's full size, from an empty database to answering listeners.

Source: ``--tracks`` synthetic FMA-shaped rows (default 106,574, the FMA's full size;
:func:`etl.import_features.synthetic_rows`: 16 genres, titles, artists, albums, no audio)
imported into a throwaway database on ``CADENZA_MONGODB_URI`` (the running local stack's
FerretDB by default), topics of their own prefix on the running broker and a temporary
data dir (model registry, logs); all removed at the end. Destination: a table on stdout and
``bench/results/scale.json`` (``--out``).

1. **import**: ``cadenza etl import-features --synthetic N``'s work, in this process
   (:func:`~etl.import_features.synthetic_rows` + :func:`~etl.import_features.import_rows`):
   seconds, generating included (target < 30 s).
2. **train + promote**: ``cadenza model train --k 16 --promote``'s work, in this process
   (:func:`~streaming_jobs.model.train.run_training` on a fresh SparkSession): Spark's start,
   training (read, fit, assign, evaluate, save) and promotion (clusters written back to every
   track, the catalogue snapshot, ...) apart, each promotion stage timed from the progress it
   reports (target < 120 s in all).
3. **recommender cold start**: ``python -m infra recommender`` started; one play of a known
   track by a new listener is sent at once; seconds from the process's start to its
   "up next" on ``cadenza.recommendations`` (target < 5 s), and to ``/metrics`` answering and
   the worker's "recommender ready" log line. Stopped before the next step.
4. **gateway cold start**: ``python -m infra gateway`` (:func:`bench.catalogue.start`):
   seconds to ``/readyz`` 200 and to its catalogue answering from memory (target < 5 s).
5. **catalogue API under load**: ``/api/tracks/{id}/similar?limit=20``, a search and
   ``/api/genres``, ``--clients`` (50) concurrent clients for ``--seconds`` each
   (:func:`bench.catalogue.load`): p50/p99 (targets 30/100/10 ms).

Cold starts measure whatever the code does (a catalogue snapshot written at promotion, or a
scan of ``tracks``); the worker's and gateway's logs are in the JSON's tails on failure.

    .venv/bin/python -m bench.scale                                  # full size
    .venv/bin/python -m bench.scale --tracks 5000 --seconds 5        # smoke
    .venv/bin/python -m bench.scale --tracks 5000 --no-serving       # only import + train
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench import catalogue as catalogue_bench
from bench.common import RESULTS_DIR, bounded, run, write_json
from bench.gateway.system import GatewayProcess
from infra.kafka_clients import consumer, ensure_topics, producer
from infra.mongo import client, ping
from infra.settings import Settings, child_env
from infra.stack.process import free_port
from schemas import tokens
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind
from schemas.topics import PLAYS, RECOMMENDATIONS

FMA_TRACKS = 106_574
TARGETS_S = {"import": 30.0, "train_promote": 120.0, "worker_cold_start": 5.0, "gateway_cold_start": 5.0}
TARGETS_MS = catalogue_bench.TARGETS_MS
WORKER_TIMEOUT_S = 300.0

console = Console(width=150)


# --- 1. import --------------------------------------------------------------------------------


def bench_import(settings: Settings, n: int, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """``import-features --synthetic n``'s work: figures and the imported ids."""
    from etl.import_features import import_rows, synthetic_rows

    started = time.perf_counter()
    rows = synthetic_rows(n, seed=seed)
    generate_s = time.perf_counter() - started
    summary = import_rows(settings, rows)
    total = time.perf_counter() - started
    figures = {
        "rows": summary.rows,
        "stored": summary.stored,
        "generate_s": round(generate_s, 2),
        "insert_s": round(summary.elapsed_s, 2),
        "import_s": round(total, 2),
        "rows_per_s": round(summary.rows / total, 1),
    }
    return figures, rows.ids


# --- 2. train + promote -------------------------------------------------------------------------


class StageClock:
    """A :class:`streaming_jobs.model.progress.Progress` that timestamps each stage (and prints it)."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, float]] = []

    def stage(self, description: str, total: int | None = None) -> None:
        self.stages.append((description, time.perf_counter()))
        console.print(f"[dim]  {description}[/dim]", highlight=False)

    def advance(self, amount: int = 1) -> None:
        return None

    def note(self, message: str) -> None:
        console.print(f"[dim]    {message}[/dim]", highlight=False)

    def durations(self, until: float) -> dict[str, float]:
        """Seconds of each stage (a stage ends where the next begins, the last at ``until``)."""
        ends = [t for _, t in self.stages[1:]] + [until]
        return {d: round(end - t, 2) for (d, t), end in zip(self.stages, ends, strict=True)}

    def promotion(self, until: float) -> dict[str, float]:
        """The stages after the model was saved: the promotion's."""
        names = [d for d, _ in self.stages]
        first = next((i + 1 for i, d in enumerate(names) if d.startswith("saving the model")), len(names))
        return dict(list(self.durations(until).items())[first:])


def bench_train(settings: Settings, k: int) -> dict[str, Any]:
    """``model train --k K --promote``'s work on a fresh SparkSession: figures (seconds)."""
    from infra.spark import spark_session
    from streaming_jobs.model.train import TrainingOptions, run_training

    clock = StageClock()
    started = time.perf_counter()
    spark = spark_session(settings, "cadenza-bench-scale")
    spark_start_s = time.perf_counter() - started
    mongo = client(settings, timeout_ms=60_000)
    try:
        run_started = time.perf_counter()
        training = run_training(
            spark, mongo[settings.mongodb_db], settings, TrainingOptions(ks=(k,), promote=True), clock
        )
        ended = time.perf_counter()
    finally:
        mongo.close()
        spark.stop()
    timings = training.timings
    promote_s = timings.get("promote_s", 0.0)
    promotion = training.promotion
    return {
        "version": training.doc.id,
        "k": training.doc.k,
        "tracks": training.n_tracks,
        "spark_master": settings.spark_master,
        "spark_start_s": round(spark_start_s, 2),
        "train_s": round(ended - run_started - promote_s, 2),
        "promote_s": round(promote_s, 2),
        "total_s": round(ended - started, 2),
        "timings": {name: round(v, 2) for name, v in timings.items()},
        "fit_timings": {name: round(v, 2) for name, v in training.fit.timings.items()},
        "stages": clock.durations(ended),
        "promote_stages": clock.promotion(ended),
        "tracks_written": promotion.tracks_written if promotion else 0,
        "tracks_caught_up": promotion.tracks_caught_up if promotion else 0,
        "silhouette": training.fit.best.silhouette,
        "snapshot": sorted(p.name for p in (settings.models_path / training.doc.id).iterdir()),
    }


# --- 3. recommender cold start ------------------------------------------------------------------


def known_track(settings: Settings, ids: np.ndarray) -> int:
    """A track of the catalogue that the promoted model placed in a cluster."""
    mongo = client(settings)
    try:
        tracks = mongo[settings.mongodb_db].tracks
        for tid in ids[len(ids) // 2 :].tolist():
            doc = tracks.find_one({"_id": int(tid)}, {"cluster": 1})
            if doc is not None and isinstance(doc.get("cluster"), int):
                return int(tid)
    finally:
        mongo.close()
    raise RuntimeError("no imported track has a cluster after the promotion")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def bench_worker(settings: Settings, workdir: Path, track: int) -> dict[str, Any]:
    """Seconds from ``python -m infra recommender``'s start to its answer to one play."""
    user = f"scale-{uuid.uuid4().hex[:8]}"
    play = PlayEvent(user_id=user, track_id=track, kind=PlayKind.PLAY)
    answers: dict[str, Any] = {}
    stop = threading.Event()
    # The topic is the run's own, so "earliest" holds only this worker's answers.
    reader = consumer(
        settings,
        settings.topic(RECOMMENDATIONS),
        group_id=f"bench-scale-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
    )
    reader.poll(timeout_ms=500)  # joined and assigned before the worker starts

    def listen() -> None:
        while not stop.is_set():
            for records in reader.poll(timeout_ms=50).values():
                now = time.monotonic()
                for r in records:
                    rec = json.loads(r.value)
                    if rec.get("cause_event_id") == str(play.event_id):
                        answers.setdefault("at", now)
                        answers.setdefault("items", len(rec.get("items", ())))

    listener = threading.Thread(target=listen, daemon=True, name="bench-scale-listener")
    listener.start()
    port = free_port()
    log = workdir / "recommender.log"
    figures: dict[str, Any] = {"track": track}
    with open(log, "ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "infra", "recommender"],
            env=child_env(settings, faust_port=port, log_level="INFO"),
            cwd=workdir,  # no checkout .env
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    send = producer(settings)
    try:
        send.send(settings.topic(PLAYS), key=encode_key(user), value=encode(play))
        send.flush()
        figures["play_sent_s"] = round(time.monotonic() - started, 3)
        while "at" not in answers:
            elapsed = time.monotonic() - started
            if proc.poll() is not None:
                raise RuntimeError(f"the recommender exited ({proc.returncode}):\n{log_tail(log)}")
            if elapsed > WORKER_TIMEOUT_S:
                raise RuntimeError(f"no answer after {WORKER_TIMEOUT_S:.0f} s:\n{log_tail(log)}")
            if "metrics_s" not in figures and http_ok(f"http://127.0.0.1:{port}/metrics"):
                figures["metrics_s"] = round(elapsed, 3)
            time.sleep(0.02)
        figures["answer_s"] = round(answers["at"] - started, 3)
        figures["answer_items"] = answers["items"]
        text = log.read_text(errors="replace")
        figures["log"] = [line[-300:] for line in text.splitlines() if "ready" in line or "snapshot" in line][
            :5
        ]
    finally:
        stop.set()
        listener.join(5)
        reader.close()
        send.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    return figures


# --- 4. + 5. the gateway ------------------------------------------------------------------------


def search_query(rng: random.Random, ids: list[int], genres: list[str]) -> str:
    """What a listener types into the synthetic catalogue (see ``etl.import_features``'s names)."""
    kind = rng.random()
    genre = rng.choice(genres)
    if kind < 0.3:
        return genre[: rng.randint(1, len(genre))]
    if kind < 0.6:
        return f"study {str(rng.choice(ids))[: rng.randint(1, 4)]}"
    if kind < 0.8:
        return f"{genre} no {str(rng.choice(ids))[:3]}"
    return f"synthetic artist {rng.randint(0, max(1, len(ids) // 7)):05d}"[: rng.randint(12, 22)]


def urls(ids: list[int], genres: list[str]) -> dict[str, Callable[[random.Random], str]]:
    return {
        "similar": lambda rng: f"/api/tracks/{rng.choice(ids)}/similar?limit=20",
        "search": lambda rng: str(
            httpx.URL("/api/tracks", params={"q": search_query(rng, ids, genres), "per_page": 50})
        ),
        "genres": lambda rng: "/api/genres",
    }


def bench_gateway(
    settings: Settings, workdir: Path, ids: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    """Cold start, then the catalogue API under ``args.clients`` clients."""
    from etl.synthetic import GENRES

    secret = secrets.token_urlsafe(24)
    token = tokens.issue(secret, "bench-scale", now=time.time(), ttl_s=24 * 3600)
    started = time.monotonic()
    gw: GatewayProcess | None = None
    try:
        gw, figures = catalogue_bench.start(settings, secret, workdir, 0)
        figures |= catalogue_bench.wait_catalogue(gw, started)
        figures["catalogue"] = gw.http.get("/readyz").json().get("catalogue")
        headers = {"Authorization": f"Bearer {token}"}
        similar = gw.http.get(f"/api/tracks/{ids[0]}/similar?limit=20", headers=headers).json()
        found = gw.http.get("/api/tracks", params={"q": "study"}, headers=headers).json()
        if len(similar.get("items", ())) != 20 or not found.get("total"):
            raise RuntimeError(f"similar tracks or search answered {str(similar)[:200]} {str(found)[:200]}")
        if not args.load:
            return figures
        genres = [g[1] for g in GENRES]
        for route, next_url in urls(ids, genres).items():
            result = asyncio.run(
                catalogue_bench.load(
                    gw,
                    token,
                    next_url,
                    clients=args.clients,
                    seconds=args.seconds,
                    think_ms=args.think_ms,
                )
            )
            result["load_average"] = round(os.getloadavg()[0], 1)
            figures.setdefault("load", {})[route] = result
            console.print(f"  {route}: {result}", highlight=False)
        return figures
    except Exception:
        if gw is not None:
            print(f"gateway log tail:\n{gw.log_tail()}", file=sys.stderr)
        raise
    finally:
        if gw is not None:
            gw.stop()


# --- the run ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--tracks", type=bounded(int, 100, 2_000_000), default=FMA_TRACKS)
    parser.add_argument("--k", type=bounded(int, 2, 256), default=16)
    parser.add_argument("--seed", type=int, default=0, help="of the synthetic rows")
    parser.add_argument(
        "--serving",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after import and training, the recommender's and the gateway's cold starts and the load",
    )
    parser.add_argument(
        "--load", action=argparse.BooleanOptionalAction, default=True, help="the catalogue API under load"
    )
    parser.add_argument("--clients", type=bounded(int, 1, 500), default=50)
    parser.add_argument("--seconds", type=bounded(float, 1, 600), default=20.0, help="per route")
    parser.add_argument(
        "--think-ms", type=bounded(float, 0, 10_000), default=100.0, help="mean pause per client"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "scale.json")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="cadenza-bench-scale-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        settings = Settings(
            data_dir=workdir / "data", topic_prefix=f"bscale{tag}.", mongodb_db=f"bench_scale_{tag}"
        )
        results: dict[str, Any] = {
            "cpus": os.cpu_count(),
            "mongodb": f"{settings.mongo_uri} ({ping(settings)})",
            "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "targets_s": TARGETS_S,
            "targets_ms": TARGETS_MS,
            "load_average_at_start": round(os.getloadavg()[0], 1),
        }
        try:
            ensure_topics(settings)
            console.rule(f"import: {args.tracks:,} synthetic rows")
            results["import"], ids = bench_import(settings, args.tracks, args.seed)
            console.print(results["import"], highlight=False)
            console.rule(f"train k={args.k} and promote")
            results["train"] = bench_train(settings, args.k)
            console.print(results["train"], highlight=False)
            if args.serving:
                console.rule("recommender cold start")
                results["worker"] = bench_worker(settings, workdir, known_track(settings, ids))
                console.print(results["worker"], highlight=False)
                console.rule(
                    "gateway cold start" + (" and the catalogue API under load" if args.load else "")
                )
                picked = random.Random(1).sample(ids.tolist(), min(len(ids), 5000))
                results["gateway"] = bench_gateway(settings, workdir, [int(i) for i in picked], args)
        finally:
            catalogue_bench.cleanup(settings, keep_db=False)
    results["load_average_at_end"] = round(os.getloadavg()[0], 1)
    results["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(args.out, results)
    report(results)
    console.print(f"written: {args.out}")


def report(results: dict[str, Any]) -> None:
    n = int(results["params"]["tracks"])
    table = Table(title=f"Cadenza at {n:,} tracks ({results['cpus']} CPUs)")
    for column, justify in (("step", "left"), ("measured", "right"), ("target", "right"), ("detail", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]

    def seconds(label: str, value: float | None, target: float | None, detail: str = "") -> None:
        shown = "-" if value is None else f"{value:,.2f} s"
        mark = (
            ""
            if value is None or target is None
            else (" [green]ok[/]" if value < target else " [red]over[/]")
        )
        table.add_row(label, shown + mark, "" if target is None else f"< {target:.0f} s", detail)

    imp, train = results["import"], results["train"]
    seconds(
        "import-features (synthetic)",
        imp["import_s"],
        TARGETS_S["import"],
        f"{imp['rows_per_s']:,.0f} rows/s",
    )
    total = train["train_s"] + train["promote_s"]
    seconds(
        "train + promote", total, TARGETS_S["train_promote"], f"+ Spark start {train['spark_start_s']:.1f} s"
    )
    t = train["timings"]
    parts = ", ".join(
        f"{name[:-2]} {t[name]:.1f}"
        for name in ("read_s", "variance_s", "spark_s", "evaluate_s", "save_s")
        if name in t
    )
    seconds("  train", train["train_s"], None, parts)
    stages = ", ".join(
        f"{name.split(' (')[0].replace(' of ' + train['version'], '')} {s:.1f}"
        for name, s in train["promote_stages"].items()
    )
    seconds("  promote", train["promote_s"], None, stages)
    if "worker" in results:
        w = results["worker"]
        seconds(
            "recommender: start -> first answer",
            w["answer_s"],
            TARGETS_S["worker_cold_start"],
            f"/metrics {w.get('metrics_s', '-')} s, {w['answer_items']} items",
        )
    if "gateway" in results:
        g = results["gateway"]
        seconds("gateway: start -> /readyz", g["cold_start_s"], TARGETS_S["gateway_cold_start"])
        seconds(
            "gateway: start -> catalogue in memory",
            g["index_ready_s"],
            TARGETS_S["gateway_cold_start"],
            f"load {g['index_load_s']:.1f} s, {g['index_tracks']:,} tracks",
        )
        for route, figures in g.get("load", {}).items():
            p99 = figures["ms"]["p99"]
            ok = "" if p99 is None else (" [green]ok[/]" if p99 < TARGETS_MS[route] else " [red]over[/]")
            table.add_row(
                f"{route} p50 / p99",
                f"{figures['ms']['p50']} / {p99} ms{ok}",
                f"< {TARGETS_MS[route]:.0f} ms",
                f"{figures['per_s']:,.0f} req/s, errors {figures['errors'] or 0}",
            )
    console.print(table)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        run(main)
