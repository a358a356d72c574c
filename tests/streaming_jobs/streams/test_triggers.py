"""Each plays query's trigger and micro-batch settings (issue 23).

Unit: the precedence of the trigger settings. On real Spark (local[2]) and the real broker:
the triggers the started queries run with (read from the JVM), their shuffle partitions,
that the stateful queries run a micro-batch without new plays once the watermark moves
(sessions close, and late plays are filtered, without waiting for the next play), and
that each query's jobs run in a scheduler pool of its own.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from infra.settings import Settings
from schemas.topics import PLAYS
from streaming_jobs.streams.plays import start_plays
from streaming_jobs.streams.shared.kafka_io import POOL, SHUFFLE_PARTITIONS
from streaming_jobs.streams.shared.status import Counters
from tests.streaming_jobs._plays import install_model_files, play, publish

CLUSTERS = {11: 0, 12: 1}


def test_each_plays_query_has_a_default_trigger_of_its_own(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert (s.history_trigger_s, s.trending_trigger_s, s.sessions_trigger_s) == (2.0, 5.0, 30.0)
    assert (s.stream_trigger_s, s.profile_trigger_s) == (1.0, 30.0)


def test_stream_trigger_s_when_set_is_the_trigger_of_every_plays_query_without_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings(data_dir=tmp_path, stream_trigger_s=0.5, stream_sessions_trigger_s=60)
    assert (s.history_trigger_s, s.trending_trigger_s, s.sessions_trigger_s) == (0.5, 0.5, 60.0)
    assert s.profile_trigger_s == 30.0  # profiles has its own setting only
    copied = Settings(data_dir=tmp_path).model_copy(update={"stream_trigger_s": 3.0})
    assert (copied.history_trigger_s, copied.trending_trigger_s, copied.sessions_trigger_s) == (3.0,) * 3
    monkeypatch.setenv("CADENZA_STREAM_TRIGGER_S", "4")
    monkeypatch.setenv("CADENZA_STREAM_TRENDING_TRIGGER_S", "7")
    env = Settings(data_dir=tmp_path)
    assert (env.history_trigger_s, env.trending_trigger_s, env.sessions_trigger_s) == (4.0, 7.0, 4.0)


# --- on Spark ------------------------------------------------------------------------------------


def trigger_s(query: StreamingQuery) -> float:
    """The processing-time trigger a started query runs with, from the JVM."""
    text = str(query._jsq.streamingQuery().trigger())  # e.g. ProcessingTimeTrigger(2000)
    found = re.search(r"\((\d+)\)", text)
    assert found, text
    return int(found.group(1)) / 1000


def ran_without_rows(progress: dict[str, Any]) -> bool:
    """A micro-batch that ran (it wrote to the sink) with no new record, after the first (a new
    checkpoint's first batch runs on an empty topic too); not an idle trigger's report."""
    ran = "addBatch" in progress["durationMs"] and progress["batchId"] > 0
    return ran and progress["numInputRows"] == 0


def start(spark: SparkSession, settings: Settings) -> tuple[dict[str, StreamingQuery], Any]:
    job = start_plays(spark, settings, Counters())
    return {q.name: q for q in job.queries}, job


def stop(job: Any) -> None:
    for q in job.queries:
        q.stop()
    job.close()
    for q in job.queries:
        assert q.exception() is None, q.exception()


@pytest.mark.stack
@pytest.mark.spark
def test_started_queries_run_on_their_own_triggers(spark: SparkSession, topics: Settings) -> None:
    install_model_files(topics.models_path, CLUSTERS)
    settings = topics.model_copy(update={"stream_history_trigger_s": 3.0, "profile_trigger_s": 45.0})
    before = spark.conf.get(SHUFFLE_PARTITIONS, None)
    queries, job = start(spark, settings)
    try:
        assert {name: trigger_s(q) for name, q in queries.items()} == {
            "plays-history": 3.0,
            "plays-sessions": 30.0,
            "plays-profiles": 45.0,
            "plays-trending": 5.0,
        }
    finally:
        stop(job)
    # what a query takes with it is set for its start only: the session is as it was
    assert spark.conf.get(SHUFFLE_PARTITIONS, None) == before
    assert spark.sparkContext.getLocalProperty(POOL) is None


@pytest.mark.stack
@pytest.mark.spark
def test_stateful_queries_run_a_batch_when_the_watermark_moves_and_take_the_partitions_setting(
    spark: SparkSession, topics: Settings, db: Database[dict[str, Any]]
) -> None:
    settings = topics.model_copy(
        update={"stream_trigger_s": 0.5, "profile_trigger_s": 0.5, "spark_shuffle_partitions": 3}
    )
    install_model_files(settings.models_path, CLUSTERS)
    topic = settings.topic(PLAYS)
    queries, job = start(spark, settings)
    try:
        publish(settings, topic, [play("ann", 11, 0), play("bob", 12, 1)])
        for q in queries.values():
            q.processAllAvailable()
        # 45 minutes on: the watermark moves past both sessions' end (1 + 30 minutes)
        publish(settings, topic, [play("cat", 11, 45)])
        for q in queries.values():
            q.processAllAvailable()
        deadline = time.monotonic() + 60
        while db.sessions.count_documents({}) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert db.sessions.count_documents({}) == 2  # closed without another play
        time.sleep(3.0)  # six triggers of every query
        empty = {name: sum(1 for p in q.recentProgress if ran_without_rows(p)) for name, q in queries.items()}
        partitions = {
            name: {op["numShufflePartitions"] for op in q.lastProgress["stateOperators"]}
            for name, q in queries.items()
            if q.lastProgress["stateOperators"]
        }
    finally:
        stop(job)
    # Kept on: sessions close without a next play, and late plays are filtered with the
    # watermark the play before them moved (see kafka_io). The history has no state.
    assert empty["plays-history"] == 0, empty
    assert min(empty[q] for q in ("plays-sessions", "plays-profiles", "plays-trending")) >= 1, empty
    assert partitions == {"plays-sessions": {3}, "plays-profiles": {3}, "plays-trending": {3}}
    # every query's jobs, foreachBatch sinks' included, ran in the fair-scheduler pool of its own
    assert spark.sparkContext.getConf().get("spark.scheduler.mode") == "FAIR"
    assert set(queries) <= scheduler_pools(spark)


def scheduler_pools(spark: SparkSession) -> set[str]:
    """Pools the application's stages ran in, from Spark's REST API."""
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/stages?status=complete"
    with urllib.request.urlopen(url, timeout=30) as response:
        return {stage["schedulingPool"] for stage in json.load(response)}
