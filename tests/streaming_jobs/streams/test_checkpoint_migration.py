"""A new ``CADENZA_SPARK_SHUFFLE_PARTITIONS`` on existing checkpoints, on real Spark (local[2]), the
real broker and the real MongoDB-compatible server (issue 23).

The plays queries run with 3 shuffle partitions, stop, and start again on the same
checkpoints with 2: Spark keeps the checkpoint's 3 (its state is partitioned by it), the
queries neither fail nor lose state (sessions, trending windows and profiles equal the
reference of ``_plays.py`` over the plays of both runs), and the start logs what it kept.
The same run checks what readers of ``cadenza.trending`` end up with: one message per
cluster and micro-batch, and, folded as the recommender and the gateways fold them (newest
window per cluster), each cluster's newest window with its final counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.database import Database
from pyspark.sql import SparkSession

from infra.settings import Settings
from schemas.codec import decode
from schemas.events import Trending
from schemas.topics import PLAYS, TRENDING
from streaming_jobs.streams.plays import start_plays
from streaming_jobs.streams.shared.kafka_io import SHUFFLE_PARTITIONS, checkpoint_conf
from streaming_jobs.streams.shared.status import Counters
from tests.conftest import read_until_idle
from tests.streaming_jobs._plays import VERSION, Reference, install_model_files, play, publish

pytestmark = [pytest.mark.stack, pytest.mark.spark]

CLUSTERS = {11: 0, 12: 0, 13: 1, 14: 2}
STATEFUL = ("plays-sessions", "plays-profiles", "plays-trending")


def as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def clean(doc: dict[str, Any], *drop: str) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in {"_id", "updated", *drop}}
    return {k: as_utc(v) if isinstance(v, datetime) else v for k, v in out.items()}


def run_once(spark: SparkSession, settings: Settings, until: Callable[[], bool]) -> dict[str, set[int]]:
    """Start the plays queries, process what is on the topic, wait ``until``, stop; the state
    shuffle partitions each stateful query ran with."""
    job = start_plays(spark, settings, Counters())
    try:
        for q in job.queries:
            q.processAllAvailable()
        deadline = time.monotonic() + 60
        while not until() and time.monotonic() < deadline:
            time.sleep(0.5)
        partitions = {
            q.name: {int(op["numShufflePartitions"]) for op in q.lastProgress["stateOperators"]}
            for q in job.queries
            if q.name in STATEFUL
        }
    finally:
        for q in job.queries:
            q.stop()
        job.close()
    for q in job.queries:
        assert q.exception() is None, q.exception()
    return partitions


def test_new_shuffle_partitions_on_existing_checkpoints_keep_their_value_and_state(
    spark: SparkSession, topics: Settings, db: Database[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    base = topics.model_copy(update={"stream_trigger_s": 0.5, "profile_trigger_s": 0.5})
    install_model_files(base.models_path, CLUSTERS)
    topic = base.topic(PLAYS)
    first = [
        play("alice", 11, 0),
        play("alice", 12, 3, "complete"),
        play("alice", 13, 5, "like"),
        play("bob", 14, 1),
        play("bob", 11, 4),
        play("carol", 13, 2),
    ]
    publish(base, topic, first)
    partitions = run_once(spark, base.model_copy(update={"spark_shuffle_partitions": 3}), lambda: True)
    assert partitions == {query: {3} for query in STATEFUL}
    checkpoints = base.checkpoints_path
    assert {checkpoint_conf(checkpoints / q)[SHUFFLE_PARTITIONS] for q in STATEFUL} == {"3"}

    # Same sessions and windows, then a play that moves the watermark past every session.
    second = [play("alice", 12, 7), play("bob", 11, 9, "skip"), play("carol", 14, 8), play("zed", 13, 120)]
    publish(base, topic, second)
    caplog.set_level(logging.WARNING, logger="cadenza.streaming")
    closed = lambda: db.sessions.count_documents({}) >= 3  # noqa: E731 (after a batch without plays)
    kept = run_once(spark, base.model_copy(update={"spark_shuffle_partitions": 2}), closed)
    assert kept == {query: {3} for query in STATEFUL}
    assert {checkpoint_conf(checkpoints / q)[SHUFFLE_PARTITIONS] for q in STATEFUL} == {"3"}
    kept_note = "keeps spark.sql.shuffle.partitions=3"
    warned = {r.getMessage().split()[0] for r in caplog.records if kept_note in r.getMessage()}
    assert warned == {"plays-history", *STATEFUL}

    minutes = [timedelta(minutes=m) for m in (30, 10, 1)]  # settings' gap, window, slide
    ref = Reference([*first, *second], CLUSTERS, *minutes)
    sessions = {d["_id"]: clean(d) for d in db.sessions.find()}
    assert sessions == ref.sessions(second[-1].ts - timedelta(minutes=10))
    assert len(sessions) == 3
    assert {d["_id"]: clean(d, "scope") for d in db.trending.find()} == ref.trending(base.trending_top_n)
    assert {d["_id"]: clean(d) for d in db.users.find()} == ref.profiles(VERSION)

    # cadenza.trending: one window per cluster and batch (a batch's messages share their ts) ...
    messages = [decode(Trending, r.value) for r in read_until_idle(base, base.topic(TRENDING))]
    per_batch = [(m.ts, m.cluster) for m in messages]
    assert len(per_batch) == len(set(per_batch))
    # ... and folded like its readers fold it, each cluster's newest window, final.
    newest: dict[int, Trending] = {}
    for m in messages:  # in order within a cluster: key = cluster, one partition each
        if m.cluster not in newest or m.window_end >= newest[m.cluster].window_end:
            newest[m.cluster] = m
    expected: dict[int, dict[str, Any]] = {}
    for window in ref.trending(base.trending_top_n).values():
        cluster = window["ref"]
        if cluster not in expected or window["window_start"] > expected[cluster]["window_start"]:
            expected[cluster] = window
    assert {
        c: (m.window_start, m.plays, [t.model_dump() for t in m.top_tracks]) for c, m in newest.items()
    } == {c: (w["window_start"], w["plays"], w["top_tracks"]) for c, w in expected.items()}
