"""Bench only: the naive request-time path that ``bench.e2e`` compares Cadenza with.

Plays from the first phase's listeners are posted one at a time to the run's gateway
(``POST /api/plays``), each followed by what a naive gateway handler would do to answer
"what next?" at request time, here with pymongo against the run's MongoDB (``plays``
history, ``tracks`` with their clusters and feature vectors) and a numpy scan. The timings
(per play, and per step) go to :func:`bench.e2e.analysis.naive_summary`; its dict goes back to
``bench.e2e`` (JSON ``naive`` and ``ratios``, table, plot).
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import numpy as np
from pymongo.database import Database

from bench.e2e.analysis import naive_summary
from bench.e2e.system import System
from schemas.vectors import unpack, unpack_many

RECO_K, RECENT_N = 10, 20


def naive_recommend(
    db: Database[dict[str, Any]], user: str, track: int, steps: dict[str, list[float]]
) -> list[int]:
    """What a naive gateway handler would do per request: everything from MongoDB, then a scan.
    Appends each step's milliseconds to ``steps``."""
    t0 = time.perf_counter()
    recent = {
        int(d["track_id"])
        for d in db.plays.find({"user_id": user}, {"track_id": 1}).sort("ts", -1).limit(RECENT_N)
    }
    t1 = time.perf_counter()
    seed = db.tracks.find_one({"_id": track}, {"cluster": 1, "features": 1})
    t2 = time.perf_counter()
    if seed is None or seed.get("cluster") is None:
        return []
    rows = list(db.tracks.find({"cluster": seed["cluster"]}, {"features": 1}))
    t3 = time.perf_counter()
    vectors = unpack_many([r.get("features") for r in rows])
    ids = [int(r["_id"]) for r, ok in zip(rows, vectors.ok.tolist(), strict=True) if ok]
    matrix = vectors.matrix.astype(np.float64)
    distance = ((matrix - unpack(seed["features"]).astype(np.float64)) ** 2).sum(axis=1)
    skip = recent | {track}
    out = [ids[j] for j in np.argsort(distance) if ids[j] not in skip][:RECO_K]
    t4 = time.perf_counter()
    took = {"recent_plays": t1 - t0, "seed_track": t2 - t1, "cluster_tracks": t3 - t2, "scan": t4 - t3}
    for name, seconds in took.items():
        steps.setdefault(name, []).append(seconds * 1e3)
    steps.setdefault("cluster_size", []).append(float(len(rows)))
    return out


def run_naive(system: System, users: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from schemas import tokens

    db = system.db
    secret = system.settings.token_secret.get_secret_value()
    token_of = {u: tokens.issue(secret, u, now=time.time(), ttl_s=3600) for u in users}
    tracks = sorted(int(d["_id"]) for d in db.tracks.find({"cluster": {"$ne": None}}, {"_id": 1}))
    rng = random.Random(f"{args.seed}:naive")
    rows: list[tuple[float, float, float]] = []  # (start, POST ms, compute ms)
    failed: Counter[str] = Counter()
    lists: list[int] = []
    steps: dict[str, list[float]] = {}
    with httpx.Client(base_url=system.url, timeout=15.0, trust_env=False) as http:

        def one(user: str, track: int) -> tuple[float, float] | None:
            body = {"track_id": track, "kind": "play", "position_s": 0.0, "event_id": str(uuid.uuid4())}
            t0 = time.perf_counter()
            try:
                r = http.post("/api/plays", json=body, headers={"Authorization": f"Bearer {token_of[user]}"})
            except httpx.HTTPError as err:
                failed[type(err).__name__] += 1
                return None
            if r.status_code != 202:
                failed[f"HTTP {r.status_code}"] += 1
                return None
            t1 = time.perf_counter()
            lists.append(len(naive_recommend(db, user, track, steps)))
            return (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3

        for _ in range(5):  # warm the connections; not measured
            one(rng.choice(users), rng.choice(tracks))
        lists.clear()
        steps.clear()
        started = time.monotonic()
        for i in range(args.naive_plays):
            delay = started + i / args.naive_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            at = time.time()
            took = one(rng.choice(users), rng.choice(tracks))
            if took is not None:
                rows.append((at, *took))
        elapsed = time.monotonic() - started
    db.client.close()
    return naive_summary(args.naive_plays, args.naive_rate, elapsed, rows, failed, lists, steps)
