"""Benchmark: ``tracks`` with feature vectors as BSON arrays of 518 doubles (the legacy layout)
vs packed float32 (:mod:`schemas.vectors`), on the running MongoDB-compatible server.

Source: ``--docs`` synthetic track documents (TrackDoc shape, 518 float32 values each), the
same ones in both layouts, each layout in its own collection of a temporary database on
``CADENZA_MONGODB_URI`` (the local stack's FerretDB by default; dropped afterwards).
Destination: a table on stdout and ``bench/results/vectors.json``.

Measures per layout, in the same run: bulk inserts (``insert_many`` of ``--batch``),
bulk replaces of existing tracks (``ReplaceOne`` by ``_id``, what a re-extraction
writes), one-by-one replaces (``replace_one``, the ETL's ``replace_all``; first
``--single`` tracks), cluster write-back after training (``UpdateOne`` ``$set``
cluster + model version), and a full read + decode of every vector into one
``(n, 518)`` float32 matrix (``find`` + :func:`schemas.vectors.unpack_many`); then
``cadenza db migrate`` (:func:`infra.migrations.migrate_vectors`) of ``--migrate`` legacy
tracks. The migration filters each update on ``_id`` and the vector's BSON type: a
FerretDB built before ``PATCH_LEVEL`` "cadenza3" (``infra/stack/ferretdb.py``) scans the
whole collection for each such update, so keep ``--migrate`` small on one.

    .venv/bin/python -m bench.vectors                 # 5,000 docs each way
    .venv/bin/python -m bench.vectors --docs 1000     # quicker
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import bson
import numpy as np
from pymongo import ReplaceOne, UpdateOne
from pymongo.collection import Collection
from rich.console import Console
from rich.table import Table

from bench.common import RESULTS_DIR, bounded, run, write_json
from infra.migrations import migrate_vectors
from infra.mongo import Doc, client, ping
from infra.settings import Settings
from schemas.documents import TrackDoc
from schemas.features import N_FEATURES
from schemas.vectors import unpack_many

LAYOUTS = ("array", "packed")


def track_docs(n: int, seed: int, layout: str) -> list[Doc]:
    """``n`` tracks in the TrackDoc shape, vectors packed or as arrays of doubles."""
    x = np.random.default_rng(seed).standard_normal((n, N_FEATURES)).astype(np.float32)
    docs = []
    for i in range(n):
        doc = TrackDoc(
            id=i + 1, title=f"Track {i + 1}", artist=f"Artist {i % 97}", genres=[12], features=x[i].tolist()
        ).to_mongo()
        if layout == "array":  # as the ETL stored vectors before the packed layout
            doc["features"] = x[i].astype(np.float64).tolist()
        docs.append(doc)
    return docs


def rate(n: int, work: Callable[[], Any]) -> float:
    """Documents per second of ``work`` over ``n`` documents."""
    started = time.perf_counter()
    work()
    return n / (time.perf_counter() - started)


def in_batches(coll: Collection[Doc], ops: list[Any], batch: int) -> None:
    for i in range(0, len(ops), batch):
        coll.bulk_write(ops[i : i + batch], ordered=False)


def read_all(coll: Collection[Doc], batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and every vector of ``coll`` decoded into one float32 matrix, ``batch`` at a time
    (as the recommender's catalogue loader reads them)."""
    ids, blocks, values = [], [], []
    for doc in coll.find({}, {"features": 1}, batch_size=batch):
        ids.append(doc["_id"])
        values.append(doc["features"])
        if len(values) >= batch:
            blocks.append(unpack_many(values).matrix)
            values.clear()
    blocks.append(unpack_many(values).matrix)
    return np.asarray(ids), np.concatenate(blocks)


def measure(coll: Collection[Doc], layout: str, n: int, batch: int, single: int) -> dict[str, Any]:
    docs = track_docs(n, seed=1, layout=layout)
    again = track_docs(n, seed=2, layout=layout)  # new vectors for the same tracks
    out: dict[str, Any] = {"doc_bytes": len(bson.encode(docs[0]))}
    out["insert_per_s"] = rate(n, lambda: [coll.insert_many(docs[i : i + batch]) for i in range(0, n, batch)])
    out["bulk_replace_per_s"] = rate(
        n, lambda: in_batches(coll, [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in again], batch)
    )
    out["replace_one_per_s"] = rate(
        single, lambda: [coll.replace_one({"_id": d["_id"]}, d) for d in docs[:single]]
    )
    clusters = [
        UpdateOne({"_id": d["_id"]}, {"$set": {"cluster": i % 16, "model_version": "b"}})
        for i, d in enumerate(docs)
    ]
    out["cluster_writeback_per_s"] = rate(n, lambda: in_batches(coll, clusters, batch))
    read: list[tuple[np.ndarray, np.ndarray]] = []
    out["read_decode_per_s"] = rate(n, lambda: read.append(read_all(coll, batch)))
    ids, matrix = read[0]
    expected = unpack_many([d["features"] for d in docs[:single] + again[single:]]).matrix
    assert matrix[np.argsort(ids)].tobytes() == expected.tobytes(), f"{layout}: read back other values"
    return out


ROWS = (
    ("stored document (BSON)", "doc_bytes", "{:,.0f} B"),
    ("insert_many", "insert_per_s", "{:,.0f} docs/s"),
    ("bulk ReplaceOne (existing)", "bulk_replace_per_s", "{:,.0f} docs/s"),
    ("replace_one, one by one", "replace_one_per_s", "{:,.0f} docs/s"),
    ("cluster write-back (UpdateOne $set)", "cluster_writeback_per_s", "{:,.0f} docs/s"),
    ("read + decode all into (n, 518) float32", "read_decode_per_s", "{:,.0f} docs/s"),
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vectors", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=bounded(int, 100, 200_000), default=5000, help="tracks per layout")
    parser.add_argument("--batch", type=bounded(int, 1, 10_000), default=500, help="documents per bulk write")
    parser.add_argument(
        "--single", type=bounded(int, 1, 10_000), default=500, help="tracks replaced one by one"
    )
    parser.add_argument(
        "--migrate",
        type=bounded(int, 0, 200_000),
        default=None,
        help="tracks to migrate (default --docs; 0: none)",
    )
    parser.add_argument("--mongodb-uri", default=None, help="default: CADENZA_MONGODB_URI (the local stack)")
    args = parser.parse_args()
    migrate = args.docs if args.migrate is None else args.migrate
    single = min(args.single, args.docs)
    settings = Settings(**({"mongodb_uri": args.mongodb_uri} if args.mongodb_uri else {}))
    mongo = client(settings, timeout_ms=30_000)
    server = ping(settings, mongo)
    name = f"bench_vectors_{os.getpid()}"
    results: dict[str, dict[str, Any]] = {}
    try:
        db = mongo[name]
        for layout in LAYOUTS:
            Console().print(f"[bold]{layout}[/]: {args.docs:,} tracks …")
            results[layout] = measure(db[f"tracks_{layout}"], layout, args.docs, args.batch, single)
        if migrate:
            Console().print(f"[bold]cadenza db migrate[/]: {migrate:,} tracks …")
            db["tracks"].insert_many(track_docs(migrate, seed=3, layout="array"))
            migrated = migrate_vectors(db, batch_size=args.batch)
            assert migrated.converted == migrate, migrated.line()
            results["array"]["migrate_per_s"] = migrate / migrated.elapsed_s
    finally:
        mongo.drop_database(name)
        mongo.close()
    table = Table(title=f"bench.vectors ({args.docs:,} tracks per layout, {server} at {settings.mongo_uri})")
    for col in ("measure", "array of 518 doubles", "packed float32", "packed / array"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for label, key, fmt in ROWS:
        a, p = results["array"][key], results["packed"][key]
        table.add_row(label, fmt.format(a), fmt.format(p), f"{p / a:.2f}x")
    if migrate:
        rate_s = f"{results['array']['migrate_per_s']:,.0f} docs/s"
        table.add_row(f"cadenza db migrate of {migrate:,} (array -> packed)", rate_s, "", "")
    Console().print(table)
    write_json(
        RESULTS_DIR / "vectors.json",
        {
            "docs": args.docs,
            "batch": args.batch,
            "single": single,
            "migrate": migrate,
            "server": server,
            "mongodb_uri": settings.mongo_uri,
            "layouts": results,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


if __name__ == "__main__":
    run(main)
