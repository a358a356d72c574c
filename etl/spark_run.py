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
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from etl.errors import EtlError
from etl.partition import Outcome, PartitionConfig, WorkItem, process_partition

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

Progress = Callable[[int, int], None]

#: At most this many tracks per partition: one MongoDB insert and one Kafka flush each.
MAX_PER_PARTITION: Final = 16
#: Aim for this many partitions per core, so fast and slow clips even out.
PARTITIONS_PER_CORE: Final = 4
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
    """Partitions for ``n`` tracks: about 4 per core, at most 16 tracks each."""
    if n <= 0:
        return 0
    size = max(1, min(MAX_PER_PARTITION, math.ceil(n / (PARTITIONS_PER_CORE * max(1, parallelism)))))
    return math.ceil(n / size)


def failure_message(exc: BaseException) -> str:
    """The Python error behind a failed Spark job, in one line."""
    text = str(exc)
    for name, message in reversed(re.findall(r"^([\w.]*(?:Error|Exception)): (.+)$", text, flags=re.M)):
        if not name.startswith(("org.apache", "java.", "py4j.", "scala.")):
            return f"{name.rsplit('.', 1)[-1]}: {message.strip()}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


def run_partitions(
    spark: SparkSession, config: PartitionConfig, items: Sequence[WorkItem], progress: Progress | None
) -> tuple[list[Outcome], int, float]:
    """Run :func:`etl.partition.process_partition` over ``items`` on Spark.

    Returns ``(outcomes, partitions, seconds)``. The action runs in a helper thread
    under its own job group while this thread reports progress, so an exception here
    (Ctrl-C, a raising ``progress``) cancels exactly this job.
    """
    total = len(items)
    if total == 0:
        if progress:
            progress(0, 0)
        return [], 0, 0.0
    sc = spark.sparkContext
    partitions = partition_count(total, sc.defaultParallelism)
    done = sc.accumulator(0)
    group = f"cadenza-etl-{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {}

    def action() -> None:
        sc.setJobGroup(group, f"cadenza etl: {total} tracks", interruptOnCancel=True)
        try:
            rdd = sc.parallelize(list(items), partitions)
            work = rdd.mapPartitions(lambda rows: process_partition(config, rows, done))
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
    return list(result["outcomes"]), partitions, time.perf_counter() - started


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
