"""SparkSession factory and Spark's Kafka connector, configured from settings.

The connector (``spark-sql-kafka-0-10`` of the installed pyspark's Spark line, plus
the three jars it needs that pyspark does not ship) is resolved once with Maven
(``infra/poms/spark-kafka.xml``) into ``<cache_dir>/spark-kafka-<version>/``; later runs are
offline. Every Spark job in Cadenza gets its session from :func:`spark_session`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from infra.errors import ConfigError
from infra.settings import Settings
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
    """A SparkSession on ``CADENZA_SPARK_MASTER`` (the active one if it exists)."""
    java_bin()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.python.worker.reuse", "true")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.local.dir", str((settings.data_dir / "spark-tmp").resolve()))
        .config("spark.sql.warehouse.dir", str((settings.data_dir / "spark-warehouse").resolve()))
        .config("spark.driver.extraJavaOptions", "-Dderby.system.home=" + str(settings.data_dir.resolve()))
    )
    if settings.spark_master.startswith("local"):
        # Workers that don't spend 0.2 s per task re-reading Spark's jars (infra/spark_daemon.py);
        # a cluster's executors run their own environment, where this module is not installed.
        builder = builder.config("spark.python.daemon.module", "infra.spark_daemon")
    if kafka:
        builder = builder.config("spark.jars", ",".join(str(p) for p in kafka_connector_jars(settings)))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
