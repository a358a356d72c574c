"""``cadenza stream plays``: history, sessions, profiles and trending from ``cadenza.plays``.

Source: ``cadenza.plays`` through Spark's Kafka connector. Three Structured Streaming
queries share one parsing stage (:mod:`streaming_jobs.play_events`) and each keep their
own checkpoint under ``<checkpoints>/``:

* ``plays-history``: dead-letters bad records to ``cadenza.dlq`` (with the reason) and
  inserts every good play into ``plays`` once (``_id`` = ``event_id``);
* ``plays-listeners``: event-time watermark -> ``dropDuplicatesWithinWatermark(event_id)``
  -> ``applyInPandasWithState`` per listener (:mod:`streaming_jobs.listener_state`):
  closed sessions to ``sessions``, profiles to ``users``;
* ``plays-trending``: the same watermark and deduplication -> ``applyInPandasWithState``
  per cluster (:mod:`streaming_jobs.trending_state`): window counts to ``trending`` and
  ``cadenza.trending``.

Every write is keyed by a natural id and carries absolute values, and the state lives in
the checkpoint, so a query stopped at any point and restarted writes the same result
as an uninterrupted run. Plays older than the watermark are left out of sessions,
profiles and trending (Spark reports them as rows dropped by watermark) but are still
kept in the history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from infra.kafka_clients import producer as kafka_producer
from infra.settings import Settings, duration_s
from schemas.codec import encode, encode_key
from schemas.documents import SessionDoc, TrendingDoc
from schemas.events import TrackCount, Trending
from schemas.topics import PLAYS, TRENDING
from streaming_jobs import listener_state, trending_state
from streaming_jobs.play_events import PARSED_SCHEMA, parse_plays
from streaming_jobs.stream_io import checkpoint, configure, kafka_stream, trigger_kwargs, write_dead_letters
from streaming_jobs.stream_names import HISTORY, LISTENERS, TRENDS
from streaming_jobs.stream_status import Counters
from streaming_jobs.stream_writes import (
    cluster_fetcher,
    history_writer,
    now_utc,
    process_db,
    replace_all,
    set_fields,
)
from streaming_jobs.track_lookup import TrackClusters

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery
    from pyspark.sql.streaming.state import GroupState

LISTENER_OUTPUT: Final = "kind string, user_id string, payload string"
LISTENER_STATE: Final = "json string"
TREND_OUTPUT: Final = "cluster int, start_ms long, end_ms long, plays long, top string"
TREND_STATE: Final = "buckets array<long>, tracks array<long>, counts array<long>"


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


def parsed_plays(spark: SparkSession, settings: Settings) -> DataFrame:
    return kafka_stream(spark, settings, PLAYS).mapInPandas(play_parser(settings), PARSED_SCHEMA)


def on_time_plays(parsed: DataFrame, settings: Settings) -> DataFrame:
    """Good plays, watermarked on event time and deduplicated by ``event_id``."""
    return (
        parsed.where("ok")
        .select("event_id", "user_id", "track_id", "kind", "ts", "cluster", "model_version")
        .withWatermark("ts", settings.stream_watermark)
        .dropDuplicatesWithinWatermark(["event_id"])
    )


# --- stateful functions (Python workers) ------------------------------------------------------


def _to_ms(ts: pd.Series) -> np.ndarray:
    return np.asarray(ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ms]").astype("int64"))


def listener_function(settings: Settings) -> Callable[..., Iterator[pd.DataFrame]]:
    gap_ms = duration_s(settings.session_gap) * 1000
    cap, top_n = settings.profile_track_cap, settings.profile_top_tracks

    def update(
        key: tuple[Any, ...], frames: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        user = str(key[0])
        current = listener_state.ListenerState.from_json(state.get[0]) if state.exists else None
        current = current or listener_state.ListenerState()
        plays: list[listener_state.Play] = []
        if not state.hasTimedOut:
            for frame in frames:
                ms = _to_ms(pd.to_datetime(frame["ts"], utc=True))
                for ts, row in zip(ms, frame.itertuples(index=False), strict=True):
                    plays.append(
                        listener_state.Play(
                            ts_ms=int(ts),
                            track_id=int(row.track_id),
                            kind=str(row.kind),
                            cluster=int(row.cluster),
                            model_version=row.model_version if isinstance(row.model_version, str) else None,
                        )
                    )
        current.apply(plays, gap_ms=gap_ms, track_cap=cap)
        closed = current.close_expired(state.getCurrentWatermarkMs(), gap_ms=gap_ms)
        out: list[dict[str, str]] = [
            {"kind": "session", "user_id": user, "payload": json.dumps(s.__dict__)} for s in closed
        ]
        if plays:
            out.append({"kind": "profile", "user_id": user, "payload": json.dumps(current.profile(top_n))})
        state.update((current.to_json(),))
        timeout = current.next_timeout_ms(gap_ms)
        if timeout is not None:
            state.setTimeoutTimestamp(timeout)
        yield pd.DataFrame(out, columns=["kind", "user_id", "payload"])

    return update


def trend_function(settings: Settings) -> Callable[..., Iterator[pd.DataFrame]]:
    window_ms = duration_s(settings.trending_window) * 1000
    slide_ms = duration_s(settings.trending_slide) * 1000
    top_n = settings.trending_top_n

    def update(
        key: tuple[Any, ...], frames: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        cluster = int(key[0])
        if state.exists:
            b, t, c = state.get
            current = trending_state.TrendState(
                np.asarray(b, dtype=np.int64), np.asarray(t, dtype=np.int64), np.asarray(c, dtype=np.int64)
            )
        else:
            current = trending_state.TrendState.empty()
        ts_parts, track_parts = [], []
        if not state.hasTimedOut:
            for frame in frames:
                ts_parts.append(_to_ms(pd.to_datetime(frame["ts"], utc=True)))
                track_parts.append(frame["track_id"].to_numpy(dtype=np.int64))
        ts_ms = np.concatenate(ts_parts) if ts_parts else np.empty(0, dtype=np.int64)
        tracks = np.concatenate(track_parts) if track_parts else np.empty(0, dtype=np.int64)
        current, windows = trending_state.update(
            current,
            ts_ms,
            tracks,
            window_ms=window_ms,
            slide_ms=slide_ms,
            top_n=top_n,
            watermark_ms=state.getCurrentWatermarkMs(),
        )
        if len(current):
            state.update((current.buckets.tolist(), current.tracks.tolist(), current.counts.tolist()))
            state.setTimeoutTimestamp(int(current.buckets.min()) + window_ms)
        else:
            state.remove()
        yield pd.DataFrame(
            [
                {
                    "cluster": cluster,
                    "start_ms": w.start_ms,
                    "end_ms": w.end_ms,
                    "plays": w.plays,
                    "top": json.dumps(w.top),
                }
                for w in windows
            ],
            columns=["cluster", "start_ms", "end_ms", "plays", "top"],
        )

    return update


# --- micro-batch sinks (driver) ---------------------------------------------------------------


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def session_document(user_id: str, session: dict[str, Any]) -> dict[str, Any]:
    return SessionDoc(
        id=f"{user_id}:{_iso(session['start_ms'])}",
        user_id=user_id,
        start=_dt(session["start_ms"]),
        end=_dt(session["end_ms"]),
        tracks=list(session["tracks"]),
        plays=session["plays"],
        skips=session["skips"],
        completes=session["completes"],
        likes=session["likes"],
        dominant_cluster=session["dominant_cluster"],
    ).to_mongo()


def trending_document(row: Any) -> dict[str, Any]:
    top = [TrackCount(track_id=t, plays=n) for t, n in json.loads(row.top)]
    doc = TrendingDoc(
        id=f"cluster:{row.cluster}:{_iso(row.start_ms)}",
        scope="cluster",
        ref=int(row.cluster),
        window_start=_dt(row.start_ms),
        window_end=_dt(row.end_ms),
        plays=int(row.plays),
        top_tracks=top,
    ).to_mongo()
    return doc


def trending_message(row: Any, now: datetime) -> Trending:
    return Trending(
        cluster=int(row.cluster),
        window_start=_dt(row.start_ms),
        window_end=_dt(row.end_ms),
        plays=int(row.plays),
        top_tracks=[TrackCount(track_id=t, plays=n) for t, n in json.loads(row.top)],
        ts=now,
    )


@dataclass
class PlaysSinks:
    """The ``foreachBatch`` functions of the three queries (driver side)."""

    settings: Settings
    counters: Counters

    def history(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as sf

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
            stats = (
                batch.where("ok")
                .mapInPandas(history_writer(self.settings), "inserted long, duplicates long")
                .agg(sf.sum("inserted").alias("inserted"), sf.sum("duplicates").alias("duplicates"))
                .collect()[0]
            )
            self.counters.add(HISTORY, "plays_stored", int(stats["inserted"] or 0))
            self.counters.add(HISTORY, "plays_already_stored", int(stats["duplicates"] or 0))
        finally:
            batch.unpersist()

    def listeners(self, batch: DataFrame, batch_id: int) -> None:
        rows = batch.collect()
        sessions = [session_document(r.user_id, json.loads(r.payload)) for r in rows if r.kind == "session"]
        now = now_utc()
        profiles = [
            (r.user_id, {**json.loads(r.payload), "updated": now}) for r in rows if r.kind == "profile"
        ]
        db = process_db(self.settings)
        if sessions:
            replace_all(db, "sessions", sessions)
            self.counters.add(LISTENERS, "sessions_closed", len(sessions))
        if profiles:
            set_fields(db, "users", profiles)
            self.counters.add(LISTENERS, "profiles_written", len(profiles))

    def trending(self, batch: DataFrame, batch_id: int) -> None:
        rows = batch.collect()
        if not rows:
            return
        replace_all(process_db(self.settings), "trending", [trending_document(r) for r in rows])
        now = now_utc()
        producer = self._producer()
        topic = self.settings.topic(TRENDING)
        for row in rows:
            producer.send(topic, key=encode_key(int(row.cluster)), value=encode(trending_message(row, now)))
        producer.flush(timeout=30)
        self.counters.add(TRENDS, "windows_written", len(rows))

    _kafka: Any = None

    def _producer(self) -> Any:
        if self._kafka is None:
            self._kafka = kafka_producer(self.settings)
        return self._kafka

    def close(self) -> None:
        if self._kafka is not None:
            self._kafka.close(timeout=10)
            self._kafka = None


# --- the queries -----------------------------------------------------------------------------


def start_plays(
    spark: SparkSession, settings: Settings, counters: Counters, *, once: bool = False
) -> tuple[list[StreamingQuery], PlaysSinks]:
    """Start the three plays queries; returns them and their sinks (close after stopping)."""
    from pyspark.sql.streaming.state import GroupStateTimeout

    configure(spark)
    sinks = PlaysSinks(settings, counters)
    trigger = trigger_kwargs(settings, once)
    parsed = parsed_plays(spark, settings)
    history = (
        parsed.writeStream.queryName(HISTORY)
        .foreachBatch(sinks.history)
        .option("checkpointLocation", str(checkpoint(settings, HISTORY)))
        .trigger(**trigger)  # type: ignore[arg-type]
        .start()
    )
    listeners = (
        on_time_plays(parsed, settings)
        .groupBy("user_id")
        .applyInPandasWithState(
            listener_function(settings),
            LISTENER_OUTPUT,
            LISTENER_STATE,
            "append",
            GroupStateTimeout.EventTimeTimeout,
        )
        .writeStream.queryName(LISTENERS)
        .foreachBatch(sinks.listeners)
        .option("checkpointLocation", str(checkpoint(settings, LISTENERS)))
        .trigger(**trigger)  # type: ignore[arg-type]
        .start()
    )
    trends = (
        on_time_plays(parsed, settings)
        .groupBy("cluster")
        .applyInPandasWithState(
            trend_function(settings), TREND_OUTPUT, TREND_STATE, "append", GroupStateTimeout.EventTimeTimeout
        )
        .writeStream.queryName(TRENDS)
        .foreachBatch(sinks.trending)
        .option("checkpointLocation", str(checkpoint(settings, TRENDS)))
        .trigger(**trigger)  # type: ignore[arg-type]
        .start()
    )
    return [history, listeners, trends], sinks
