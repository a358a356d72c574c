"""The worker's start-up catalogue from MongoDB: packed and legacy vectors load alike."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pymongo.database import Database

from recommender_stream.catalogue import Catalogue
from recommender_stream.catalogue_loader import load_catalogue
from tests._vectors import half_packed, model_518
from tests.streaming_jobs._catalogue import make_catalogue

pytestmark = pytest.mark.stack
Db = Database[dict[str, Any]]


def snapshot(catalogue: Catalogue) -> tuple[list[int], list[int], list[str], bytes]:
    coords = catalogue.coords(list(range(len(catalogue))))
    return catalogue.ids, catalogue.clusters, catalogue.titles, coords.tobytes()


def test_a_half_migrated_collection_loads_like_a_legacy_one(db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recommender_stream.catalogue_loader.BATCH", 7)  # several batches
    model = model_518()
    catalogue = make_catalogue(n_genres=3, per_genre=6, unlabelled=0)
    bad = len(catalogue.docs) - catalogue.n_valid
    db.tracks.insert_many(catalogue.docs)
    legacy = load_catalogue(db, model)
    assert (legacy.tracks, legacy.left_out) == (catalogue.n_valid, bad)
    db.tracks.delete_many({})
    db.tracks.insert_many(half_packed(catalogue.docs))
    mixed = load_catalogue(db, model)
    assert (mixed.tracks, mixed.left_out) == (catalogue.n_valid, bad)
    assert snapshot(mixed.catalogue) == snapshot(legacy.catalogue)
    first = next(d for d in catalogue.docs if d["_id"] == mixed.catalogue.ids[0])
    vector = np.float32(first["features"]).astype(np.float64)  # stored as float32
    assert mixed.catalogue.clusters[0] == model.assign_one(vector)
