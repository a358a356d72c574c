"""A Faust recommender worker on the real broker, MongoDB-compatible server and a Spark-trained model.

Scripted listeners play tracks of one genre each; their recommendations must come
mostly from the clusters they played. A track published on ``tracks.new`` is placed by
the worker in the cluster Spark's PipelineModel gives it and can be played and
recommended at once. Bad records are dead-lettered and the worker carries on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymongo.database import Database
from pyspark.sql import SparkSession

from infra.kafka_clients import consumer, producer
from infra.settings import Settings
from infra.stack.process import free_port
from schemas.cluster_model import current_version
from schemas.codec import decode, encode, encode_key
from schemas.events import DeadLetter, PlayEvent, PlayKind, Recommendation, TrackEvent
from schemas.topics import DLQ, PLAYS, RECOMMENDATIONS, TRACKS_NEW
from streaming_jobs import registry
from streaming_jobs.dataset import to_spark
from streaming_jobs.train import predict
from streaming_jobs.training import TrainingOptions, run_training
from tests.streaming_jobs._catalogue import make_catalogue

pytestmark = [pytest.mark.stack, pytest.mark.spark]
Db = Database[dict[str, Any]]
PER_GENRE = 30


def env_for(settings: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    env.update(
        CADENZA_KAFKA_BOOTSTRAP=settings.bootstrap_servers,
        CADENZA_MONGODB_URI=settings.mongo_uri,
        CADENZA_MONGODB_DB=settings.mongodb_db,
        CADENZA_TOPIC_PREFIX=settings.topic_prefix,
        CADENZA_DATA_DIR=str(settings.data_dir),
        CADENZA_FAUST_PORT=str(port),
        CADENZA_LOG_LEVEL="INFO",
    )
    return env


class Worker:
    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log, self.port = settings, log, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recommender_stream.worker", "--web-port", str(self.port)],
            env=env_for(self.settings, self.port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=60)


def send(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    p = producer(settings)
    try:
        for key, value in records:
            p.send(topic, key=key, value=value)
        p.flush(timeout=30)
    finally:
        p.close(timeout=10)


class Reader:
    """Collects every record of a topic from the beginning."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.c = consumer(
            settings, topic, group_id=f"test-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest"
        )
        self.values: list[bytes] = []

    def until(self, check: Any, timeout: float = 90.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in self.c.poll(timeout_ms=300).values():
                self.values.extend(r.value for r in records)
            if check(self.values):
                return self.values
        raise AssertionError(f"timed out; got {len(self.values)} records")


@pytest.fixture
def trained(spark: SparkSession, topics: Settings, db: Db) -> dict[str, Any]:
    catalogue = make_catalogue(n_genres=4, per_genre=PER_GENRE, separation=3.0, unlabelled=0)
    valid = catalogue.docs[: 4 * PER_GENRE]
    stored = [d for i, d in enumerate(valid) if i % PER_GENRE < PER_GENRE - 2]
    fresh = [d for i, d in enumerate(valid) if i % PER_GENRE >= PER_GENRE - 2]
    db.tracks.insert_many(stored)
    doc = run_training(spark, db, topics, TrainingOptions(ks=(4,), projection_sample=50)).doc
    pipeline = registry.load_pipeline(doc)
    ids = np.asarray([d["_id"] for d in valid], dtype=np.int64)
    matrix = np.asarray([d["features"] for d in valid])
    got, clusters, _ = predict(pipeline, to_spark(spark, ids, matrix, np.zeros(ids.size, dtype=bool)))
    return {
        "stored": stored,
        "fresh": fresh,
        "spark_cluster": dict(zip(got.tolist(), clusters.tolist(), strict=True)),
    }


@pytest.fixture
def worker(topics: Settings, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(topics, tmp_path / "worker.log")
    yield w
    w.stop()


def play(user: str, track: int, kind: str = "play") -> tuple[bytes, bytes]:
    return encode_key(user), encode(PlayEvent(user_id=user, track_id=track, kind=PlayKind(kind)))


def test_listeners_get_recommendations_from_their_clusters(
    trained: dict[str, Any], topics: Settings, worker: Worker, tmp_path: Path
) -> None:
    settings = topics
    spark_cluster: dict[int, int] = trained["spark_cluster"]
    by_cluster: dict[int, list[int]] = defaultdict(list)
    for d in trained["stored"]:
        by_cluster[spark_cluster[d["_id"]]].append(d["_id"])
    (ca, alice_tracks), (cb, bob_tracks) = sorted(by_cluster.items())[:2]
    worker.start()
    recs = Reader(settings, settings.topic(RECOMMENDATIONS))
    plays = [play("alice", t) for t in alice_tracks[:6]] + [play("bob", t) for t in bob_tracks[:6]]
    send(settings, settings.topic(PLAYS), plays)

    def latest(values: list[bytes]) -> dict[str, Recommendation]:
        out: dict[str, Recommendation] = {}
        for v in values:
            r = decode(Recommendation, v)
            out[r.user_id] = r
        return out

    recs.until(lambda v: len(v) >= len(plays), timeout=120)
    final = latest(recs.values)
    for user, cluster, played in (("alice", ca, alice_tracks[:6]), ("bob", cb, bob_tracks[:6])):
        items = final[user].items
        assert len(items) == settings.reco_k
        assert not {i.track_id for i in items} & set(played)
        in_cluster = sum(1 for i in items if i.cluster == cluster)
        assert in_cluster >= 0.7 * len(items), (user, [(i.track_id, i.cluster, i.reason) for i in items])
        assert all(i.reason for i in items) and any(i.reason.startswith("sounds like") for i in items)
        assert final[user].model_version == current_version(settings.models_path)

    # A new track: placed by the worker in the cluster Spark gives it, playable and recommendable at once.
    new = trained["fresh"][0]
    send(
        settings,
        settings.topic(TRACKS_NEW),
        [
            (
                encode_key(new["_id"]),
                encode(TrackEvent(track_id=new["_id"], title="Fresh One", features=new["features"])),
            )
        ],
    )
    time.sleep(1.0)
    send(settings, settings.topic(PLAYS), [play("carol", new["_id"])])
    recs.until(lambda v: "carol" in latest(v), timeout=30)
    carol = latest(recs.values)["carol"]
    similar = [i for i in carol.items if i.reason == "sounds like Fresh One"]
    assert similar and {i.cluster for i in similar} == {spark_cluster[new["_id"]]}

    # Bad input: dead-lettered with the reason; the worker goes on.
    bad = [
        (b"mallory", b"\xff\xfe not json"),
        (b"mallory", json.dumps({"user_id": "m", "track_id": "x"}).encode()),
        play("mallory", 999_999),
    ]
    dlq = Reader(settings, settings.topic(DLQ))
    send(settings, settings.topic(PLAYS), [*bad, play("dave", alice_tracks[0])])
    letters = [decode(DeadLetter, v) for v in dlq.until(lambda v: len(v) >= 3)]
    assert Counter(d.error_class for d in letters) == Counter({"SchemaError": 2, "UnknownTrackError": 1})
    recs.until(lambda v: "dave" in latest(v), timeout=30)
    text = worker.metrics()
    assert "cadenza_recommender_events_total" in text and 'reason="UnknownTrackError"} 1' in text
