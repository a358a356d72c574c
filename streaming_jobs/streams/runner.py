"""Run a streaming job in the foreground until it is stopped: ``cadenza stream assign | plays``.

Source: settings (``CADENZA_*``), the registry and the topics. It creates the topics
if they are missing, opens a SparkSession with Spark's Kafka connector, starts the
job's queries, writes their progress to the log and to the status file
(:mod:`streaming_jobs.streams.shared.status`) and waits. SIGINT/SIGTERM stop the queries
cleanly (the checkpoint keeps what was processed); a query that fails stops the job
with its error and a non-zero exit status, so a supervisor can restart it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra.kafka_clients import ensure_topics
from infra.settings import Settings
from infra.spark import spark_session
from streaming_jobs.streams.assign import start_assign
from streaming_jobs.streams.plays import start_plays
from streaming_jobs.streams.shared.status import Counters, StatusBoard

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("cadenza.stream")


@dataclass
class Started:
    queries: list[StreamingQuery]
    close: Callable[[], None]


def start_job(spark: SparkSession, settings: Settings, job: str, counters: Counters, once: bool) -> Started:
    if job == "assign":
        return Started([start_assign(spark, settings, counters, once=once)], lambda: None)
    if job == "plays":
        job_ = start_plays(spark, settings, counters, once=once)
        return Started(job_.queries, job_.close)
    raise ValueError(f"unknown streaming job {job!r}")


def run(settings: Settings, job: str, *, once: bool = False) -> int:
    """Run ``job`` until stopped (or, with ``once``, until what is on the topic is processed)."""
    ensure_topics(settings)
    spark = spark_session(settings, f"cadenza-stream-{job}", kafka=True)
    counters = Counters()
    started = start_job(spark, settings, job, counters, once)
    board = StatusBoard(settings, job, started.queries, counters)
    watcher = threading.Thread(target=board.watch, name=f"status-{job}", daemon=True)
    watcher.start()
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s: stopping %s", signal.Signals(signum).name, job)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failed: list[str] = []
    log.info("%s: started %s", job, ", ".join(q.name or str(q.id) for q in started.queries))
    try:
        while not stop.is_set():
            active = [q for q in started.queries if q.isActive]
            for q in started.queries:
                error = q.exception()
                if error is not None:
                    failed.append(f"{q.name}: {str(error).splitlines()[0]}")
            if failed or not active:
                break
            time.sleep(0.5)
    finally:
        for q in started.queries:
            try:
                q.stop()
            except Exception as err:  # already dead
                log.warning("stopping %s: %s", q.name, err)
        started.close()
        board.stop()
        board.write("failed" if failed else "stopped")
        for s, handler in previous.items():
            signal.signal(s, handler)
        spark.stop()
    for message in failed:
        log.error("query failed: %s", message)
    return 1 if failed else 0
