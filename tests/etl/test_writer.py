"""What the ETL stores and announces: packed float32 vectors in ``tracks``, JSON lists on ``tracks.new``."""

from __future__ import annotations

import numpy as np
import pytest
from bson.binary import Binary

from etl.errors import EtlError
from etl.writer import track_document, track_event
from schemas.documents import Excerpt, TrackDoc
from schemas.features import N_FEATURES
from schemas.vectors import SUBTYPE, VectorError, pack, unpack


def test_a_track_is_stored_packed_and_announced_with_the_same_float32_values() -> None:
    features = np.random.default_rng(2).standard_normal(N_FEATURES)  # float64 from an extractor
    excerpt = {"offset_s": 105.0, "duration_s": 30.0}
    doc = track_document(
        {"id": 7, "title": "Seven", "genres": [12], "excerpt": excerpt}, features, "extracted"
    )
    assert list(doc) == list(TrackDoc(id=7, excerpt=excerpt).to_mongo())  # the TrackDoc shape, in its order
    assert doc["excerpt"] == excerpt
    assert isinstance(doc["features"], Binary) and doc["features"].subtype == SUBTYPE
    assert unpack(doc["features"]).tobytes() == features.astype(np.float32).tobytes()
    event = track_event(doc)
    assert event.features == features.astype(np.float32).tolist()  # the JSON list, float32 values
    legacy = {**doc, "features": features.astype(np.float32).tolist()}
    assert track_event(legacy).features == event.features


def test_a_track_without_a_usable_vector_is_neither_stored_nor_announced() -> None:
    with pytest.raises(VectorError, match="not finite"):
        track_document({"id": 8}, np.full(N_FEATURES, np.inf), "extracted")
    doc = track_document({"id": 8}, np.zeros(N_FEATURES), "extracted")
    with pytest.raises(EtlError, match="no features"):
        track_event({**doc, "features": None})
    with pytest.raises(EtlError, match="track 8: invalid feature vector: 3 values"):
        track_event({**doc, "features": [1.0, 2.0, 3.0]})
    assert track_event({**doc, "features": pack(np.ones(N_FEATURES))}).features == [1.0] * N_FEATURES


def test_the_excerpt_is_stored_only_when_known() -> None:
    """Optional field: a document (or an update built from one, as the assign stream's
    ``$set``) without an excerpt leaves it out rather than writing null over the ETL's."""
    assert "excerpt" not in TrackDoc(id=3, duration_s=241.0).to_mongo()
    stored = TrackDoc(id=3, duration_s=241.0, excerpt={"offset_s": 105.0, "duration_s": 30.0}).to_mongo()
    assert stored["excerpt"] == {"offset_s": 105.0, "duration_s": 30.0} and stored["duration_s"] == 241.0
    assert TrackDoc.model_validate(stored).excerpt == Excerpt(offset_s=105.0, duration_s=30.0)
    assert TrackDoc.model_validate({"_id": 3}).excerpt is None  # documents written before it existed
    with pytest.raises(ValueError, match="duration_s"):
        TrackDoc(id=3, excerpt={"offset_s": 0.0, "duration_s": 0.0})
