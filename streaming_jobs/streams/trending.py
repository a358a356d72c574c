"""The ``plays-trending`` query's plan and sink: sliding-window play counts per cluster.

Source: watermarked, deduplicated plays (:func:`streaming_jobs.streams.plays.on_time_plays`),
grouped by cluster and folded into :mod:`streaming_jobs.streams.trending_state` with
``applyInPandasWithState`` (one group per cluster, so the Python cost is per cluster
and micro-batch, not per play). Destinations: ``trending`` (one document per cluster
and window, replaced with absolute values: every window a batch changed) and
``cadenza.trending`` (key = cluster): per cluster and batch, a ``Trending`` message of
the newest window the batch changed, only. A play falls in ``window / slide`` overlapping
windows (ten by default) and all of them change, but the topic's readers (the
recommender, the gateways) keep each cluster's newest window (latest end) and drop
older ones, so the other nine were sent to be thrown away. The newest window a batch
changed starts at the latest slide the batch has plays of the cluster in: the window
readers keep, with its absolute count, unless a later one exists already (a batch of late
plays only), and then they drop it as they dropped the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from infra.kafka_clients import producer as kafka_producer
from infra.settings import Settings, duration_s
from schemas.codec import encode, encode_key
from schemas.documents import TrendingDoc
from schemas.events import TrackCount, Trending
from schemas.topics import TRENDING
from streaming_jobs.streams import trending_state
from streaming_jobs.streams.shared.kafka_io import deliver
from streaming_jobs.streams.shared.mongo_writes import now_utc, process_db, replace_all
from streaming_jobs.streams.shared.names import TRENDS
from streaming_jobs.streams.shared.status import Counters

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.streaming.state import GroupState

OUTPUT: Final = "cluster int, start_ms long, end_ms long, plays long, top string"
STATE: Final = "buckets array<long>, tracks array<long>, counts array<long>"
COLUMNS: Final = ["cluster", "start_ms", "end_ms", "plays", "top"]


def epoch_ms(ts: pd.Series) -> np.ndarray:
    """Milliseconds since the epoch of a timestamp column (naive = UTC)."""
    values = pd.to_datetime(ts, utc=True).dt.tz_localize(None)
    return np.asarray(values.astype("datetime64[ms]").astype("int64"), dtype=np.int64)


def trend_function(settings: Settings) -> Callable[..., Iterator[pd.DataFrame]]:
    """The ``applyInPandasWithState`` function of one cluster (runs in Python workers)."""
    window_ms = duration_s(settings.trending_window) * 1000
    slide_ms = duration_s(settings.trending_slide) * 1000
    top_n = settings.trending_top_n

    def update(
        key: tuple[Any, ...], frames: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        cluster = int(key[0])
        current = trending_state.TrendState.empty()
        if state.exists:
            b, t, c = state.get
            current = trending_state.TrendState(
                np.asarray(b, dtype=np.int64), np.asarray(t, dtype=np.int64), np.asarray(c, dtype=np.int64)
            )
        ts_parts, track_parts = [], []
        if not state.hasTimedOut:
            for frame in frames:
                ts_parts.append(epoch_ms(frame["ts"]))
                track_parts.append(frame["track_id"].to_numpy(dtype=np.int64))
        empty = np.empty(0, dtype=np.int64)
        current, windows = trending_state.update(
            current,
            np.concatenate(ts_parts) if ts_parts else empty,
            np.concatenate(track_parts) if track_parts else empty,
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
        rows = [(cluster, w.start_ms, w.end_ms, w.plays, json.dumps(w.top)) for w in windows]
        yield pd.DataFrame(rows, columns=COLUMNS)

    return update


def trending_plan(on_time: DataFrame, settings: Settings) -> DataFrame:
    from pyspark.sql.streaming.state import GroupStateTimeout

    return on_time.groupBy("cluster").applyInPandasWithState(
        trend_function(settings), OUTPUT, STATE, "append", GroupStateTimeout.EventTimeTimeout
    )


# --- sink (driver) ------------------------------------------------------------------------------


def iso(ms: int) -> str:
    return utc(ms).isoformat().replace("+00:00", "Z")


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _top(row: Any) -> list[TrackCount]:
    return [TrackCount(track_id=t, plays=n) for t, n in json.loads(row.top)]


def trending_document(row: Any) -> dict[str, Any]:
    return TrendingDoc(
        id=f"cluster:{row.cluster}:{iso(row.start_ms)}",
        scope="cluster",
        ref=int(row.cluster),
        window_start=utc(row.start_ms),
        window_end=utc(row.end_ms),
        plays=int(row.plays),
        top_tracks=_top(row),
    ).to_mongo()


def trending_message(row: Any, now: datetime) -> Trending:
    return Trending(
        cluster=int(row.cluster),
        window_start=utc(row.start_ms),
        window_end=utc(row.end_ms),
        plays=int(row.plays),
        top_tracks=_top(row),
        ts=now,
    )


def newest_windows(rows: Sequence[Any]) -> list[Any]:
    """Of a batch's changed windows, each cluster's newest (latest start), by cluster."""
    newest: dict[int, Any] = {}
    for row in rows:
        kept = newest.get(int(row.cluster))
        if kept is None or row.start_ms > kept.start_ms:
            newest[int(row.cluster)] = row
    return [newest[cluster] for cluster in sorted(newest)]


@dataclass
class TrendingSink:
    """``foreachBatch``: store every changed window, then publish each cluster's newest."""

    settings: Settings
    counters: Counters
    _kafka: Any = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        rows = batch.collect()
        if not rows:
            return
        replace_all(process_db(self.settings), "trending", [trending_document(r) for r in rows])
        if self._kafka is None:
            self._kafka = kafka_producer(self.settings)
        now = now_utc()
        newest = newest_windows(rows)
        records = [(encode_key(int(row.cluster)), encode(trending_message(row, now))) for row in newest]
        # Every window delivered (failed sends sent again) before the batch, and so its
        # offsets, can complete.
        resent = deliver(self._kafka, self.settings.topic(TRENDING), records)
        self.counters.add(TRENDS, "windows_written", len(rows))
        self.counters.add(TRENDS, "windows_published", len(newest))
        if resent:
            self.counters.add(TRENDS, "windows_sent_again", resent)

    def close(self) -> None:
        if self._kafka is not None:
            self._kafka.close(timeout=10)
            self._kafka = None
