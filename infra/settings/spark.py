"""Settings of Spark: the master, executors and the local cluster profile's workers."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from infra.settings.component import Component


class SparkSettings(Component):
    """Spark settings: see each field's description."""

    spark_master: str = Field(
        "local[*]",
        description="Spark master URL (local[*], spark://…); default spark://127.0.0.1:<spark_master_port> "
        "in the cluster profile.",
    )
    spark_master_port: int = Field(7077, description="Cluster profile: Spark standalone master port.")
    spark_ui_port: int = Field(
        8080, description="Cluster profile: Spark master web UI port; worker i uses spark_ui_port + 1 + i."
    )
    spark_workers: int = Field(2, ge=1, le=8, description="Cluster profile: Spark standalone workers.")
    spark_worker_cores: int = Field(2, ge=1, description="Cluster profile: cores each Spark worker offers.")
    spark_worker_memory: str = Field("3g", description="Cluster profile: memory each Spark worker offers.")
    spark_executor_memory: str = Field("1g", description="Memory of one executor on a Spark cluster.")
    spark_cores_max: int = Field(
        2,
        ge=1,
        description="Cores one application takes on a Spark cluster (one executor of one core per "
        "worker), so both streaming queries and a batch job fit side by side.",
    )
    spark_executor_env: Path | None = Field(
        None,
        description="Python environment archive (venv-pack .tar.gz) shipped to executors on a Spark "
        "cluster; default: built into the cache by `cadenza stack prepare --profile cluster`.",
    )
    spark_driver_memory: str = Field("2g", description="Spark driver memory.")
    spark_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="CPU niceness of the Structured Streaming jobs (their JVM and Python workers) "
        "under `cadenza demo`/`stack up`, and of the cluster profile's Spark workers: on a "
        "machine they share with the recommender and gateways, listeners' latency goes first "
        "and Spark takes the CPU left over. 0 runs them at normal priority.",
    )
    spark_shuffle_partitions: int = Field(
        2,
        ge=1,
        description="spark.sql.shuffle.partitions of Cadenza's Spark jobs (about the cores they get), "
        "and the most tasks a streaming micro-batch reads Kafka in. A stateful streaming query keeps "
        "the value its checkpoint was created with (its state is partitioned by it): a new value "
        "applies to new checkpoints only (README, checkpoint migration).",
    )
    spark_kafka_jars: str | None = Field(
        None,
        description="Comma-separated jar paths of spark-sql-kafka; default: resolved from "
        "Maven into the cache on first use.",
    )
