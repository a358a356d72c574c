"""pymongo against the real local MongoDB-compatible server: indexes, upserts, bulk writes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from bson.binary import Binary
from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from infra.errors import UnreachableError
from infra.mongo import init_db, ping
from infra.settings import Settings
from infra.stack.process import free_port
from schemas.documents import COLLECTIONS, PlayDoc, TrackDoc
from schemas.features import N_FEATURES
from schemas.vectors import SUBTYPE, pack, unpack

pytestmark = pytest.mark.stack


def test_init_db_creates_everything_once(db: Database[dict[str, Any]]) -> None:
    created = init_db(db)
    assert {c.name for c in COLLECTIONS} <= set(db.list_collection_names())
    assert "index tracks.cluster_1" in created
    assert init_db(db) == []  # second run changes nothing
    names = {i["name"] for i in db.tracks.list_indexes()}
    assert {"cluster_1", "genre_top_1", "artist_1"} <= names


def test_upserts_are_idempotent(db: Database[dict[str, Any]]) -> None:
    doc = TrackDoc(id=2, title="Food", artist="AWOL", features=[0.5] * 518, genre_top="Hip-Hop")
    for _ in range(3):
        db.tracks.replace_one({"_id": doc.id}, doc.to_mongo(), upsert=True)
    assert db.tracks.count_documents({}) == 1
    raw = db.tracks.find_one({"_id": 2})
    assert raw is not None and isinstance(raw["features"], Binary)  # stored packed
    stored = TrackDoc.model_validate(raw)
    assert stored.features == [0.5] * 518 and stored.title == "Food"


def test_packed_vectors_round_trip_unchanged(db: Database[dict[str, Any]]) -> None:
    """The server keeps BSON binary subtype 9 and its bytes, through find, a projection and
    an aggregation, and tells it apart from a legacy array by BSON type."""
    vector = np.random.default_rng(0).standard_normal(N_FEATURES).astype(np.float32)
    packed = pack(vector)
    db.tracks.insert_many(
        [{"_id": 1, "features": packed}, {"_id": 2, "features": vector.astype(float).tolist()}]
    )
    reads = [
        db.tracks.find_one({"_id": 1}),
        db.tracks.find_one({"_id": 1}, {"features": 1}),
        next(db.tracks.aggregate([{"$match": {"_id": 1}}, {"$project": {"features": 1}}])),
    ]
    for doc in reads:
        assert doc is not None and isinstance(doc["features"], Binary)
        assert doc["features"].subtype == SUBTYPE and bytes(doc["features"]) == bytes(packed)
        assert unpack(doc["features"]).tobytes() == vector.tobytes()
    assert [d["_id"] for d in db.tracks.find({"features": {"$type": "binData"}}, {"_id": 1})] == [1]
    assert [d["_id"] for d in db.tracks.find({"features": {"$type": "array"}}, {"_id": 1})] == [2]


def test_bulk_upsert_then_query(db: Database[dict[str, Any]]) -> None:
    ops = [
        UpdateOne(
            {"_id": i}, {"$set": {"title": f"t{i}", "cluster": i % 4, "genre_top": "Rock"}}, upsert=True
        )
        for i in range(1, 501)
    ]
    result = db.tracks.bulk_write(ops, ordered=False)
    assert result.upserted_count == 500
    again = db.tracks.bulk_write(ops, ordered=False)
    assert again.upserted_count == 0 and again.modified_count == 0
    assert db.tracks.count_documents({"cluster": 3}) == 125
    titles = [d["title"] for d in db.tracks.find({"cluster": 1}).sort("_id", 1).limit(3)]
    assert titles == ["t1", "t5", "t9"]


def test_unique_index_refuses_duplicates(db: Database[dict[str, Any]]) -> None:
    db.users.create_index("email", unique=True)
    db.users.insert_one({"_id": "a", "email": "a@example.org"})
    with pytest.raises(DuplicateKeyError):
        db.users.insert_one({"_id": "b", "email": "a@example.org"})
    with pytest.raises(DuplicateKeyError):
        db.plays.insert_one(PlayDoc(id="e1", user_id="a", track_id=1, kind="play",
                                    ts="2026-01-01T00:00:00Z").to_mongo())  # fmt: skip
        db.plays.insert_one({"_id": "e1"})
    assert db.plays.count_documents({}) == 1


def test_operator_shaped_values_are_stored_as_data(db: Database[dict[str, Any]]) -> None:
    db.tracks.insert_one({"_id": 1, "title": "x"})
    hostile = {"$ne": None}
    assert db.tracks.count_documents({"title": {"$eq": hostile}}) == 0


def test_unreachable_mongodb_gives_one_actionable_error(settings: Settings) -> None:
    dead = Settings(mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/", data_dir=settings.data_dir)
    with pytest.raises(UnreachableError, match="cadenza stack up"):
        ping(dead)
