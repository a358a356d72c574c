"""``import-features``: FMA's features.csv (and synthetic rows) -> the same tracks documents,
on the real FerretDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from bson.binary import Binary
from pymongo.database import Database

from etl.errors import EtlError, MetadataError
from etl.import_features import (
    FMA_SOURCE,
    SYNTHETIC_SOURCE,
    documents,
    fma_rows,
    import_fma,
    import_rows,
    import_synthetic,
    synthetic_rows,
)
from etl.sample_data import tracks_frame
from etl.synthetic import GENRES, synthetic_features
from etl.writer import count
from infra.settings import Settings
from schemas.documents import TrackDoc
from schemas.features import FEATURE_SET_VERSION, FEATURE_TRIPLES, N_FEATURES
from schemas.vectors import SUBTYPE, unpack

Db = Database[dict[str, Any]]
IDS = [2, 3, 5, 10, 20, 26, 30, 46, 48, 134, 135, 136]
NAN_ID, ORPHAN_ID = 5, 999


@pytest.fixture
def fma_root(tmp_path: Path) -> Path:
    """tracks.csv for IDS; features.csv for IDS + one id tracks.csv lacks; one all-NaN row."""
    rng = np.random.default_rng(4)
    meta = tmp_path / "fma_metadata"
    meta.mkdir()
    tracks_frame(IDS, [i % 4 for i in range(len(IDS))], 30.0, rng).to_csv(meta / "tracks.csv")
    ids = [*IDS, ORPHAN_ID]
    _, _, matrix = synthetic_features(len(ids), genres=4, seed=3)
    frame = pd.DataFrame(matrix.astype(np.float64), index=pd.Index(ids, name="track_id"))
    frame.columns = pd.MultiIndex.from_tuples(FEATURE_TRIPLES, names=["feature", "statistics", "number"])
    frame.loc[NAN_ID] = np.nan  # a track FMA failed to analyse
    frame.to_csv(meta / "features.csv", float_format="%.10e")
    return tmp_path


@pytest.mark.stack
def test_fma_features_are_stored_as_track_documents(settings: Settings, db: Db, fma_root: Path) -> None:
    progress: list[tuple[int, int]] = []
    summary = import_fma(settings, fma_root, progress=lambda d, n: progress.append((d, n)))
    expected = [i for i in IDS if i != NAN_ID]
    assert (summary.rows, summary.stored, summary.already) == (len(expected), len(expected), 0)
    assert (summary.not_finite, summary.without_metadata) == (1, 1)
    assert progress[-1] == (len(expected), len(expected))

    stored = {d["_id"]: d for d in db.tracks.find({})}
    assert sorted(stored) == expected
    table = pd.read_csv(fma_root / "fma_metadata" / "features.csv", index_col=0, header=[0, 1, 2])
    tracks = pd.read_csv(fma_root / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1])
    for track_id, doc in stored.items():
        assert TrackDoc.model_validate(doc).to_mongo().keys() == doc.keys()
        assert (doc["source"], doc["feature_set_version"]) == (FMA_SOURCE, FEATURE_SET_VERSION)
        assert doc["audio_path"] is None and doc["subset"] == "small"
        assert doc["title"] == tracks.loc[track_id, ("track", "title")]
        assert doc["genre_top"] == tracks.loc[track_id, ("track", "genre_top")]
        row = table.loc[track_id, list(FEATURE_TRIPLES)].to_numpy(dtype=np.float32)
        np.testing.assert_array_equal(unpack(doc["features"]), row)

    again = import_fma(settings, fma_root)
    assert (again.stored, again.already) == (0, len(expected))
    assert {d["_id"]: d for d in db.tracks.find({})} == stored  # nothing changed


@pytest.mark.stack
def test_synthetic_rows_are_imported_in_batches(settings: Settings, db: Db) -> None:
    summary = import_synthetic(settings, 1100, genres=8, seed=5)
    assert (summary.source, summary.rows, summary.stored) == (SYNTHETIC_SOURCE, 1100, 1100)
    assert count(db.tracks) == 1100 and summary.rows_per_s > 0
    ids, labels, matrix = synthetic_features(1100, genres=8, seed=5)
    for i in (0, 499, 500, 1099):  # first and last rows of batches
        doc = db.tracks.find_one({"_id": int(ids[i])})
        assert doc is not None
        assert doc["genre_top"] == GENRES[labels[i]][1] and doc["genres"] == [GENRES[labels[i]][0]]
        assert doc["title"] and doc["artist"] and doc["source"] == SYNTHETIC_SOURCE
        np.testing.assert_array_equal(unpack(doc["features"]), matrix[i])


@pytest.mark.stack
def test_rows_already_stored_are_counted_not_changed(settings: Settings, db: Db) -> None:
    rows = synthetic_rows(30, genres=2, seed=1)
    first = TrackDoc(id=int(rows.ids[3]), title="mine", features=[0.5] * N_FEATURES, source="extracted")
    db.tracks.insert_one(first.to_mongo())
    summary = import_rows(settings, rows, batch=7)
    assert (summary.stored, summary.already) == (29, 1)
    doc = db.tracks.find_one({"_id": int(rows.ids[3])})
    assert doc is not None and doc["title"] == "mine"


def test_documents_have_the_track_doc_shape() -> None:
    rows = synthetic_rows(3, genres=3, seed=0)
    docs = documents(rows, 1, 3)
    assert [d["_id"] for d in docs] == rows.ids[1:3].tolist()
    for doc in docs:
        model = TrackDoc.model_validate(doc)
        assert list(model.to_mongo()) == list(doc)
        assert isinstance(doc["features"], Binary) and doc["features"].subtype == SUBTYPE  # packed
        assert unpack(doc["features"]).shape == (N_FEATURES,)


def test_an_id_offset_moves_every_synthetic_id_and_nothing_else() -> None:
    rows, moved = synthetic_rows(50, seed=2), synthetic_rows(50, seed=2, id_offset=10_000)
    assert (moved.ids == rows.ids + 10_000).all()
    assert (moved.matrix == rows.matrix).all()
    assert [m["genre_top"] for m in moved.meta] == [m["genre_top"] for m in rows.meta]
    assert all(m["audio_path"] is None for m in moved.meta)  # imported rows: not playable


def test_bad_arguments_and_files_are_actionable_errors(tmp_path: Path, fma_root: Path) -> None:
    with pytest.raises(EtlError, match="--genres must be between 1 and 16"):
        synthetic_rows(10, genres=17)
    with pytest.raises(EtlError, match="positive number"):
        synthetic_rows(0)
    with pytest.raises(EtlError, match="--id-offset must not be negative"):
        synthetic_rows(10, id_offset=-1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MetadataError, match=r"tracks\.csv not found"):
        fma_rows(empty)
    with pytest.raises(EtlError, match="unknown subset"):
        fma_rows(fma_root, subset="tiny")
    (fma_root / "fma_metadata" / "features.csv").unlink()
    with pytest.raises(MetadataError, match=r"features\.csv not found"):
        fma_rows(fma_root)
