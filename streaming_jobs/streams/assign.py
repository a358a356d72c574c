"""``cadenza stream assign``: give every new track its cluster under the current model, live.

Source: ``cadenza.tracks.new`` through Spark's Kafka connector (checkpoint
``<checkpoints>/tracks-assign``). Each micro-batch (``foreachBatch``):

1. parses records with the schema (:mod:`streaming_jobs.streams.shared.track_events`); unparseable or
   incomplete ones go to ``cadenza.dlq`` with the reason;
2. runs the current Spark ``PipelineModel`` (StandardScaler -> PCA -> KMeans) on the
   feature vectors. The registry pointer is checked at every batch, so a promoted
   model is used from the next batch on, without a restart;
3. upserts each track into ``tracks`` (metadata, features packed as float32 by
   :meth:`schemas.documents.TrackDoc.to_mongo`, ``cluster``, ``model_version``) from the
   executors, keyed by ``_id``: a replayed batch writes the same documents;
4. then publishes a ``TrackAssigned`` per track on ``cadenza.tracks.assigned``.

Without a promoted model, tracks are stored without a cluster (promotion labels them
later) and no ``TrackAssigned`` is published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pandas as pd
from pymongo import UpdateOne

from infra.settings import Settings
from schemas.cluster_model import current_version
from schemas.topics import TRACKS_ASSIGNED, TRACKS_NEW
from streaming_jobs.errors import StreamError
from streaming_jobs.model.kmeans import INPUT_COL, PREDICTION_COL
from streaming_jobs.model.registry import PIPELINE_DIR
from streaming_jobs.streams.shared.kafka_io import (
    configure,
    kafka_stream,
    start_query,
    write_dead_letters,
    write_kafka,
)
from streaming_jobs.streams.shared.mongo_writes import bulk, now_utc, process_db
from streaming_jobs.streams.shared.names import ASSIGN
from streaming_jobs.streams.shared.status import Counters
from streaming_jobs.streams.shared.track_events import (
    PARSED_SCHEMA,
    assigned_message,
    parse_tracks,
    track_update,
)

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)

WRITTEN_SCHEMA: Final = "track_id long, cluster int, value binary"


def parse_frames(frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for raw in frames:
        yield parse_tracks(raw)


def track_writer(
    settings: Settings, version: str | None
) -> Callable[[Iterable[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas``: upsert tracks with their cluster; yield ``(track_id, cluster, TrackAssigned)``."""

    def write(frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        db = process_db(settings)
        for frame in frames:
            now = now_utc()
            ops, out = [], []
            for row in frame.itertuples(index=False):
                cluster = None if pd.isna(row.cluster) else int(row.cluster)
                track_id, fields, on_insert = track_update(bytes(row.value), cluster, version, now)
                ops.append(
                    UpdateOne({"_id": track_id}, {"$set": fields, "$setOnInsert": on_insert}, upsert=True)
                )
                message = (
                    assigned_message(track_id, cluster, version, now)
                    if cluster is not None and version
                    else None
                )
                out.append({"track_id": track_id, "cluster": cluster, "value": message})
            bulk(db, "tracks", ops, "writing tracks")
            yield pd.DataFrame(out, columns=["track_id", "cluster", "value"])

    return write


@dataclass
class CurrentPipeline:
    """The registry's current PipelineModel, reloaded when the pointer file names another."""

    models_path: Path
    version: str | None = None
    pipeline: PipelineModel | None = field(default=None, repr=False)

    def get(self) -> tuple[str | None, PipelineModel | None]:
        from pyspark.ml import PipelineModel

        wanted = current_version(self.models_path)
        if wanted != self.version:
            if wanted is None:
                self.version, self.pipeline = None, None
            else:
                path = self.models_path / wanted / PIPELINE_DIR
                if not path.is_dir():
                    raise StreamError(
                        f"the current model {wanted} has no pipeline at {path}; "
                        "promote a complete model with `cadenza model promote VERSION`"
                    )
                self.pipeline = PipelineModel.load(str(path))
                log.info("assigning new tracks with model %s", wanted, extra={"model_version": wanted})
                self.version = wanted
        return self.version, self.pipeline


@dataclass
class AssignSink:
    """The ``foreachBatch`` function of the assignment query (driver side)."""

    settings: Settings
    counters: Counters
    models: CurrentPipeline

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as sf

        parsed = batch.mapInPandas(parse_frames, PARSED_SCHEMA).persist()
        try:
            rejected = parsed.where("NOT ok").count()
            if rejected:
                write_dead_letters(parsed, self.settings)
                self.counters.add(ASSIGN, "dead_letters", rejected)
            good = parsed.where("ok")
            version, pipeline = self.models.get()
            if pipeline is not None:
                vectors = good.select(
                    "track_id", "value", array_to_vector(sf.col("features")).alias(INPUT_COL)
                )
                scored = pipeline.transform(vectors).select(
                    "track_id", "value", sf.col(PREDICTION_COL).cast("int").alias("cluster")
                )
            else:
                scored = good.select("track_id", "value", sf.lit(None).cast("int").alias("cluster"))
            written = scored.mapInPandas(track_writer(self.settings, version), WRITTEN_SCHEMA).persist()
            try:
                stored = written.count()  # runs the upserts, before anything is announced
                announced = written.where("value IS NOT NULL")
                assigned = announced.count()
                if assigned:
                    keys = announced.select(sf.col("track_id").cast("string").alias("key"), "value")
                    write_kafka(keys, self.settings, TRACKS_ASSIGNED)
            finally:
                written.unpersist()
            self.counters.add(ASSIGN, "tracks_stored", stored)
            self.counters.add(ASSIGN, "tracks_assigned", assigned)
        finally:
            parsed.unpersist()


def start_assign(
    spark: SparkSession, settings: Settings, counters: Counters, *, once: bool = False
) -> StreamingQuery:
    """Start the assignment query."""
    configure(spark)
    sink = AssignSink(settings, counters, CurrentPipeline(settings.models_path))
    return start_query(kafka_stream(spark, settings, TRACKS_NEW), settings, ASSIGN, sink, once=once)
