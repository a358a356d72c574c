"""The catalogue API's similar tracks read packed and legacy vectors alike (real MongoDB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from gateway.catalogue import Similar
from schemas.cluster_model import CURRENT_FILE, export_path
from tests._vectors import half_packed, model_518
from tests.streaming_jobs._catalogue import make_catalogue

pytestmark = pytest.mark.stack
Db = Database[dict[str, Any]]


def test_similar_tracks_of_a_half_migrated_cluster_are_those_of_the_legacy_one(
    db: Db, tmp_path: Path
) -> None:
    model = model_518()
    model.save(export_path(tmp_path, model.version))
    (tmp_path / CURRENT_FILE).write_text(model.version)
    catalogue = make_catalogue(n_genres=2, per_genre=8, unlabelled=0)
    # one cluster, unusable vectors included (the gateway reads no feature-set version)
    docs = [{**d, "cluster": 0} for d in catalogue.docs if d.get("feature_set_version") != "old-1"]
    seed = docs[1]["_id"]
    db.tracks.insert_many(docs)
    legacy = Similar(tmp_path).of(db, seed, limit=100)
    db.tracks.delete_many({})
    db.tracks.insert_many(half_packed(docs))
    mixed = Similar(tmp_path).of(db, seed, limit=100)
    assert len(legacy["items"]) == catalogue.n_valid - 1
    assert mixed == legacy
