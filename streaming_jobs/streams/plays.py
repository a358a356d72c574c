"""``cadenza stream plays``: history, sessions, profiles and trending from ``cadenza.plays``.

Source: ``cadenza.plays`` through Spark's Kafka connector. Four Structured Streaming
queries share one parsing stage (:mod:`streaming_jobs.streams.shared.play_events`, run in Python
workers) and each keep their own checkpoint under ``<checkpoints>/<query>``:

* ``plays-history`` (here): dead-letters bad records to ``cadenza.dlq`` with the reason,
  and inserts every good play into ``plays`` once (``_id`` = ``event_id``);
* ``plays-sessions`` (:mod:`streaming_jobs.streams.sessions`), ``plays-profiles``
  (:mod:`streaming_jobs.streams.profiles`) and ``plays-trending``
  (:mod:`streaming_jobs.streams.trending`) read :func:`on_time_plays`: event-time
  watermark (``CADENZA_STREAM_WATERMARK``), then ``dropDuplicatesWithinWatermark`` on
  ``event_id``.

Every write is keyed by a natural id and carries absolute values, and the state lives
in the checkpoints, so queries stopped at any point and restarted end in the same
state as an uninterrupted run. Plays older than the watermark are left out of
sessions, profiles and trending (Spark counts them as rows dropped by the watermark)
but are kept in the history.

A micro-batch costs about as much with ten plays as with thousands (tasks, state store
commits, checkpoint files), so each query runs as rarely as its readers allow: the
history every 2 s and trending every 5 s by default, sessions and profiles every 30 s
(``infra.settings.streams`` has the precedence of the trigger settings). Each batch
parses in at most ``CADENZA_SPARK_SHUFFLE_PARTITIONS`` Python tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

from infra.settings import Settings
from schemas.topics import PLAYS
from streaming_jobs.streams.profiles import ProfileSink, profiles_plan
from streaming_jobs.streams.sessions import SessionSink, sessions_plan
from streaming_jobs.streams.shared.kafka_io import (
    configure,
    kafka_stream,
    start_query,
    write_and_count,
    write_dead_letters,
)
from streaming_jobs.streams.shared.mongo_writes import cluster_fetcher, history_writer
from streaming_jobs.streams.shared.names import HISTORY, PROFILES, SESSIONS, TRENDS
from streaming_jobs.streams.shared.play_events import PARSED_SCHEMA, parse_plays
from streaming_jobs.streams.shared.status import Counters
from streaming_jobs.streams.shared.track_lookup import TrackClusters
from streaming_jobs.streams.trending import TrendingSink, trending_plan

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery


# --- parsing (runs in Spark's Python workers) ----------------------------------------------

_lookups: dict[tuple[str, str, str], TrackClusters] = {}


def _lookup(settings: Settings) -> TrackClusters:
    key = (str(settings.models_path), settings.mongo_uri, settings.mongodb_db)
    found = _lookups.get(key)
    if found is None:
        found = _lookups[key] = TrackClusters(settings.models_path, cluster_fetcher(settings))
    return found


def play_parser(settings: Settings) -> Callable[[Iterable[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def parse(frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        lookup = _lookup(settings)
        for raw in frames:
            lookup.refresh()
            yield parse_plays(
                raw,
                lookup.lookup,
                now=datetime.now(UTC),
                max_future_s=settings.stream_max_future_s,
                model_version=lookup.version,
            )

    return parse


def parsed_plays(spark: SparkSession, settings: Settings, *, max_offsets: int | None = None) -> DataFrame:
    """Parsed records of ``cadenza.plays``: at most ``spark_shuffle_partitions`` parsing tasks per
    micro-batch (one per topic partition otherwise: a task has a fixed cost in a Python worker)."""
    source = kafka_stream(spark, settings, PLAYS, max_offsets=max_offsets)
    tasks = source.coalesce(settings.spark_shuffle_partitions)
    return tasks.mapInPandas(play_parser(settings), PARSED_SCHEMA)


def on_time_plays(parsed: DataFrame, settings: Settings) -> DataFrame:
    """Good plays, watermarked on event time and deduplicated by ``event_id``."""
    return (
        parsed.where("ok")
        .select("event_id", "user_id", "track_id", "kind", "ts", "cluster", "model_version")
        .withWatermark("ts", settings.stream_watermark)
        .dropDuplicatesWithinWatermark(["event_id"])
    )


# --- history ---------------------------------------------------------------------------------


@dataclass
class HistorySink:
    """``foreachBatch`` of ``plays-history``: dead letters, then every good play once."""

    settings: Settings
    counters: Counters

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        batch = batch.persist()
        try:
            rejected = {
                r["error_class"]: r["count"]
                for r in batch.where("NOT ok").groupBy("error_class").count().collect()
            }
            if rejected:
                write_dead_letters(batch, self.settings)
                for reason, n in rejected.items():
                    self.counters.add(HISTORY, f"dead_letters.{reason}", n)
            counts = write_and_count(
                batch.where("ok"), history_writer(self.settings), ("inserted", "duplicates")
            )
            self.counters.add(HISTORY, "plays_stored", counts["inserted"])
            self.counters.add(HISTORY, "plays_already_stored", counts["duplicates"])
        finally:
            batch.unpersist()


# --- the queries -----------------------------------------------------------------------------


@dataclass
class PlaysJob:
    queries: list[StreamingQuery]
    trending: TrendingSink

    def close(self) -> None:
        self.trending.close()


def start_plays(
    spark: SparkSession, settings: Settings, counters: Counters, *, once: bool = False
) -> PlaysJob:
    """Start the four plays queries, each on its own trigger (``CADENZA_STREAM_*_TRIGGER_S``,
    ``CADENZA_PROFILE_TRIGGER_S``): a micro-batch costs about the same with 10 plays or
    10,000, so each query runs as rarely as its readers allow."""
    configure(spark)
    trending = TrendingSink(settings, counters)
    # Sessions and profiles run every 30 s by default: bigger batches than the others may read.
    sessions_source = parsed_plays(
        spark, settings, max_offsets=settings.stream_sessions_max_offsets_per_trigger
    )
    profile_source = parsed_plays(spark, settings, max_offsets=settings.profile_max_offsets_per_trigger)
    queries = [
        start_query(
            parsed_plays(spark, settings),
            settings,
            HISTORY,
            HistorySink(settings, counters),
            once=once,
            trigger_s=settings.history_trigger_s,
        ),
        start_query(
            sessions_plan(on_time_plays(sessions_source, settings), settings),
            settings,
            SESSIONS,
            SessionSink(settings, counters),
            once=once,
            trigger_s=settings.sessions_trigger_s,
        ),
        start_query(
            profiles_plan(on_time_plays(profile_source, settings)),
            settings,
            PROFILES,
            ProfileSink(settings, counters),
            mode="update",
            once=once,
            trigger_s=settings.profile_trigger_s,
        ),
        start_query(
            trending_plan(on_time_plays(parsed_plays(spark, settings), settings), settings),
            settings,
            TRENDS,
            trending,
            once=once,
            trigger_s=settings.trending_trigger_s,
        ),
    ]
    return PlaysJob(queries, trending)
