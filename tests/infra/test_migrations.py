"""`cadenza db migrate` against the real local MongoDB-compatible server: legacy arrays ->
packed float32, idempotent, resumable, never overwriting a newer value, never losing data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from bson.binary import Binary
from pymongo.database import Database

from infra.migrations import migrate_vectors, plan, write
from schemas.features import N_FEATURES
from schemas.vectors import SUBTYPE, pack, unpack

pytestmark = pytest.mark.stack
Db = Database[dict[str, Any]]


def legacy_docs(n: int, first: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """Tracks as the ETL stored them before: float32 values in an array of doubles."""
    x = np.random.default_rng(seed).standard_normal((n, N_FEATURES)).astype(np.float32)
    return [
        {
            "_id": first + i,
            "title": f"t{first + i}",
            "features": x[i].astype(np.float64).tolist(),
            "cluster": i % 3,
        }
        for i in range(n)
    ]


BROKEN: list[dict[str, Any]] = [
    {"_id": 900, "title": "short", "features": [0.5] * 517},
    {"_id": 901, "title": "text", "features": [*([0.5] * 517), "loud"]},
    {"_id": 902, "title": "huge", "features": [*([0.5] * 517), 1e39]},  # FerretDB refuses NaN itself
]


def test_migrate_converts_every_legacy_vector_and_changes_nothing_else(db: Db) -> None:
    legacy = legacy_docs(23)
    db.tracks.insert_many([*legacy, {"_id": 500, "features": pack([0.25] * N_FEATURES)}, {"_id": 501}])
    done = migrate_vectors(db, batch_size=5)
    assert (done.legacy, done.converted, done.already_packed, done.without_vector) == (23, 23, 1, 1)
    assert not done.failed and done.remaining == 0 and done.changed_meanwhile == 0
    assert done.line().startswith("converted 23 · already packed 1 · failed 0")
    for before in legacy:
        after = db.tracks.find_one({"_id": before["_id"]})
        assert (
            after is not None
            and isinstance(after["features"], Binary)
            and after["features"].subtype == SUBTYPE
        )
        assert unpack(after["features"]).tobytes() == unpack(before["features"]).tobytes()
        assert {k: v for k, v in after.items() if k != "features"} == {
            k: v for k, v in before.items() if k != "features"
        }
    assert db.tracks.count_documents({"features": {"$type": "array"}}) == 0


def test_a_second_run_changes_nothing_and_says_so(db: Db) -> None:
    db.tracks.insert_many(legacy_docs(6))
    migrate_vectors(db)
    stored = list(db.tracks.find({}).sort("_id", 1))
    again = migrate_vectors(db)
    assert (again.legacy, again.converted, again.already_packed) == (0, 0, 6)
    assert again.line().startswith("nothing changed: converted 0 · already packed 6 · failed 0")
    assert list(db.tracks.find({}).sort("_id", 1)) == stored


def test_a_stopped_run_is_finished_by_the_next_in_id_order(db: Db) -> None:
    db.tracks.insert_many(legacy_docs(17))
    seen: list[tuple[int, int]] = []
    first = migrate_vectors(db, batch_size=3, limit=7, progress=lambda d, t: seen.append((d, t)))
    assert (first.converted, first.remaining) == (7, 10) and "not reached 10 (run again)" in first.line()
    assert seen[0] == (0, 7) and seen[-1] == (7, 7) and [d for d, _ in seen] == [0, 3, 6, 7]
    packed = {d["_id"] for d in db.tracks.find({"features": {"$type": "binData"}}, {"_id": 1})}
    assert packed == set(range(1, 8))  # the first ids: batches go in _id order
    second = migrate_vectors(db, batch_size=3)
    assert (second.legacy, second.converted, second.already_packed, second.remaining) == (10, 10, 7, 0)
    assert db.tracks.count_documents({"features": {"$type": "array"}}) == 0


def test_a_packed_value_written_meanwhile_is_never_overwritten(db: Db) -> None:
    db.tracks.insert_many(legacy_docs(4))
    batch = plan(db.tracks.find({"features": {"$type": "array"}}).sort("_id", 1))
    newer = pack(np.full(N_FEATURES, 7.0))
    db.tracks.update_one({"_id": 2}, {"$set": {"features": newer}})  # a new writer, between read and write
    converted, refused = write(db.tracks, batch)
    assert (converted, refused) == (3, {})
    stored = db.tracks.find_one({"_id": 2})
    assert stored is not None and bytes(stored["features"]) == bytes(newer)


def test_unconvertible_vectors_are_reported_and_left_exactly_as_they_were(db: Db) -> None:
    db.tracks.insert_many([*legacy_docs(3), *BROKEN])
    before = {d["_id"]: d for d in db.tracks.find({"_id": {"$gte": 900}})}
    done = migrate_vectors(db, batch_size=2)
    assert done.converted == 3 and sorted(done.failed) == [900, 901, 902]
    assert done.failed[900] == "wrong_length: 517 values, expected 518"
    assert done.failed[901].startswith("not_numeric: value 517 is not a number")
    assert done.failed[902] == "not_finite: value 517 (1e+39) is outside float32's range"
    assert "failed 3 (not_finite: 1, not_numeric: 1, wrong_length: 1)" in done.line()
    after = {d["_id"]: d for d in db.tracks.find({"_id": {"$gte": 900}})}
    assert after.keys() == before.keys()
    assert after == before
    again = migrate_vectors(db)
    assert (again.converted, sorted(again.failed)) == (0, [900, 901, 902])


def test_an_empty_database_has_nothing_to_migrate(db: Db) -> None:
    done = migrate_vectors(db)
    assert (done.legacy, done.converted, done.already_packed) == (0, 0, 0)
    assert done.line().startswith("nothing changed: converted 0")
