"""The plays queries on the real broker, real Spark (local[2]) and the real MongoDB-compatible server.

A scripted set of plays with known event times goes through in three stages (on time;
late inside and outside the watermark, duplicates, bad records; a flush that moves the
watermark past every session). Sessions, trending windows, profiles and history must
equal the reference of ``_plays.py``; a second run stops the queries mid-stream and
restarts them from their checkpoints and must end in the same state.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.database import Database
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from infra.kafka_clients import consumer
from infra.settings import Settings
from schemas.codec import decode, encode
from schemas.documents import UserDoc
from schemas.events import DeadLetter, PlayEvent
from schemas.topics import DLQ, PLAYS
from streaming_jobs.streams.plays import start_plays
from streaming_jobs.streams.shared.status import Counters
from tests.streaming_jobs._plays import VERSION, Reference, install_model_files, play, publish, unique

pytestmark = [pytest.mark.stack, pytest.mark.spark]

Db = Database[dict[str, Any]]
CLUSTERS = {11: 0, 12: 0, 13: 0, 14: 1, 15: 1, 16: 2}
NEW_TRACK, NEW_TRACK_CLUSTER = 17, 1  # stored by the assign query after training: found in MongoDB
MINUTES = 60


def stage_one() -> list[PlayEvent]:
    return [
        play("alice", 11, 0),
        play("alice", 11, 3, "complete"),
        play("alice", 12, 5),
        play("alice", 12, 6, "skip"),
        play("alice", 13, 8, "like"),
        play("alice", 14, 53),
        play("alice", NEW_TRACK, 55),
        play("bob", 14, 1),
        play("bob", 15, 4),
        play("bob", 15, 10, "like"),
        play("bob", 16, 20),
        play("carol", 16, 2),
        play("carol", 11, 40),
    ]


def stage_two(first: list[PlayEvent]) -> tuple[list[PlayEvent], list[PlayEvent], list[tuple[bytes, bytes]]]:
    """(on time, too late, bad records): the watermark is now 55 - 10 = 45 minutes."""
    on_time = [play("alice", 12, 50), play("bob", 16, 47, "skip")]
    late = [play("carol", 13, 30)]
    duplicates = [first[5], first[0]]  # re-delivered: alice@53 (on time), alice@0 (late)
    future = PlayEvent(user_id="mallory", track_id=11, kind="play", ts=datetime.now(UTC) + timedelta(days=1))
    bad = [
        (b"mallory", b"{not json"),
        (b"mallory", json.dumps({"user_id": "mallory", "track_id": "abc", "kind": "play"}).encode()),
        (b"mallory", encode(play("mallory", 999, 52))),
        (b"mallory", encode(future)),
    ]
    return on_time + late + duplicates, late, bad


def wait_for(check: Callable[[], bool], timeout: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def drain(queries: list[StreamingQuery]) -> None:
    for q in queries:
        q.processAllAvailable()


@pytest.fixture
def plays_settings(topics: Settings, db: Db) -> Settings:
    settings = topics.model_copy(update={"stream_trigger_s": 0.5, "profile_trigger_s": 0.5})
    install_model_files(settings.models_path, CLUSTERS)
    db.tracks.insert_many(
        [{"_id": t, "title": f"t{t}", "cluster": c, "model_version": VERSION} for t, c in CLUSTERS.items()]
        + [{"_id": NEW_TRACK, "title": "new", "cluster": NEW_TRACK_CLUSTER, "model_version": VERSION}]
    )
    return settings


class Run:
    """Starts/stops the three queries against one checkpoint directory."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark, self.settings, self.counters = spark, settings, Counters()
        self.queries: list[StreamingQuery] = []
        self._sinks: Any = None

    def start(self) -> list[StreamingQuery]:
        self._sinks = start_plays(self.spark, self.settings, self.counters)
        self.queries = self._sinks.queries
        return self.queries

    def stop(self) -> None:
        for q in self.queries:
            q.stop()
        if self._sinks is not None:
            self._sinks.close()
        for q in self.queries:
            assert q.exception() is None, q.exception()


@pytest.fixture
def run(spark: SparkSession, plays_settings: Settings) -> Iterator[Run]:
    r = Run(spark, plays_settings)
    yield r
    r.stop()


def as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def clean(doc: dict[str, Any], *drop: str) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in {"_id", "updated", *drop}}
    return {k: as_utc(v) if isinstance(v, datetime) else v for k, v in out.items()}


@pytest.mark.parametrize("restart", [False, True], ids=["uninterrupted", "stopped-and-restarted"])
def test_plays_stream_matches_reference(run: Run, plays_settings: Settings, db: Db, restart: bool) -> None:
    settings = plays_settings
    topic = settings.topic(PLAYS)
    clusters = {**CLUSTERS, NEW_TRACK: NEW_TRACK_CLUSTER}

    first = stage_one()
    publish(settings, topic, first)
    drain(run.start())

    second, late, bad = stage_two(first)
    publish(settings, topic, [*second, *bad])
    if restart:
        time.sleep(1.0)  # a micro-batch of stage two is usually in flight now
        run.stop()
        run.start()
    drain(run.queries)

    flush = play("zed", 16, 300)
    publish(settings, topic, [flush])
    drain(run.queries)

    gap, window, slide = timedelta(minutes=30), timedelta(minutes=10), timedelta(minutes=1)
    accepted = unique([*first, *[e for e in second if e not in late], flush])
    ref = Reference(accepted, clusters, gap, window, slide)
    final_watermark = flush.ts - timedelta(minutes=10)

    expected_sessions = ref.sessions(final_watermark)
    assert len(expected_sessions) == 5
    wait_for(lambda: db.sessions.count_documents({}) >= len(expected_sessions), what="closed sessions")
    sessions = {d["_id"]: clean(d) for d in db.sessions.find()}
    assert sessions == expected_sessions

    expected_trending = ref.trending(settings.trending_top_n)
    wait_for(
        lambda: (
            {d["_id"]: d["plays"] for d in db.trending.find()}
            == {k: v["plays"] for k, v in expected_trending.items()}
        ),
        what="trending windows",
    )
    trending = {d["_id"]: clean(d, "scope") for d in db.trending.find()}
    assert trending == expected_trending

    expected_profiles = ref.profiles(VERSION)
    wait_for(lambda: db.users.count_documents({}) >= len(expected_profiles), what="profiles")
    profiles = {d["_id"]: clean(d) for d in db.users.find()}
    assert profiles == expected_profiles
    alice = UserDoc.model_validate(db.users.find_one({"_id": "alice"}))
    assert alice.cluster_counts() == expected_profiles["alice"]["counts"][VERSION]
    assert [(t.track_id, t.plays) for t in alice.top_tracks(2)] == [(12, 2), (11, 1)]

    # History: every valid play once (late ones included), duplicates not again.
    valid = unique([*first, *second, flush])
    stored = {d["_id"]: d for d in db.plays.find()}
    assert set(stored) == {str(e.event_id) for e in valid}
    carol_late = stored[str(late[0].event_id)]
    assert (carol_late["user_id"], carol_late["track_id"], carol_late["cluster"]) == ("carol", 13, 0)
    assert stored[str(first[6].event_id)]["cluster"] == NEW_TRACK_CLUSTER

    # Dead letters: one per bad record, each with its reason and original bytes.
    letters = read_dead_letters(settings, expected=len(bad))
    assert Counter(d.error_class for d in letters) == Counter(
        {"SchemaError": 2, "UnknownTrackError": 1, "FutureEventError": 1}
    )
    assert {base64.b64decode(d.value_b64) for d in letters} == {value for _, value in bad}
    assert all(d.topic == topic and d.offset is not None and d.error for d in letters)
    if not restart:  # counters live in the process; a restart starts them again
        snapshot = run.counters.snapshot()
        assert snapshot["plays-sessions"]["sessions_closed"] == len(expected_sessions)
        history = snapshot["plays-history"]
        assert history["plays_stored"] == len(valid)
        assert history["plays_already_stored"] == 2  # the two re-delivered plays
        assert history["dead_letters.SchemaError"] == 2


def read_dead_letters(settings: Settings, expected: int) -> list[DeadLetter]:
    c = consumer(
        settings, settings.topic(DLQ), group_id=f"test-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest"
    )
    letters: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + 30
        while len(letters) < expected and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=500).values():
                letters.extend(decode(DeadLetter, r.value) for r in records)
        time.sleep(1.0)
        for records in c.poll(timeout_ms=500).values():
            letters.extend(decode(DeadLetter, r.value) for r in records)
    finally:
        c.close()
    assert len(letters) == expected, letters
    return letters
