"""Feature vectors for the model: validation (every left-out row counted), split, MongoDB read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from bson.binary import Binary
from pymongo.database import Database

from schemas.features import FEATURE_SET_VERSION, N_FEATURES
from schemas.vectors import SUBTYPE, pack
from streaming_jobs.model.dataset import (
    EXCLUSION_REASONS,
    count_tracks,
    holdout_mask,
    load_tracks,
    play_counts,
    read_ahead,
    validate,
)
from tests._vectors import half_packed
from tests.streaming_jobs._catalogue import make_catalogue

Db = Database[dict[str, Any]]


def vec(value: float = 1.0) -> list[float]:
    return [value] * N_FEATURES


def test_validate_counts_every_left_out_row_by_reason() -> None:
    docs: list[dict[str, Any]] = [
        {"_id": 30, "features": vec(3.0), "genre_top": "Rock"},
        {"_id": 10, "features": vec(1.0), "genre_top": ""},
        {
            "_id": 20,
            "features": [*vec()[:-1], 7],
            "genre_top": "Pop",
            "feature_set_version": FEATURE_SET_VERSION,
        },
        {"_id": 1},
        {"_id": 2, "features": None},
        {"_id": 3, "features": vec()[:-1]},
        {"_id": 4, "features": [*vec()[:-1], float("nan")]},
        {"_id": 5, "features": [*vec()[:-1], float("-inf")]},
        {"_id": 6, "features": [*vec()[:-1], None]},
        {"_id": 7, "features": [*vec()[:-1], "x"]},
        {"_id": 8, "features": vec(), "feature_set_version": "other"},
        {"_id": 9, "features": "not a list"},
    ]
    table = validate(docs)
    assert table.ids.tolist() == [10, 20, 30]
    assert table.genres == (None, "Pop", "Rock")
    assert table.matrix.shape == (3, N_FEATURES) and table.matrix.dtype == np.float64
    assert table.matrix[1, -1] == 7.0
    assert table.excluded_counts == {"missing": 2, "wrong_length": 2, "not_finite": 4, "other_feature_set": 1}
    assert table.excluded_ids == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert tuple(table.excluded_counts) == EXCLUSION_REASONS


def test_validate_of_nothing_is_an_empty_table() -> None:
    table = validate([])
    assert len(table) == 0 and table.matrix.shape == (0, N_FEATURES)


def test_holdout_is_seeded_per_track_and_stable_under_additions() -> None:
    ids = np.arange(1, 20001, dtype=np.int64)
    mask = holdout_mask(ids, 0.2, seed=42)
    assert 0.18 < mask.mean() < 0.22
    assert np.array_equal(mask, holdout_mask(ids, 0.2, seed=42))
    assert not np.array_equal(mask, holdout_mask(ids, 0.2, seed=43))
    more = np.concatenate([ids, np.arange(50000, 50100, dtype=np.int64)])
    assert np.array_equal(holdout_mask(more, 0.2, 42)[: ids.size], mask)
    assert not holdout_mask(ids, 0.0, 42).any()


@pytest.mark.stack
def test_count_tracks_reads_the_collections_statistics(db: Db) -> None:
    assert count_tracks(db) == 0  # no collection yet
    db.tracks.insert_many([{"_id": i} for i in range(1, 6)])
    assert count_tracks(db) == 5


@pytest.mark.stack
def test_load_tracks_reads_mongodb(db: Db) -> None:
    catalogue = make_catalogue(n_genres=3, per_genre=5, unlabelled=1)
    db.tracks.insert_many(catalogue.docs)
    seen: list[int] = []
    table = load_tracks(db, batch_size=4, on_batch=seen.append)
    assert len(table) == catalogue.n_valid and sum(seen) == len(catalogue.docs)
    assert {r: n for r, n in table.excluded_counts.items() if n} == catalogue.bad
    first = next(d for d in catalogue.docs if d["_id"] == int(table.ids[0]))
    assert table.matrix[0].tolist() == np.float32(first["features"]).tolist()  # stored as float32
    assert sum(g is None for g in table.genres) == 1


def test_validate_reads_packed_vectors_and_refuses_bad_ones_by_reason() -> None:
    catalogue = make_catalogue(n_genres=2, per_genre=6, unlabelled=0)
    legacy, mixed = validate(catalogue.docs), validate(half_packed(catalogue.docs), chunk=5)
    assert mixed.ids.tolist() == legacy.ids.tolist() and mixed.genres == legacy.genres
    assert mixed.matrix.dtype == np.float64 and mixed.matrix.tobytes() == legacy.matrix.tobytes()
    assert mixed.excluded == legacy.excluded
    bad = validate(
        [
            {"_id": 1, "features": pack(vec())[:-4] + b"\x00\x00\x00\x00"},  # bytes: subtype 0
            {"_id": 2, "features": Binary(bytes(pack(vec()))[:-4], SUBTYPE)},
            {"_id": 3, "features": Binary(bytes(pack(vec()))[:-4] + b"\x00\x00\xc0\x7f", SUBTYPE)},  # NaN
            {"_id": 4, "features": pack(vec()), "feature_set_version": "other"},
            {"_id": 5, "features": pack(vec(2.0))},
        ]
    )
    assert bad.ids.tolist() == [5] and bad.matrix[0].tolist() == vec(2.0)
    assert {r: ids for r, ids in bad.excluded.items() if ids} == {
        "wrong_length": [1, 2],
        "not_finite": [3],
        "other_feature_set": [4],
    }


@pytest.mark.stack
def test_load_tracks_reads_a_half_migrated_collection_like_a_legacy_one(db: Db) -> None:
    catalogue = make_catalogue(n_genres=3, per_genre=5, unlabelled=1)
    db.tracks.insert_many(catalogue.docs)
    legacy = load_tracks(db, batch_size=4)
    db.tracks.delete_many({})
    db.tracks.insert_many(half_packed(catalogue.docs))
    assert db.tracks.count_documents({"features": {"$type": "binData"}}) > 0
    mixed = load_tracks(db, batch_size=4)
    assert mixed.ids.tolist() == legacy.ids.tolist() and mixed.genres == legacy.genres
    assert mixed.matrix.tobytes() == legacy.matrix.tobytes()
    assert mixed.excluded == legacy.excluded


@pytest.mark.stack
def test_play_counts_are_most_played_first(db: Db) -> None:
    db.plays.insert_many(
        [
            {"_id": f"e{i}", "user_id": "u", "track_id": t, "kind": "play"}
            for i, t in enumerate([5, 7, 7, 9, 7, 9])
        ]
    )
    assert play_counts(db) == [(7, 3), (9, 2), (5, 1)]
    assert play_counts(db, limit=1) == [(7, 3)]


def test_read_ahead_keeps_order_raises_the_readers_error_and_stops_early() -> None:
    assert list(read_ahead(iter([[1], [2, 3], []]))) == [[1], [2, 3], []]

    def failing() -> Iterator[list[int]]:
        yield [1]
        raise ValueError("the server went away")

    got: list[list[int]] = []
    with pytest.raises(ValueError, match="went away"):
        got.extend(read_ahead(failing()))
    assert got == [[1]]

    produced: list[int] = []

    def endless() -> Iterator[list[int]]:
        i = 0
        while True:
            produced.append(i)
            yield [i]
            i += 1

    ahead = read_ahead(endless(), depth=2)
    assert next(ahead) == [0]
    ahead.close()  # the reader stops instead of reading on
    assert len(produced) <= 5
