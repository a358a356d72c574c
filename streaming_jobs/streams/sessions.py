"""The ``plays-sessions`` query's plan and sink: closed listening sessions.

Source: watermarked, deduplicated plays (:func:`streaming_jobs.streams.plays.on_time_plays`).
Plan: Spark's native ``session_window(ts, session_gap)`` per listener in append mode,
so a session is emitted once, when the watermark has passed its last play + gap (a
late play that bridges two open sessions merges them; plays older than the watermark
are dropped before). Destination: ``sessions``, one document per session
(``_id`` = ``<user>:<start ISO>``), inserted once: a replayed batch finds it stored.

Fields: ``start``/``end`` = first/last play; ``tracks`` = distinct tracks in order of
first play; counts per kind; ``dominant_cluster`` = the most frequent cluster of its
plays (the lowest on a tie; None when no play had a cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from infra.settings import Settings
from schemas.documents import SessionDoc
from streaming_jobs.streams.shared.kafka_io import write_and_count
from streaming_jobs.streams.shared.mongo_writes import (
    FrameWriter,
    counting_writer,
    insert_once,
    process_db,
    utc_datetime,
)
from streaming_jobs.streams.shared.names import SESSIONS
from streaming_jobs.streams.shared.status import Counters

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

KIND_COLUMNS = {"play": "plays", "skip": "skips", "complete": "completes", "like": "likes"}


def sessions_plan(on_time: DataFrame, settings: Settings) -> DataFrame:
    from pyspark.sql import functions as sf

    ordered = sf.array_sort(sf.collect_list(sf.struct("ts", "track_id")))
    return on_time.groupBy("user_id", sf.session_window("ts", settings.session_gap)).agg(
        sf.min("ts").alias("start"),
        sf.max("ts").alias("end"),
        sf.array_distinct(sf.transform(ordered, lambda x: x["track_id"])).alias("tracks"),
        *[sf.count_if(sf.col("kind") == kind).alias(name) for kind, name in KIND_COLUMNS.items()],
        sf.mode(sf.when(sf.col("cluster") >= 0, sf.col("cluster")), True).alias("dominant_cluster"),
    )


def session_documents(frame: pd.DataFrame) -> list[dict[str, Any]]:
    docs = []
    for row in frame.itertuples(index=False):
        start_dt, end_dt = utc_datetime(row.start), utc_datetime(row.end)
        docs.append(
            SessionDoc(
                id=f"{row.user_id}:{start_dt.isoformat().replace('+00:00', 'Z')}",
                user_id=row.user_id,
                start=start_dt,
                end=end_dt,
                tracks=[int(t) for t in row.tracks],
                plays=int(row.plays),
                skips=int(row.skips),
                completes=int(row.completes),
                likes=int(row.likes),
                dominant_cluster=None if pd.isna(row.dominant_cluster) else int(row.dominant_cluster),
            ).to_mongo()
        )
    return docs


def session_writer(settings: Settings) -> FrameWriter:
    """Insert closed sessions once; counts ``inserted``."""

    def write(frame: pd.DataFrame) -> dict[str, int]:
        return {"inserted": insert_once(process_db(settings), "sessions", session_documents(frame))[0]}

    return counting_writer(write, ("inserted",))


@dataclass
class SessionSink:
    settings: Settings
    counters: Counters

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        columns = ["user_id", "start", "end", "tracks", *KIND_COLUMNS.values(), "dominant_cluster"]
        counts = write_and_count(batch.select(*columns), session_writer(self.settings), ("inserted",))
        self.counters.add(SESSIONS, "sessions_closed", counts["inserted"])
