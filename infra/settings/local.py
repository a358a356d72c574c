"""Settings of the local machine's data, logs and stack profile (every process reads them)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from infra.settings.component import Component


class LocalSettings(Component):
    """Local settings: see each field's description."""

    data_dir: Path = Field(
        Path(".cadenza"),
        description="Everything the local stack and the jobs write: broker and database "
        "data, logs, checkpoints, models.",
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "cadenza",
        description="Downloaded/built artefacts shared by all checkouts: Kafka jars, "
        "Spark connector jars, the FerretDB binary.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of Cadenza's own processes."
    )
    log_format: Literal["json", "console"] = Field(
        "console", description="'json' for structured logs (one JSON object per line)."
    )
    log_max_mb: int = Field(
        20,
        ge=1,
        description="Size at which every log the local stack and the demo write is rotated: "
        "supervisord's programs (streaming jobs, recommenders, gateways), the Kafka brokers and "
        "Spark daemons (log4j), Spark executors' stdout/stderr; FerretDB's log at its start.",
    )
    log_backups: int = Field(
        2,
        ge=1,
        description="Rotated files kept per log (gateway.log.1 …), so one process's logs never "
        "take more than log_max_mb x (log_backups + 1).",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="Event loop of the gateways and recommender workers: uvloop (libuv; cheaper "
        "socket I/O per play and per push) or the standard library's asyncio.",
    )
    stack_profile: Literal["local", "cluster"] = Field(
        "local",
        description="'local': one Kafka broker, Spark in-process (local[*]), one recommender worker and "
        "one gateway. 'cluster': three KRaft brokers (replication 3, min.insync.replicas 2), a Spark "
        "standalone master with workers, two recommender workers and two gateways, all on loopback.",
    )

    @property
    def clustered(self) -> bool:
        return self.stack_profile == "cluster"

    @property
    def logs_path(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_path(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_max_bytes(self) -> int:
        return self.log_max_mb * 1024 * 1024
