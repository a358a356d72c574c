"""The local Apache Kafka brokers, KRaft mode, from Apache Kafka's own jars.

One broker in the local profile; three (``kafka_brokers``) forming one KRaft quorum in
the cluster profile. Jars come from Maven (``infra/poms/kafka-broker.xml``) into
``<cache_dir>/kafka-<version>/libs`` once; each broker's data and config go under
``<data_dir>/kafka`` (``kafka-2``, ``kafka-3`` …), its log to ``<data_dir>/logs/<name>.log``,
written and rotated by the broker's log4j (``log_max_mb``, ``log_backups`` kept; JVM output
outside log4j to ``<name>.out``). Brokers run on the system Java 17+ and listen on
127.0.0.1 only. Topic data is bounded by each topic's retention (``schemas.topics``),
and by the broker defaults below for topics outside the registry.
"""

from __future__ import annotations

import re
from pathlib import Path

from infra.settings import Settings
from infra.stack.process import ManagedProcess, ensure_port_free, port_open, wait_until
from infra.stack.tools import java_bin, require, run_checked

POM = Path(__file__).resolve().parent.parent / "poms" / "kafka-broker.xml"

#: Broker-wide retention, for topics created without their own (Faust's internal topics);
#: the registry's topics carry theirs (``schemas.topics``).
DEFAULT_RETENTION_HOURS = 168
DEFAULT_RETENTION_BYTES = 1024**3  # per partition


def log4j_properties(log_file: Path, max_mb: int, backups: int) -> str:
    """The broker's log4j (1.x, reload4j) configuration: everything to ``log_file``, rolled
    over at ``max_mb`` MB with ``backups`` old files kept (``<log>.1`` …)."""
    return f"""\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.MaxFileSize={max_mb}MB
log4j.appender.file.MaxBackupIndex={backups}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.controller=WARN
log4j.logger.kafka.log.LogCleaner=WARN
"""


def server_properties(settings: Settings, log_dir: Path, index: int = 0) -> str:
    """``server.properties`` of broker ``index`` (KRaft, broker+controller) on loopback.

    One broker in the local profile; ``kafka_brokers`` of them in the cluster profile, all
    voters of one controller quorum, with internal topics replicated three ways and
    ``min.insync.replicas=2`` so an ``acks=all`` write survives the loss of any one broker.
    """
    ports = settings.broker_ports()
    port, cport = ports[index]
    replicas = min(3, len(ports))
    voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
    props = {
        "process.roles": "broker,controller",
        "node.id": str(index + 1),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "3",
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min(2, replicas)),
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min(2, replicas)),
        "group.initial.rebalance.delay.ms": "0",
        # Let consumers ask for short sessions (CADENZA_FAUST_SESSION_TIMEOUT_S): a crashed
        # recommender worker's partitions then move within seconds (broker default 6 s).
        "group.min.session.timeout.ms": "1000",
        "auto.create.topics.enable": "false",
        "unclean.leader.election.enable": "false",
        "message.max.bytes": str(2 * 1024 * 1024),
        "log.retention.hours": str(DEFAULT_RETENTION_HOURS),
        "log.retention.bytes": str(DEFAULT_RETENTION_BYTES),
        "log.segment.bytes": str(256 * 1024 * 1024),
    }
    if replicas > 1:
        # A broker that comes back catches up as a follower, then leadership moves back.
        props["auto.leader.rebalance.enable"] = "true"
        props["leader.imbalance.check.interval.seconds"] = "30"
        # A dead broker is fenced, and its partitions (and the consumer groups it
        # coordinates) led elsewhere, after 3 s (default 9 s): sooner than a recommender
        # worker's session (CADENZA_FAUST_SESSION_TIMEOUT_S) runs out, so losing a broker
        # does not also make every worker rejoin its group.
        props["broker.session.timeout.ms"] = "3000"
        props["broker.heartbeat.interval.ms"] = "750"
    return "".join(f"{k}={v}\n" for k, v in props.items())


class KafkaBroker:
    """Build (resolve jars), configure, start, probe and stop one local broker.

    Broker 0 is ``kafka`` (data ``<data_dir>/kafka``); in the cluster profile brokers 1, 2, …
    are ``kafka-2``, ``kafka-3``, … with their own data dirs, pid and log files.
    """

    def __init__(self, settings: Settings, index: int = 0) -> None:
        self.settings = settings
        self.index = index
        self.node_id = index + 1
        self.name = "kafka" if index == 0 else f"kafka-{index + 1}"
        self.port, self.controller_port = settings.broker_ports()[index]
        self.home = settings.data_dir.resolve() / self.name
        self.libs = settings.cache_dir.expanduser() / f"kafka-{settings.kafka_version}" / "libs"
        self._log_offset = 0
        self.proc = ManagedProcess(
            self.name,
            settings.run_path.resolve(),
            settings.logs_path.resolve(),
            marker=str(self.home) + "/",
            self_logging=True,
            log_max_bytes=settings.log_max_bytes,
            log_backups=settings.log_backups,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ensure_jars(self) -> Path:
        """Resolve the broker's jars into the cache once (Maven), then offline."""
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        mvn = require("mvn", "resolving Apache Kafka's jars needs Maven", "apt install maven")
        self.libs.mkdir(parents=True, exist_ok=True)
        run_checked(
            [
                mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                f"-Dkafka.version={self.settings.kafka_version}",
                f"-DoutputDirectory={self.libs}", "-DincludeScope=runtime",
            ],
            f"resolving Kafka {self.settings.kafka_version} jars with Maven",
        )  # fmt: skip
        marker.write_text(self.settings.kafka_version)
        return self.libs

    def running(self) -> bool:
        return self.proc.pid() is not None

    def answers(self) -> bool:
        return port_open("127.0.0.1", self.port)

    def start(self, timeout: float = 60.0) -> None:
        """Start the broker (formatting storage on first run) and wait until it serves."""
        self.launch()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the broker has joined the quorum and serves (a cluster's brokers are
        launched together first: none is ready before a majority of controllers runs)."""
        wait_until(self._ready, timeout, f"Kafka broker {self.name}", self.proc)

    def launch(self) -> None:
        """Start the broker process (formatting storage on first run) without waiting."""
        java = java_bin()
        self.ensure_jars()
        ensure_port_free("127.0.0.1", self.port, "CADENZA_KAFKA_PORT")
        ensure_port_free("127.0.0.1", self.controller_port, "CADENZA_KAFKA_CONTROLLER_PORT")
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(server_properties(self.settings, data, self.index))
        log4j = self.home / "log4j.properties"
        log4j.write_text(
            log4j_properties(self.proc.log_file, self.settings.log_max_mb, self.settings.log_backups)
        )
        classpath = f"{self.libs}/*"
        if not (data / "meta.properties").exists():
            self._format(java, classpath, props, data)
        log_file = self.proc.log_file
        self._log_offset = log_file.stat().st_size if log_file.exists() else 0
        self.proc.start(
            [
                java, f"-Xmx{self.settings.kafka_heap}", f"-Xms{self.settings.kafka_heap}",
                "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{log4j}",
                f"-Dkafka.logs.dir={self.settings.logs_path.resolve()}",
                "-cp", classpath, "kafka.Kafka", str(props),
            ]
        )  # fmt: skip

    def _format(self, java: str, classpath: str, props: Path, data: Path) -> None:
        # Every broker of a cluster is formatted with the same id, kept with broker 0.
        id_file = self.settings.data_dir.resolve() / "kafka" / "cluster.id"
        cluster_id = id_file.read_text().strip() if id_file.exists() else ""
        if not re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id):
            cluster_id = (
                run_checked(
                    [java, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"], "kafka storage uuid"
                )
                .strip()
                .splitlines()[-1]
            )
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(cluster_id)
        run_checked(
            [java, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
            f"formatting Kafka storage in {data}",
        )

    def _ready(self) -> bool:
        if not self.answers():
            return False
        try:
            with open(self.proc.log_file, "rb") as fh:
                size = fh.seek(0, 2)
                fh.seek(self._log_offset if size >= self._log_offset else 0)  # rolled over since
                log = fh.read().decode(errors="replace")
        except FileNotFoundError:
            return False
        return "Kafka Server started" in log

    def stop(self) -> bool:
        return self.proc.stop(timeout=30.0)

    def kill(self) -> None:
        self.proc.kill()


def kafka_version_of_jars(libs: Path) -> str | None:
    """The Kafka version in a libs folder (for status), from the broker jar's name."""
    for jar in libs.glob("kafka_2.13-*.jar"):
        return jar.stem.removeprefix("kafka_2.13-")
    return None
