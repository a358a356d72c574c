"""Spark's Kafka connector, configured from settings: streaming sources and batch sinks.

Source: the topics of :mod:`schemas.topics` on ``CADENZA_KAFKA_BOOTSTRAP``, read with
``spark-sql-kafka-0-10`` (see :func:`infra.spark.kafka_connector_jars`). Destination:
topics written from inside ``foreachBatch`` (dead letters, ``TrackAssigned``) with an
idempotent, ``acks=all`` producer. Also where each query's checkpoint lives, and how a
query starts (:func:`start_query`: its trigger, and the Spark settings it takes with it).

Each query copies the session's SQL settings when it starts, so :func:`start_query` sets
``spark.sql.shuffle.partitions`` (``CADENZA_SPARK_SHUFFLE_PARTITIONS``) for that query
alone. Spark writes it into the checkpoint and a restarted query takes the checkpoint's
value, whatever is set now: a stateful query's state is partitioned by it. A different
value is logged as a warning at start; it applies to new checkpoints only. Each query's
jobs also run in a fair-scheduler pool of its own (:func:`scheduler_pool`).

Micro-batches without new records stay on (Spark's default): a stateful query runs one
when the watermark has moved and no record came, which closes sessions when plays stop,
and which Spark's late-record filter depends on (a stateful operator drops records older
than the *previous* batch's watermark; without that batch, a late play arriving after a
quiet spell would be counted in trending and profiles). At a live rate every trigger has
records, so they cost nothing there; the history query has no state and never runs one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from infra.settings import Settings
from schemas.topics import DLQ, TopicSpec
from streaming_jobs.errors import StreamError
from streaming_jobs.streams.shared.kafka_records import RAW_COLUMNS

log = logging.getLogger("cadenza.streaming")

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery


#: Spark settings of the streaming queries: RocksDB keeps per-listener state on local disk
#: (bounded memory however many listeners there are), with changelog checkpoints.
STREAM_CONF: Final = {
    "spark.sql.streaming.stateStore.providerClass": (
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
    ),
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
}


SHUFFLE_PARTITIONS: Final = "spark.sql.shuffle.partitions"
POOL: Final = "spark.scheduler.pool"


def configure(spark: SparkSession) -> None:
    """Apply :data:`STREAM_CONF` (before starting a query; a checkpoint keeps its provider)."""
    for key, value in STREAM_CONF.items():
        spark.conf.set(key, value)


def kafka_stream(
    spark: SparkSession, settings: Settings, topic: TopicSpec, *, max_offsets: int | None = None
) -> DataFrame:
    """A streaming DataFrame of raw records (``key, value, topic, partition, offset``)."""
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap_servers)
        .option("subscribe", settings.topic(topic))
        .option("startingOffsets", settings.stream_starting_offsets)
        .option("maxOffsetsPerTrigger", str(max_offsets or settings.stream_max_offsets_per_trigger))
        # Records deleted by retention before we read them are reported in the log,
        # not fatal: a stopped query must be able to resume on a topic that moved on.
        .option("failOnDataLoss", "false")
        .load()
        .select(*RAW_COLUMNS)
    )


def write_kafka(frame: DataFrame, settings: Settings, topic: TopicSpec) -> None:
    """Write a batch DataFrame of ``key, value`` (binary or string) to a topic."""
    (
        frame.write.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap_servers)
        .option("topic", settings.topic(topic))
        .option("kafka.acks", "all")
        .option("kafka.enable.idempotence", "true")
        .option("kafka.linger.ms", "5")
        .save()
    )


def checkpoint(settings: Settings, query: str) -> Path:
    """Checkpoint directory of one named query (``<checkpoints>/<query>``)."""
    return settings.checkpoints_path / query


def checkpoint_conf(path: Path) -> dict[str, str]:
    """The Spark settings a checkpoint's newest ``offsets/<batch>`` entry was planned with
    (``{}`` for a new checkpoint): the ones a restarted query takes from it."""
    batches = [p for p in (Path(path) / "offsets").glob("*") if p.name.isdigit()]
    if not batches:
        return {}
    lines = max(batches, key=lambda p: int(p.name)).read_text(encoding="utf-8").splitlines()
    try:
        conf = json.loads(lines[1]).get("conf") or {}
    except (IndexError, json.JSONDecodeError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in conf.items()}


@contextmanager
def session_settings(spark: SparkSession, conf: Mapping[str, str]) -> Iterator[None]:
    """``conf`` set on the session for the block (a query started inside copies it), then restored."""
    before: dict[str, str | None] = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def start_query(
    frame: DataFrame,
    settings: Settings,
    name: str,
    sink: Any,
    *,
    mode: str = "append",
    once: bool = False,
    trigger_s: float | None = None,
) -> StreamingQuery:
    """Start ``frame`` as the named query with a ``foreachBatch`` sink and its checkpoint.

    Trigger: every ``trigger_s`` (default ``stream_trigger_s``), or with ``once`` drain
    what is there and stop. Shuffle partitions: ``spark_shuffle_partitions`` for a new
    checkpoint, the checkpoint's own otherwise (see the module docstring). Its jobs run in
    the scheduler pool ``name``.
    """
    path = checkpoint(settings, name)
    writer = (
        frame.writeStream.queryName(name)
        .outputMode(mode)
        .foreachBatch(sink)
        .option("checkpointLocation", str(path))
    )
    if once:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{trigger_s or settings.stream_trigger_s:g} seconds")
    wanted = str(settings.spark_shuffle_partitions)
    kept = checkpoint_conf(path).get(SHUFFLE_PARTITIONS)
    if kept is not None and kept != wanted:
        log.warning(
            "%s keeps %s=%s from its checkpoint (%s); CADENZA_SPARK_SHUFFLE_PARTITIONS=%s applies to "
            "new checkpoints only (README: checkpoint migration)",
            name,
            SHUFFLE_PARTITIONS,
            kept,
            path,
            wanted,
        )
    conf = {SHUFFLE_PARTITIONS: wanted}
    with session_settings(frame.sparkSession, conf), scheduler_pool(frame.sparkSession, name):
        return writer.start()


@contextmanager
def scheduler_pool(spark: SparkSession, pool: str) -> Iterator[None]:
    """Jobs of a query started inside the block run in their own scheduler pool, ``pool``.

    The query's thread, and so every job of its micro-batches (``foreachBatch`` included),
    inherits the pool from the thread that starts it. With ``spark.scheduler.mode=FAIR``
    (:func:`infra.spark.session_conf`) a free task slot goes to the pool running the fewest
    tasks: a 2 s history batch waits for the tasks of a 30 s profiles batch that are
    running, not for the whole batch queued ahead of it (FIFO)."""
    sc = spark.sparkContext
    before = sc.getLocalProperty(POOL)
    sc.setLocalProperty(POOL, pool)
    try:
        yield
    finally:
        sc.setLocalProperty(POOL, before)  # type: ignore[arg-type]  # None removes it


def write_dead_letters(parsed: DataFrame, settings: Settings) -> None:
    """Send the rejected rows of a parsed batch (``ok`` false, ``dlq`` JSON) to ``cadenza.dlq``."""
    from pyspark.sql import functions as sf

    write_kafka(parsed.where("NOT ok").select("key", sf.col("dlq").alias("value")), settings, DLQ)


def write_and_count(frame: DataFrame, writer: Any, columns: tuple[str, ...]) -> dict[str, int]:
    """Run a :func:`streaming_jobs.streams.shared.mongo_writes.counting_writer` over a batch; its totals."""
    from pyspark.sql import functions as sf

    schema = ", ".join(f"{name} long" for name in columns)
    row = frame.mapInPandas(writer, schema).agg(*[sf.sum(c).alias(c) for c in columns]).collect()[0]
    return {name: int(row[name] or 0) for name in columns}


def deliver(
    producer: Any,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes]],
    *,
    first_s: float = 0.5,
    max_s: float = 10.0,
    give_up_s: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Send ``(key, value)`` records with a kafka-python ``producer`` and wait until the broker
    has each one, sending again (backoff ``first_s`` doubling to ``max_s``) those whose
    delivery failed; returns how many were sent again.

    Used by ``foreachBatch`` sinks on the driver: the batch (and so its offsets) completes
    only once everything it produced is delivered. After ``give_up_s`` of waits between attempts it
    raises :class:`StreamError`, which fails the micro-batch; Spark runs it again when
    the query restarts, so nothing is lost (windows are absolute values: sending one
    twice is harmless)."""
    pending = list(records)
    delay, resent, waited = first_s, 0, 0.0
    while True:
        sent = [(producer.send(topic, key=key, value=value), (key, value)) for key, value in pending]
        failed: list[tuple[bytes | None, bytes]] = []
        last: Exception | None = None
        for future, record in sent:
            try:
                future.get(timeout=60)
            except Exception as err:  # any KafkaError, or a timeout: not known to be delivered
                failed.append(record)
                last = err
        if not failed:
            return resent
        if waited + delay > give_up_s:
            raise StreamError(
                f"{len(failed)} records for {topic} not delivered after {give_up_s:.0f} s ({last!r}); "
                "is Kafka up? The micro-batch will run again when the query restarts"
            )
        log.warning(
            "%d records for %s not delivered (%r); sending again in %.1f s", len(failed), topic, last, delay
        )
        sleep(delay)
        waited += delay
        delay = min(max_s, delay * 2)
        resent += len(failed)
        pending = failed
