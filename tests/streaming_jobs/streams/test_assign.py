"""The new-track assignment query on the real broker, Spark (local[2]) and MongoDB-compatible server.

A model is trained on part of a synthetic catalogue; the rest is published on
``tracks.new``. Every published track must be stored with exactly the cluster the
batch PipelineModel gives it, with matching ``TrackAssigned`` events; bad records are
dead-lettered; a model promoted while the query runs is used from the next batch on.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

import numpy as np
import pytest
from bson.binary import Binary
from pymongo.database import Database
from pyspark.sql import SparkSession

from infra.kafka_clients import consumer
from infra.settings import Settings
from schemas.codec import decode, encode, encode_key
from schemas.events import DeadLetter, TrackAssigned, TrackEvent
from schemas.topics import DLQ, TRACKS_ASSIGNED, TRACKS_NEW
from schemas.vectors import SUBTYPE, unpack
from streaming_jobs.model import registry
from streaming_jobs.model.dataset import to_spark
from streaming_jobs.model.kmeans import predict
from streaming_jobs.model.train import TrainingOptions, run_training
from streaming_jobs.streams.assign import start_assign
from streaming_jobs.streams.shared.status import Counters
from tests.streaming_jobs._catalogue import make_catalogue
from tests.streaming_jobs._plays import publish

pytestmark = [pytest.mark.stack, pytest.mark.spark]

Db = Database[dict[str, Any]]
PER_GENRE, TRAIN_PER_GENRE = 30, 20


def event(doc: dict[str, Any]) -> TrackEvent:
    return TrackEvent(
        track_id=doc["_id"], title=doc["title"], genre_top=doc["genre_top"], features=doc["features"]
    )


def read(settings: Settings, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    c = consumer(settings, topic, group_id=f"test-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest")
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        for records in c.poll(timeout_ms=1000).values():  # nothing more should come
            values.extend(r.value for r in records)
    finally:
        c.close()
    return values


def batch_clusters(spark: SparkSession, db: Db, version: str, docs: list[dict[str, Any]]) -> dict[int, int]:
    """What the registry's PipelineModel gives these tracks in a batch job."""
    pipeline = registry.load_pipeline(registry.get_model(db, version))
    ids = np.asarray([d["_id"] for d in docs], dtype=np.int64)
    matrix = np.asarray([d["features"] for d in docs], dtype=np.float64)
    got_ids, clusters, _ = predict(pipeline, to_spark(spark, ids, matrix, np.zeros(len(ids), dtype=bool)))
    return dict(zip(got_ids.tolist(), clusters.tolist(), strict=True))


def test_new_tracks_get_the_batch_models_cluster_and_follow_promotions(
    spark: SparkSession, topics: Settings, db: Db
) -> None:
    settings = topics.model_copy(update={"stream_trigger_s": 0.5})
    catalogue = make_catalogue(n_genres=4, per_genre=PER_GENRE, separation=3.0, unlabelled=0)
    valid = catalogue.docs[: 4 * PER_GENRE]
    train = [d for i, d in enumerate(valid) if i % PER_GENRE < TRAIN_PER_GENRE]
    fresh = [d for i, d in enumerate(valid) if i % PER_GENRE >= TRAIN_PER_GENRE]
    first, later = fresh[: len(fresh) - 8], fresh[len(fresh) - 8 :]
    db.tracks.insert_many([{**d, "subset": "small", "source": "extracted"} for d in train])
    v1 = run_training(spark, db, settings, TrainingOptions(ks=(4,), projection_sample=50)).doc.id
    assert registry.current_model(db) is not None

    bad = [
        (b"1", b"{not json"),
        (b"2", json.dumps({"track_id": 2, "features": [0.5] * 100}).encode()),  # incomplete
        (b"3", json.dumps({"title": "no id", "features": [0.5] * 518}).encode()),
    ]
    topic = settings.topic(TRACKS_NEW)
    publish(settings, topic, [(encode_key(d["_id"]), encode(event(d))) for d in first] + bad)
    # An ETL-stored track re-announced: its stored fields survive, the cluster is set.
    publish(settings, topic, [(encode_key(train[0]["_id"]), encode(event(train[0])))])

    counters = Counters()
    query = start_assign(spark, settings, counters)
    try:
        query.processAllAvailable()
        expected = batch_clusters(spark, db, v1, [*first, train[0]])
        stored = {d["_id"]: d for d in db.tracks.find({"_id": {"$in": list(expected)}})}
        assert {t: (d["cluster"], d["model_version"]) for t, d in stored.items()} == {
            t: (c, v1) for t, c in expected.items()
        }
        packed = stored[first[0]["_id"]]["features"]
        assert isinstance(packed, Binary) and packed.subtype == SUBTYPE  # stored packed
        assert unpack(packed).tolist() == np.float32(first[0]["features"]).tolist()
        assert stored[first[0]["_id"]]["source"] == "stream"
        assert (stored[train[0]["_id"]]["source"], stored[train[0]["_id"]]["subset"]) == (
            "extracted",
            "small",
        )
        assert len(set(expected.values())) > 1

        assigned = [
            decode(TrackAssigned, v) for v in read(settings, settings.topic(TRACKS_ASSIGNED), len(expected))
        ]
        assert {(a.track_id, a.cluster, a.model_version) for a in assigned} == {
            (t, c, v1) for t, c in expected.items()
        }
        assert len(assigned) == len(expected)

        letters = [decode(DeadLetter, v) for v in read(settings, settings.topic(DLQ), len(bad))]
        assert len(letters) == len(bad)
        assert Counter(d.error_class for d in letters) == Counter({"SchemaError": 3})
        assert counters.snapshot()["tracks-assign"]["dead_letters"] == 3

        # Promote another model while the query runs: the next batch uses it.
        v2 = run_training(
            spark, db, settings, TrainingOptions(ks=(3,), promote=True, projection_sample=50)
        ).doc.id
        assert v2 != v1
        publish(settings, topic, [(encode_key(d["_id"]), encode(event(d))) for d in later])
        query.processAllAvailable()
        expected2 = batch_clusters(spark, db, v2, later)
        stored2 = {
            d["_id"]: (d["cluster"], d["model_version"])
            for d in db.tracks.find({"_id": {"$in": list(expected2)}})
        }
        assert stored2 == {t: (c, v2) for t, c in expected2.items()}
        assert query.exception() is None and query.isActive
    finally:
        query.stop()
