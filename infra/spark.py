"""SparkSession factory and Spark's Kafka connector, configured from settings.

The connector (``spark-sql-kafka-0-10`` of the installed pyspark's Spark line, plus
the three jars it needs that pyspark does not ship) is resolved once with Maven
(``infra/poms/spark-kafka.xml``) into ``<cache_dir>/spark-kafka-<version>/``; later runs are
offline. Every Spark job in Cadenza gets its session from :func:`spark_session`, configured
by :func:`session_conf` (pure).

Secure and bounded defaults: with ``local[*]`` or a master on this machine (the cluster
profile) the driver listens on loopback only, its RPC through ``spark.driver.bindAddress``
/ ``spark.driver.host`` and its web UI (port 4040 on), which Spark binds to the driver
JVM's ``SPARK_LOCAL_IP`` (all interfaces without it), through :func:`driver_env`. A
remote master's driver is left where Spark puts it: its executors must reach it.
Streaming checkpoints keep ``stream_min_batches_to_retain`` micro-batches of offsets,
commits and state (``spark.sql.streaming.minBatchesToRetain``); Spark deletes older ones.
Jobs are scheduled FAIR: each streaming query runs in a pool of its own
(:func:`streaming_jobs.streams.shared.kafka_io.scheduler_pool`), so a short history batch
is not queued behind a long profiles batch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from infra.errors import ConfigError
from infra.settings import Settings, is_loopback
from infra.stack.tools import java_bin, require, run_checked

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

POM = Path(__file__).resolve().parent / "poms" / "spark-kafka.xml"
#: The connector's own jars; everything else it depends on ships with pyspark.
CONNECTOR_ARTIFACTS = (
    "spark-sql-kafka-0-10_2.13",
    "spark-token-provider-kafka-0-10_2.13",
    "kafka-clients",
    "commons-pool2",
)


LOOPBACK = "127.0.0.1"


def driver_on_loopback(master: str) -> bool:
    """True for ``local[…]`` and a ``spark://`` master on this machine: the driver and
    everything that connects to it are here, so it can listen on loopback."""
    if master.startswith("local"):
        return True
    if not master.startswith("spark://"):
        return False
    try:
        host = urlparse(master).hostname
    except ValueError:  # several masters (spark://a:7077,b:7077)
        return False
    return host is not None and is_loopback(host)


def driver_env(settings: Settings) -> dict[str, str]:
    """Environment of the driver JVM: ``SPARK_LOCAL_IP``, the address Spark binds the driver's
    web UI to (all interfaces without it), when the driver listens on loopback."""
    return {"SPARK_LOCAL_IP": LOOPBACK} if driver_on_loopback(settings.spark_master) else {}


def driver_conf(settings: Settings) -> dict[str, str]:
    """Where the driver's RPC and block manager listen and what it tells executors: loopback
    when :func:`driver_on_loopback`, else Spark's own choice (nothing set)."""
    if not driver_on_loopback(settings.spark_master):
        return {}
    return {"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK}


def session_conf(settings: Settings) -> dict[str, str]:
    """Every Spark setting :func:`spark_session` gives a Cadenza session (before the Kafka
    jars and a job's own ``conf``)."""
    data_dir = settings.data_dir.resolve()
    conf = {
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.ui.showConsoleProgress": "false",
        "spark.python.worker.reuse": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.local.dir": str(data_dir / "spark-tmp"),
        "spark.sql.warehouse.dir": str(data_dir / "spark-warehouse"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={data_dir}",
        "spark.sql.streaming.minBatchesToRetain": str(settings.stream_min_batches_to_retain),
        # Streaming queries share the cores: a free task slot goes to the query's pool with the
        # fewest running tasks, not to the oldest job (a batch job runs alone either way).
        "spark.scheduler.mode": "FAIR",
        **driver_conf(settings),
    }
    if settings.spark_master.startswith("local"):
        # Workers that don't spend 0.2 s per task re-reading Spark's jars (infra/spark_daemon.py);
        # a cluster's executors run their own environment, where this module is not installed.
        conf["spark.python.daemon.module"] = "infra.spark_daemon"
    return conf


def _candidate_versions(spark_version: str) -> list[str]:
    """The installed Spark version first, then the first release of its line."""
    major_minor = ".".join(spark_version.split(".")[:2])
    return list(dict.fromkeys([spark_version, f"{major_minor}.0"]))


def kafka_connector_jars(settings: Settings) -> list[Path]:
    """Paths of the Kafka connector jars, resolving them into the cache on first use."""
    if settings.spark_kafka_jars:
        jars = [Path(p) for p in settings.spark_kafka_jars.split(",") if p]
        missing = [str(j) for j in jars if not j.exists()]
        if missing:
            raise ConfigError(f"CADENZA_SPARK_KAFKA_JARS names missing files: {', '.join(missing)}")
        return jars
    import pyspark

    cache = settings.cache_dir.expanduser()
    for version in _candidate_versions(pyspark.__version__):
        target = cache / f"spark-kafka-{version}"
        if (target / ".complete").exists():
            return sorted(target.glob("*.jar"))
    mvn = require("mvn", "resolving Spark's Kafka connector needs Maven", "apt install maven")
    errors = []
    for version in _candidate_versions(pyspark.__version__):
        target = cache / f"spark-kafka-{version}"
        try:
            run_checked(
                [
                    mvn, "-q", "-B", "-U", "-f", str(POM), "dependency:copy-dependencies",
                    f"-Dspark.version={version}", f"-DoutputDirectory={target}",
                    "-DincludeScope=runtime", f"-DincludeArtifactIds={','.join(CONNECTOR_ARTIFACTS)}",
                ],
                f"resolving spark-sql-kafka {version}",
            )  # fmt: skip
        except ConfigError as err:
            errors.append(str(err).splitlines()[0])
            continue
        (target / ".complete").write_text(version)
        return sorted(target.glob("*.jar"))
    raise ConfigError(
        "could not resolve Spark's Kafka connector with Maven ("
        + "; ".join(errors)
        + "); set CADENZA_SPARK_KAFKA_JARS to the jar paths"
    )


def spark_session(
    settings: Settings, app_name: str, *, kafka: bool = False, conf: dict[str, str] | None = None
) -> SparkSession:
    """A SparkSession on ``CADENZA_SPARK_MASTER`` (the active one if it exists), configured
    by :func:`session_conf`; a driver JVM started here gets :func:`driver_env`."""
    java_bin()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.update(driver_env(settings))  # read by the JVM pyspark launches (not one running)
    builder = SparkSession.builder.appName(app_name).master(settings.spark_master)
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    if kafka:
        builder = builder.config("spark.jars", ",".join(str(p) for p in kafka_connector_jars(settings)))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
