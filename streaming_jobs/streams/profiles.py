"""The ``plays-profiles`` query's plan and sink: each listener's long-term profile in ``users``.

Source: watermarked, deduplicated plays (:func:`streaming_jobs.streams.plays.on_time_plays`).
Plan: one native streaming aggregation over three grouping sets, in update mode (Spark
keeps the counts in its state store; each micro-batch emits the counts that changed,
as absolute values):

* ``(user, model version, cluster, kind)`` -> ``counts.<version>.<cluster>.<kind>``
  (cluster ids only mean something under the model that assigned them);
* ``(user, kind)`` -> ``totals.<kind>``;
* ``(user, track)`` -> ``track_plays.<track>`` (plays of kind ``play``; the profile's
  top tracks are the largest of these, see :meth:`schemas.documents.UserDoc.top_tracks`).

Destination: ``users``, one ``$set`` of dotted fields per listener and micro-batch
(plus ``$max`` of ``model_version``), so a replayed batch rewrites the same values,
written by :func:`writer_tasks` tasks (half the cores: the other queries keep theirs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
from pymongo import UpdateOne

from infra.settings import Settings
from streaming_jobs.streams.shared.kafka_io import write_and_count
from streaming_jobs.streams.shared.mongo_writes import FrameWriter, bulk, counting_writer, now_utc, process_db
from streaming_jobs.streams.shared.names import PROFILES
from streaming_jobs.streams.shared.status import Counters

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

KEYS: Final = ("user_id", "model_version", "cluster", "kind", "track_id")
SETS: Final = (("user_id", "model_version", "cluster", "kind"), ("user_id", "kind"), ("user_id", "track_id"))


def grouping_id(grouped: Iterable[str]) -> int:
    """Spark's ``grouping_id()`` of a grouping set over :data:`KEYS` (bit set = not grouped)."""
    present = set(grouped)
    return sum(1 << (len(KEYS) - 1 - i) for i, key in enumerate(KEYS) if key not in present)


BY_CLUSTER, BY_KIND, BY_TRACK = (grouping_id(s) for s in SETS)


def profiles_plan(on_time: DataFrame) -> DataFrame:
    from pyspark.sql import functions as sf

    return on_time.groupingSets([list(s) for s in SETS], *KEYS).agg(
        sf.count("*").alias("n"),
        sf.count_if(sf.col("kind") == "play").alias("plays"),
        sf.grouping_id().alias("gid"),
    )


def profile_updates(frame: pd.DataFrame, now: Any) -> list[UpdateOne]:
    """One upsert per listener from the changed aggregate rows of a batch (pure)."""
    fields: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {}
    for row in frame.itertuples(index=False):
        user = str(row.user_id)
        target = fields.setdefault(user, {"updated": now})
        gid = int(row.gid)
        if gid == BY_CLUSTER:
            if isinstance(row.model_version, str) and not pd.isna(row.cluster) and int(row.cluster) >= 0:
                target[f"counts.{row.model_version}.{int(row.cluster)}.{row.kind}"] = int(row.n)
                versions[user] = max(versions.get(user, ""), row.model_version)
        elif gid == BY_KIND:
            target[f"totals.{row.kind}"] = int(row.n)
        elif gid == BY_TRACK and int(row.plays) > 0:
            target[f"track_plays.{int(row.track_id)}"] = int(row.plays)
    updates = []
    for user, values in fields.items():
        change: dict[str, Any] = {"$set": values}
        if user in versions:
            change["$max"] = {"model_version": versions[user]}
        updates.append(UpdateOne({"_id": user}, change, upsert=True))
    return updates


def profile_writer(settings: Settings) -> FrameWriter:
    """Write the profiles of a frame of rows (partitioned by user); counts ``written``."""

    def write(frame: pd.DataFrame) -> dict[str, int]:
        updates = profile_updates(frame, now_utc())
        bulk(process_db(settings), "users", updates, "writing users")
        return {"written": len(updates)}

    return counting_writer(write, ("written",))


def writer_tasks(settings: Settings) -> int:
    """Tasks that write a batch's profiles: half the shuffle partitions (about the cores), at
    least one. A profiles batch (every 30 s, a write per active listener) then leaves task
    slots to the history and trending batches that come every few seconds; with all of them
    its writes held both cores of a two-core machine for seconds, and a play took up to 15 s
    to reach the history at 500 plays/s instead of 7 (bench.streaming, live part)."""
    return max(1, settings.spark_shuffle_partitions // 2)


@dataclass
class ProfileSink:
    settings: Settings
    counters: Counters

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        by_user = batch.repartition(writer_tasks(self.settings), "user_id")
        counts = write_and_count(by_user, profile_writer(self.settings), ("written",))
        self.counters.add(PROFILES, "profiles_written", counts["written"])
