"""Running the ETL's partitions on Spark: sizing, executor environment, progress, cancelling.

Source: the :class:`~etl.partition.WorkItem` list that :func:`etl.job.run_etl` planned.
Destination: Spark's Python workers, which run :func:`etl.partition.process_partition`
(and write MongoDB and Kafka themselves); back come the per-item
:class:`~etl.partition.Outcome` s. The action runs in a helper thread under its own
job group while the calling thread reports progress from an accumulator, so Ctrl-C or
a raising progress callback cancels exactly this job, and returns only once no task
of it runs any more.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any, Final

from etl.errors import EtlError
from etl.partition import Outcome, PartitionConfig, WorkItem, process_partition

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

Progress = Callable[[int, int], None]

#: At most this many tracks per partition: one MongoDB insert and one Kafka flush each,
#: and at most this much work lost to a hard kill.
MAX_PER_PARTITION: Final = 24
#: Partitions per core for small runs: tracks are dealt out by duration so that
#: partitions take about equally long, and few tasks keep Spark's per-task cost
#: (~0.1-0.3 s on a small machine, measured) low.
PARTITIONS_PER_CORE: Final = 1
#: Duration assumed for a track whose metadata has none (FMA's clips are 30 s).
DEFAULT_DURATION_S: Final = 30.0
POLL_S: Final = 0.25
CANCEL_WAIT_S: Final = 60.0
THREAD_VARIABLES: Final = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def executor_env() -> dict[str, str]:
    """Environment of the Python workers: numba's kernel cache, one math thread per task."""
    from etl.features import numba_cache_dir

    return {"NUMBA_CACHE_DIR": str(numba_cache_dir()), **dict.fromkeys(THREAD_VARIABLES, "1")}


def spark_conf() -> dict[str, str]:
    """Spark settings of the ETL session: :func:`executor_env` and Python worker reuse."""
    env = {f"spark.executorEnv.{k}": v for k, v in executor_env().items()}
    return {**env, "spark.python.worker.reuse": "true"}


def partition_count(n: int, parallelism: int) -> int:
    """Partitions for ``n`` tracks: one per core, more when that exceeds 24 tracks each."""
    if n <= 0:
        return 0
    size = max(1, min(MAX_PER_PARTITION, math.ceil(n / (PARTITIONS_PER_CORE * max(1, parallelism)))))
    return math.ceil(n / size)


def deal(items: Sequence[WorkItem], parts: int, excerpt_s: float = 0.0) -> list[list[WorkItem]]:
    """Split items into ``parts`` lists of about equal total audio duration analysed.

    Longest first, each to the currently lightest list (LPT scheduling), so a few long
    tracks do not leave one core working while the others idle. Lists are in id order.
    With an excerpt (``excerpt_s`` > 0) a track costs at most that many seconds.
    """
    if parts <= 0:
        return []
    chunks: list[list[WorkItem]] = [[] for _ in range(parts)]
    load = [(0.0, i) for i in range(parts)]
    cost = {item.track_id: duration(item, excerpt_s) for item in items}
    for item in sorted(items, key=lambda it: (-cost[it.track_id], it.track_id)):
        total, index = heapq.heappop(load)
        chunks[index].append(item)
        heapq.heappush(load, (total + cost[item.track_id], index))
    return [sorted(chunk, key=lambda it: it.track_id) for chunk in chunks if chunk]


def duration(item: WorkItem, excerpt_s: float = 0.0) -> float:
    """Seconds of audio analysed for ``item``: its duration, at most ``excerpt_s`` if > 0."""
    seconds = item.fields.get("duration_s") or 0.0
    whole = float(seconds) if seconds > 0 else DEFAULT_DURATION_S
    return min(whole, excerpt_s) if excerpt_s > 0 else whole


def failure_message(exc: BaseException) -> str:
    """The Python error behind a failed Spark job, in one line."""
    text = str(exc)
    for name, message in reversed(re.findall(r"^([\w.]*(?:Error|Exception)): (.+)$", text, flags=re.M)):
        if not name.startswith(("org.apache", "java.", "py4j.", "scala.")):
            return f"{name.rsplit('.', 1)[-1]}: {message.strip()}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


def run_partitions(
    spark: SparkSession,
    config: PartitionConfig,
    items: Sequence[WorkItem],
    progress: Progress | None,
    partitions: int | None = None,
) -> tuple[list[Outcome], int, float]:
    """Run :func:`etl.partition.process_partition` over ``items`` on Spark.

    ``partitions`` defaults to :func:`partition_count`; each partition gets one list of
    :func:`deal`. Returns ``(outcomes, partitions, seconds)``. The action runs in a helper thread
    under its own job group while this thread reports progress, so an exception here
    (Ctrl-C, a raising ``progress``) cancels exactly this job.
    """
    total = len(items)
    if total == 0:
        if progress:
            progress(0, 0)
        return [], 0, 0.0
    sc = spark.sparkContext
    parts = min(total, partitions or partition_count(total, sc.defaultParallelism))
    chunks = deal(items, parts, config.excerpt_s)
    done = sc.accumulator(0)
    group = f"cadenza-etl-{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {}

    def action() -> None:
        sc.setJobGroup(group, f"cadenza etl: {total} tracks", interruptOnCancel=True)
        try:
            rdd = sc.parallelize(chunks, len(chunks))  # one list per partition
            work = rdd.mapPartitions(
                lambda lists: process_partition(config, chain.from_iterable(lists), done)
            )
            result["outcomes"] = work.collect()
        except BaseException as exc:  # reported by the calling thread
            result["error"] = exc

    saved = dict(sc.environment)
    sc.environment.update(executor_env())  # read when the job's Python function is built
    started = time.perf_counter()
    worker = threading.Thread(target=action, name="cadenza-etl-job", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(POLL_S)
            if progress:
                progress(min(int(done.value), total), total)
    except BaseException:
        with contextlib.suppress(Exception):  # the JVM may be going down with us
            sc.cancelJobGroup(group)
            worker.join(CANCEL_WAIT_S)
            wait_until_idle(sc, group)
        raise
    finally:
        sc.environment.clear()
        sc.environment.update(saved)
    if "error" in result:
        wait_until_idle(sc, group)
        raise EtlError(
            f"the Spark ETL job failed: {failure_message(result['error'])}; "
            "fix the cause and run it again (tracks stored so far are kept)"
        )
    if progress:
        progress(total, total)
    return list(result["outcomes"]), len(chunks), time.perf_counter() - started


def wait_until_idle(sc: SparkContext, group: str, timeout_s: float = CANCEL_WAIT_S) -> None:
    """Block until no task of the job group runs any more (a cancelled job's tasks still
    finish their partition, or are killed), so nothing writes after :func:`run_etl` returns."""
    tracker = sc.statusTracker()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        active = 0
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                stage = tracker.getStageInfo(stage_id)
                active += stage.numActiveTasks if stage else 0
        if active == 0:
            return
        time.sleep(POLL_S)
