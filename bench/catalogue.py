"""Benchmark of the catalogue API at the FMA's full size: the in-memory catalogue vs MongoDB's path.

Source: ``--tracks`` synthetic tracks (default 106,574, the FMA's full size: titles,
artists and albums drawn Zipf-wise from a made-up vocabulary, 16 genres, packed float32
features around the 16 centres of a synthetic model with 60 PCA components, each track
in its nearest centre's cluster) in a throwaway database on ``CADENZA_MONGODB_URI`` (the
running local stack's FerretDB by default; ``--db`` keeps and reuses one between runs,
otherwise it is dropped at the end), topics of their own prefix on the running broker
(deleted at the end), and the synthetic model in a temporary registry. Destination: a
table on stdout and ``bench/results/catalogue.json`` (``--out``).

1. **after**: a gateway (``python -m infra gateway``, its own process) with the in-memory
   catalogue: seconds from its start to ``/readyz`` 200 (cold start) and to its catalogue
   answering from memory (index ready; and the load's own time), its RSS before and after;
   then, for each of ``/api/tracks/{id}/similar?limit=20`` (random tracks),
   ``/api/tracks?q=…&per_page=50`` (a mix of typed prefixes, words, two-word queries and
   artist names) and ``/api/genres``: ``--clients`` (50) concurrent clients (one
   ``httpx.AsyncClient`` in this process, keep-alive connections) for ``--seconds`` each,
   every client sending its next request ``--think-ms`` (exponential, mean) after the
   previous answer; latency p50/p99, requests/s, the gateway's CPU.
2. **before**: a gateway with ``CADENZA_GATEWAY_CATALOGUE_MEMORY=false`` (every request
   reads MongoDB, as before): cold start, then ``--baseline-requests`` requests of each
   route, one at a time (on FerretDB each scans the collection: 50 clients would only
   queue behind each other).

The gateway, the clients and FerretDB share this machine's CPUs (``cpus`` in the JSON).

    .venv/bin/python -m bench.catalogue
    .venv/bin/python -m bench.catalogue --tracks 5000 --seconds 5 --baseline-requests 1   # smoke
    .venv/bin/python -m bench.catalogue --db bench_catalogue_full   # keep the data for the next run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.common import RESULTS_DIR, bounded, cpu_seconds, ms, percentiles, run, write_json
from bench.gateway.system import GatewayProcess, RawHttp, clients_option
from infra.kafka_clients import admin, ensure_topics
from infra.mongo import Doc, client, ping
from infra.settings import Settings
from schemas import tokens
from schemas.cluster_model import CURRENT_FILE, ClusterModel, export_path
from schemas.features import FEATURE_COLUMNS, FEATURE_SET_VERSION, N_FEATURES
from schemas.vectors import pack_many

FMA_TRACKS = 106_574
VERSION = "bench-catalogue"
K, DIMS, GENRES = 16, 60, 16
#: Bumped when the generated catalogue changes (a kept ``--db`` of another format is rebuilt).
DATA_FORMAT = 1
TARGETS_MS = {"similar": 30.0, "search": 100.0, "genres": 10.0}
TARGET_COLD_START_S = 5.0
INSERT_BATCH = 1000

# --- the synthetic catalogue (pure) --------------------------------------------------------------

_SYLLABLES = (
    *("ka", "lo", "mi", "ra", "ten", "vo", "shi", "na", "bel", "or", "du", "fen", "zo", "qui", "lu"),
    *("ma", "ret", "sa", "pe", "ni", "gor", "al", "ve", "tri", "so", "ul", "bra", "e", "an", "ché"),
)


def vocabulary(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct made-up words of 1-4 syllables."""
    found: dict[str, None] = {}
    while len(found) < n:
        found["".join(rng.choice(_SYLLABLES, size=int(rng.integers(1, 5))))] = None
    return list(found)


def zipf_pick(rng: np.random.Generator, items: list[str], size: int) -> list[str]:
    """``size`` items, the first ones most often (Zipf, exponent ~1.1)."""
    ranks = np.minimum(rng.zipf(1.1, size=size), len(items)) - 1
    return [items[int(r)] for r in ranks]


def bench_model(seed: int) -> ClusterModel:
    """A scaler + PCA (60 components) + 16 centres over the 518 features."""
    rng = np.random.default_rng(seed)
    return ClusterModel(
        version=VERSION,
        feature_columns=FEATURE_COLUMNS,
        feature_set_version=FEATURE_SET_VERSION,
        mean=np.zeros(N_FEATURES),
        std=np.ones(N_FEATURES),
        components=np.linalg.qr(rng.normal(size=(N_FEATURES, DIMS)))[0],
        centroids=rng.normal(0, 3, (K, DIMS)),
        explained_variance=np.full(DIMS, 0.9 / DIMS),
    )


class Catalogue:
    """The names a catalogue is drawn from, and its documents a batch at a time."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        rng = np.random.default_rng(seed)
        self.words = vocabulary(rng, 6000)
        self.artists = [
            " ".join(w.capitalize() for w in zipf_pick(rng, self.words, 2)) for _ in range(16_000)
        ]
        self.genres = [w.capitalize() for w in vocabulary(rng, GENRES)]
        self.ids = (2 + np.cumsum(rng.integers(1, 4, size=n))).tolist()
        self.model = bench_model(seed)

    def docs(self, batch: int) -> Iterator[list[Doc]]:
        rng = np.random.default_rng(self.seed + 1)
        for start in range(0, self.n, batch):
            ids = self.ids[start : start + batch]
            m = len(ids)
            centre = rng.integers(0, K, size=m)
            points = self.model.centroids[centre] + rng.normal(0, 1.0, (m, DIMS))
            x = (points @ self.model.components.T + rng.normal(0, 0.05, (m, N_FEATURES))).astype(np.float32)
            clusters = self.model.assign(x)
            packed = pack_many(x)
            titles = [" ".join(zipf_pick(rng, self.words, int(rng.integers(1, 5)))).capitalize() for _ in ids]
            artists = zipf_pick(rng, self.artists, m)
            genres = rng.integers(0, GENRES, size=m)
            yield [
                {
                    "_id": tid,
                    "title": titles[i],
                    "artist": artists[i],
                    "album": f"{artists[i].split()[0]} {self.words[(tid * 7) % len(self.words)]}".title(),
                    "genre_top": self.genres[int(genres[i])],
                    "genres": [int(genres[i]) + 1],
                    "duration_s": float(rng.uniform(60, 600)),
                    "audio_path": f"{tid // 1000:03d}/{tid:06d}.mp3",
                    "features": packed[i],
                    "feature_set_version": FEATURE_SET_VERSION,
                    "cluster": int(clusters[i]),
                    "model_version": VERSION,
                    "source": "bench",
                }
                for i, tid in enumerate(ids)
            ]

    def search_query(self, rng: random.Random) -> str:
        """What a listener types: a prefix, a word, a word and a prefix, or an artist."""
        word = self.words[min(int(rng.paretovariate(0.9)), len(self.words)) - 1]
        kind = rng.random()
        if kind < 0.4:
            return word[: rng.randint(1, max(1, min(4, len(word))))]
        if kind < 0.7:
            return word
        if kind < 0.9:
            other = rng.choice(self.words)
            return f"{word} {other[: rng.randint(1, len(other))]}"
        return rng.choice(self.artists)


# --- the database and the registry -------------------------------------------------------------


def prepare_db(settings: Settings, cat: Catalogue, console: Console) -> dict[str, Any]:
    """The catalogue in ``settings.mongodb_db`` (reused when a kept one holds it already)."""
    mongo = client(settings, timeout_ms=30_000)
    try:
        db = mongo[settings.mongodb_db]
        marker = {"_id": "catalogue", "tracks": cat.n, "seed": cat.seed, "format": DATA_FORMAT}
        if db.bench_meta.find_one({"_id": "catalogue"}) == marker:
            console.print(f"[dim]reusing the {cat.n:,} tracks of {settings.mongodb_db}[/dim]")
            return {"reused": True}
        db.tracks.drop()
        db.bench_meta.drop()
        started = time.monotonic()
        for i, docs in enumerate(cat.docs(INSERT_BATCH)):
            db.tracks.insert_many(docs, ordered=False)
            if i % 20 == 0:
                console.print(f"[dim]inserted {min(cat.n, (i + 1) * INSERT_BATCH):,} / {cat.n:,}[/dim]")
        db.bench_meta.insert_one(marker)
        return {"reused": False, "insert_s": round(time.monotonic() - started, 1)}
    finally:
        mongo.close()


def cleanup(settings: Settings, keep_db: bool) -> None:
    with contextlib.suppress(Exception):
        if not keep_db:
            mongo = client(settings)
            mongo.drop_database(settings.mongodb_db)
            mongo.close()
    with contextlib.suppress(Exception), contextlib.closing(admin(settings)) as kafka:
        kafka.delete_topics([t for t in kafka.list_topics() if t.startswith(settings.topic_prefix)])


# --- the load ----------------------------------------------------------------------------------


async def load(
    gw: GatewayProcess,
    token: str,
    next_url: Callable[[random.Random], str],
    *,
    clients: int,
    seconds: float,
    think_ms: float,
    client: str = "raw",
) -> dict[str, Any]:
    """``clients`` clients asking ``next_url()`` for ``seconds`` (after a 2 s warm-up), each on
    its own keep-alive connection, pausing ``think_ms`` (exponential, mean) after each answer:
    :class:`RawHttp` (``raw``) or one ``httpx.AsyncClient`` (``httpx``, whose own CPU cost shows
    in its figures). Also used by ``bench.scale``."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    think_s = think_ms / 1000
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=gw.base, headers=headers, limits=limits, timeout=60.0, trust_env=False
    ) as pool:
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + 2.0
        end = measure_from + seconds

        async def one_client(i: int) -> None:
            rng, raw = random.Random(i), RawHttp(gw.port, token)
            try:
                while (now := loop.time()) < end:
                    url = next_url(rng)
                    try:
                        if client == "raw":
                            status = (await asyncio.wait_for(raw.get(url), 60.0))[0]
                        else:
                            status = (await pool.get(url)).status_code
                    except (OSError, EOFError, KeyError, ValueError, TimeoutError, httpx.HTTPError) as err:
                        errors[type(err).__name__] += 1
                        continue
                    if status != 200:
                        errors[str(status)] += 1
                    elif now >= measure_from:
                        latencies.append(loop.time() - now)
                    if think_s:
                        await asyncio.sleep(rng.expovariate(1 / think_s))
            finally:
                raw.close()

        cpu = cpu_seconds(gw.proc.pid)
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        gateway_cpu = (cpu_seconds(gw.proc.pid) - cpu) / (seconds + 2.0)
    return {
        "client": client,
        "requests": len(latencies),
        "per_s": round(len(latencies) / seconds, 1),
        "errors": dict(errors),
        "ms": as_ms(latencies),
        "gateway_cpu": round(gateway_cpu, 2),
    }


def as_ms(seconds: list[float]) -> dict[str, float | None]:
    return {k: None if v is None else round(v * 1000, 2) for k, v in percentiles(seconds).items()}


def one_at_a_time(base: str, token: str, urls: list[str], timeout: float) -> dict[str, Any]:
    """Each of ``urls`` in turn; latency of each (a timed-out request counts as ``timeout``)."""
    took: list[float] = []
    errors: Counter[str] = Counter()
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout, trust_env=False
    ) as http:
        for url in urls:
            started = time.monotonic()
            try:
                status = http.get(url).status_code
                if status != 200:
                    errors[str(status)] += 1
            except httpx.TimeoutException:
                errors["timeout"] += 1
            took.append(time.monotonic() - started)
    return {"requests": len(took), "errors": dict(errors), "ms": as_ms(took)}


def start(
    settings: Settings, secret: str, workdir: Path, niceness: int, **env: object
) -> tuple[GatewayProcess, dict[str, Any]]:
    """A gateway and its cold start: seconds to ``/readyz`` 200 and, with the in-memory
    catalogue, to the catalogue answering from memory."""
    started = time.monotonic()
    gw = GatewayProcess(
        settings, secret, 64, workdir, niceness=niceness, model_dir=settings.models_path, **env
    )
    gw.wait_ready()
    figures: dict[str, Any] = {"cold_start_s": round(time.monotonic() - started, 3)}
    figures["rss_mb_at_ready"] = round(gw.status()["VmRSS"] / 1024, 1)
    return gw, figures


def check_answers(gw: GatewayProcess, token: str, cat: Catalogue, timeout: float) -> None:
    """The routes measured answer what they should (a bench of empty answers measures nothing)."""
    headers = {"Authorization": f"Bearer {token}"}

    def get(url: str, **params: Any) -> Any:
        return gw.http.get(url, params=params, headers=headers, timeout=timeout).json()

    similar = get(f"/api/tracks/{cat.ids[0]}/similar", limit=20)
    found = get("/api/tracks", q=cat.words[0])
    genres = get("/api/genres")
    if (
        len(similar.get("items", ())) != 20
        or not found.get("total")
        or len(genres.get("items", ())) != GENRES
    ):
        raise RuntimeError(f"unexpected answers: {similar}, {found.get('total')}, {genres}"[:500])


def wait_catalogue(gw: GatewayProcess, started: float, timeout: float = 900.0) -> dict[str, Any]:
    while time.monotonic() - started < timeout:
        catalogue = gw.http.get("/readyz").json()["catalogue"]
        if catalogue["state"] == "ready":
            return {
                "index_ready_s": round(time.monotonic() - started, 3),
                "index_load_s": catalogue["load_s"],
                "index_tracks": catalogue["tracks"],
                "rss_mb_loaded": round(gw.status()["VmRSS"] / 1024, 1),
            }
        if gw.proc.poll() is not None:
            raise RuntimeError(f"the gateway exited:\n{gw.log_tail()}")
        time.sleep(0.1)
    raise RuntimeError(f"the catalogue was not loaded after {timeout:.0f} s:\n{gw.log_tail()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.catalogue", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--tracks", type=bounded(int, 100, 2_000_000), default=FMA_TRACKS)
    parser.add_argument("--clients", type=bounded(int, 1, 500), default=50)
    parser.add_argument("--seconds", type=bounded(float, 1, 600), default=20.0, help="per route")
    parser.add_argument(
        "--think-ms", type=bounded(float, 0, 10_000), default=100.0, help="mean pause per client"
    )
    parser.add_argument(
        "--baseline-requests", type=bounded(int, 0, 100), default=3, help="per route; 0: no baseline"
    )
    parser.add_argument("--baseline-timeout", type=bounded(float, 1, 3600), default=600.0, help="seconds")
    clients_option(parser, "--client")
    parser.add_argument("--db", help="keep the catalogue in this database and reuse it next time")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument(
        "--niceness",
        type=bounded(int, -20, 19),
        default=0,
        help="CPU priority of the gateway and of the clients (nice; below 0 needs root): on a machine "
        "busy with other work, -10 measures the gateway rather than the competition",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "catalogue.json")
    args = parser.parse_args()
    console = Console(width=150)
    if args.niceness:
        os.setpriority(os.PRIO_PROCESS, 0, args.niceness)  # this thread: the clients' event loop
    tag = uuid.uuid4().hex[:8]
    secret = secrets.token_urlsafe(24)
    token = tokens.issue(secret, "bench-catalogue", now=time.time(), ttl_s=24 * 3600)
    with tempfile.TemporaryDirectory(prefix="cadenza-bench-catalogue-") as tmp:
        workdir = Path(tmp)
        settings = Settings(
            data_dir=workdir / "data",
            model_dir=workdir / "models",
            topic_prefix=f"bcat{tag}.",
            mongodb_db=args.db or f"bench_catalogue_{tag}",
        )
        results: dict[str, Any] = {
            "cpus": os.cpu_count(),
            "mongodb": f"{settings.mongo_uri} ({ping(settings)})",
            "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "targets_ms": TARGETS_MS,
        }
        gw: GatewayProcess | None = None
        try:
            cat = Catalogue(args.tracks, args.seed)
            cat.model.save(export_path(settings.models_path, VERSION))
            (settings.models_path / CURRENT_FILE).write_text(VERSION)
            results["data"] = prepare_db(settings, cat, console)
            ensure_topics(settings)
            urls: dict[str, Callable[[random.Random], str]] = {
                "similar": lambda rng: f"/api/tracks/{rng.choice(cat.ids)}/similar?limit=20",
                "search": lambda rng: str(
                    httpx.URL("/api/tracks", params={"q": cat.search_query(rng), "per_page": 50})
                ),
                "genres": lambda rng: "/api/genres",
            }
            console.print("[bold]after[/bold]: the in-memory catalogue")
            started = time.monotonic()
            gw, after = start(settings, secret, workdir, args.niceness)
            after |= wait_catalogue(gw, started)
            check_answers(gw, token, cat, 60.0)
            for client_kind in args.client:
                for route, next_url in urls.items():
                    figures = asyncio.run(
                        load(
                            gw,
                            token,
                            next_url,
                            clients=args.clients,
                            seconds=args.seconds,
                            think_ms=args.think_ms,
                            client=client_kind,
                        )
                    )
                    figures["load_average"] = round(os.getloadavg()[0], 1)
                    after.setdefault(client_kind, {})[route] = figures
                    console.print(f"  {route} ({client_kind}): {figures}")
            gw.stop()
            gw = None
            results["after"] = after
            if args.baseline_requests:
                console.print("[bold]before[/bold]: every request reads MongoDB")
                gw, before = start(settings, secret, workdir, args.niceness, gateway_catalogue_memory=False)
                check_answers(gw, token, cat, args.baseline_timeout)
                rng = random.Random(1)
                for route, next_url in urls.items():
                    picked = [next_url(rng) for _ in range(args.baseline_requests)]
                    before[route] = one_at_a_time(gw.base, token, picked, args.baseline_timeout)
                    before[route]["load_average"] = round(os.getloadavg()[0], 1)
                    console.print(f"  {route}: {before[route]}")
                results["before"] = before
        except Exception:
            if gw is not None:
                print(f"gateway log tail:\n{gw.log_tail()}", file=sys.stderr)
            raise
        finally:
            if gw is not None:
                gw.stop()
            cleanup(settings, keep_db=bool(args.db))
    results["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(args.out, results)
    report(results, console)
    console.print(f"written: {args.out}")


def report(results: dict[str, Any], console: Console) -> None:
    after, before = results["after"], results.get("before", {})
    params = results["params"]
    table = Table(
        title=f"catalogue API, {params['tracks']:,} tracks; after: {params['clients']} clients, "
        f"{params['think_ms']:.0f} ms mean pause; before: one request at a time"
    )
    columns = ("", "before p50", "before p99", "after p50", "after p99", "req/s", "gateway CPU", "target p99")
    for column in columns:
        table.add_column(column, justify="right")
    for route, target in TARGETS_MS.items():
        old = before.get(route, {}).get("ms", {})
        for kind in params["client"]:
            new = after[kind][route]
            table.add_row(
                f"{route} ({kind})",
                ms(old.get("p50")),
                ms(old.get("p99")),
                ms(new["ms"]["p50"]),
                ms(new["ms"]["p99"]),
                f"{new['per_s']:,.0f}",
                f"{new['gateway_cpu']:.2f}",
                f"< {target:.0f} ms",
            )
    cold = f"{before['cold_start_s']:.2f} s" if "cold_start_s" in before else "-"
    table.add_row(
        "cold start", cold, "", f"{after['cold_start_s']:.2f} s", "", "", "", f"< {TARGET_COLD_START_S:.0f} s"
    )
    load = f"{after['index_ready_s']:.1f} s (load {after['index_load_s']:.1f} s)"
    table.add_row("index ready", "", "", load, "", "", "", "")
    console.print(table)


if __name__ == "__main__":
    run(main)
