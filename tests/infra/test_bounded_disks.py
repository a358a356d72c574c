"""Bounded disks (issue 21): every topic has retention by time and size (on the real broker),
streaming checkpoints keep a bounded number of batches, old model versions are pruned, and
every log the stack and the demo write is rotated."""

from __future__ import annotations

import configparser
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from infra import spark, supervise
from infra.kafka_clients import admin, ensure_topics
from infra.settings import Settings
from infra.stack import kafka as kafka_stack
from infra.stack import spark_standalone as ss
from infra.stack.ferretdb import FerretDB
from infra.stack.process import ManagedProcess, rotate
from schemas.cluster_model import CURRENT_FILE, EXPORT_FILE, ClusterModel
from schemas.documents import ModelDoc
from schemas.events import PlayEvent
from schemas.features import FEATURE_COLUMNS, FEATURE_SET_VERSION, N_FEATURES
from schemas.topics import DLQ, PLAYS, TOPICS, TopicSpec
from streaming_jobs.model import registry

BOUNDS = ("retention.ms", "retention.bytes", "segment.ms", "segment.bytes")


# --- Kafka topics -----------------------------------------------------------------------------


def _topic_configs(settings: Settings, names: list[str]) -> dict[str, dict[str, Any]]:
    client = admin(settings)
    try:
        found = client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names], config_filter="all"
        )
    finally:
        client.close()
    return dict(found["topic"])


def test_every_topic_spec_bounds_its_disk_by_time_and_size() -> None:
    bench_topic = TopicSpec("floor-sink", "user_id", PlayEvent, 1, "a bench's own topic")
    for spec in (*TOPICS, bench_topic):
        configs = spec.configs()
        assert configs["cleanup.policy"] == "delete", spec.name
        assert 0 < int(configs["retention.ms"]) <= 31 * 24 * 3600 * 1000, spec.name
        assert 0 < int(configs["retention.bytes"]) <= 1024**3, spec.name
        # Kafka never deletes the segment being written: segments roll well inside the bounds.
        assert int(configs["segment.ms"]) <= int(configs["retention.ms"]), spec.name
        assert int(configs["segment.bytes"]) <= int(configs["retention.bytes"]) // 4 or (
            int(configs["segment.bytes"]) == 1024 * 1024
        ), spec.name


@pytest.mark.stack
def test_every_registry_topic_is_created_with_its_retention_on_the_broker(topics: Settings) -> None:
    names = {topics.topic(spec): spec for spec in TOPICS}
    assert topics.topic(DLQ) in names  # the dead letters too
    described = _topic_configs(topics, list(names))
    for name, spec in names.items():
        for key in BOUNDS:
            entry = described[name][key]
            assert entry["value"] == spec.configs()[key], (name, key)
            assert entry["config_source"] == "DYNAMIC_TOPIC_CONFIG", (name, key)  # the topic's own
        assert described[name]["cleanup.policy"]["value"] == "delete"


@pytest.mark.stack
def test_ensure_topics_bounds_existing_topics_and_keeps_an_operators_own_values(settings: Settings) -> None:
    plays, dlq = settings.topic(PLAYS), settings.topic(DLQ)
    client = admin(settings)
    try:  # topics from before the registry had retention; the DLQ with an operator's value
        client.create_topics(
            [
                NewTopic(plays, num_partitions=PLAYS.partitions, replication_factor=1),
                NewTopic(
                    dlq, num_partitions=1, replication_factor=1, topic_configs={"retention.ms": "123456"}
                ),
            ],
            timeout_ms=30000,
        )
    finally:
        client.close()
    deadline = time.monotonic() + 30
    while not (bare := _topic_configs(settings, [plays]).get(plays)) and time.monotonic() < deadline:
        time.sleep(0.2)  # the broker describes a topic once its metadata has spread
    assert bare is not None and bare["retention.bytes"]["config_source"] != "DYNAMIC_TOPIC_CONFIG"

    changes = ensure_topics(settings)

    assert any(c.startswith(f"configured {plays}:") for c in changes), changes
    described = _topic_configs(settings, [plays, dlq])
    for key in BOUNDS:
        assert described[plays][key]["value"] == PLAYS.configs()[key], key
    assert described[dlq]["retention.ms"]["value"] == "123456"  # the operator's value is kept
    assert described[dlq]["retention.bytes"]["value"] == DLQ.configs()["retention.bytes"]
    assert ensure_topics(settings) == []  # and nothing left to do


def test_the_local_brokers_bound_topics_outside_the_registry(tmp_path: Path) -> None:
    props = dict(
        line.split("=", 1)
        for line in kafka_stack.server_properties(Settings(data_dir=tmp_path), tmp_path).splitlines()
    )
    assert int(props["log.retention.hours"]) > 0
    assert int(props["log.retention.bytes"]) > 0


# --- Spark checkpoints ------------------------------------------------------------------------


def test_streaming_checkpoints_keep_a_bounded_number_of_batches(tmp_path: Path) -> None:
    default = spark.session_conf(Settings(data_dir=tmp_path))
    assert default["spark.sql.streaming.minBatchesToRetain"] == "100"
    tuned = spark.session_conf(Settings(data_dir=tmp_path, stream_min_batches_to_retain=12))
    assert tuned["spark.sql.streaming.minBatchesToRetain"] == "12"


# --- model versions ---------------------------------------------------------------------------


def _model(version: str) -> ClusterModel:
    rng = np.random.default_rng(0)
    return ClusterModel(
        version=version,
        feature_columns=tuple(FEATURE_COLUMNS),
        feature_set_version=FEATURE_SET_VERSION,
        mean=rng.normal(0, 1, N_FEATURES),
        std=np.ones(N_FEATURES),
        components=np.eye(N_FEATURES)[:, :2],
        centroids=rng.normal(0, 1, (3, 2)),
        explained_variance=np.full(2, 0.3),
    )


def _saved_version(
    settings: Settings, db: Any, version: str, created: datetime, root: Path | None = None
) -> Path:
    """A registered version with files as training leaves them (export, pipeline folder)."""
    directory = (root or settings.models_path) / version
    _model(version).save(directory / EXPORT_FILE)
    (directory / registry.PIPELINE_DIR).mkdir(parents=True)
    (directory / registry.PIPELINE_DIR / "part-0").write_text("x")
    registry.register(
        db,
        ModelDoc(
            id=version,
            k=3,
            created=created,
            path=str((directory / registry.PIPELINE_DIR).resolve()),
            export_path=str((directory / EXPORT_FILE).resolve()),
        ),
    )
    return directory


def test_prunable_keeps_the_current_version_and_the_newest_others() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    docs = [
        ModelDoc(
            id=f"v{i}", k=3, created=t0 + timedelta(hours=i), path="p", export_path="e", current=(i == 2)
        )
        for i in range(1, 8)
    ]
    doomed = registry.prunable(docs, {"v1"}, keep=2)  # v1 current by the pointer, v2 by its flag
    assert [d.id for d in doomed] == ["v5", "v4", "v3"]
    assert registry.prunable(docs, set(), keep=10) == []


@pytest.mark.stack
def test_promoting_a_model_prunes_all_but_the_current_and_the_newest_versions(
    settings: Settings, db: Any
) -> None:
    settings = settings.model_copy(update={"model_keep": 2})
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    dirs = {f"v{i}": _saved_version(settings, db, f"v{i}", t0 + timedelta(hours=i)) for i in range(1, 6)}
    elsewhere = settings.data_dir / f"other-{uuid.uuid4().hex[:6]}"
    foreign = _saved_version(settings, db, "v0-foreign", t0, root=elsewhere)  # another deployment's

    result = registry.promote(db, settings, "v2")  # roll back to an old version

    assert set(result.pruned) == {"v1", "v3"}
    assert {d.id for d in registry.list_models(db)} == {"v2", "v4", "v5", "v0-foreign"}
    assert [v for v, d in dirs.items() if d.exists()] == ["v2", "v4", "v5"]
    assert foreign.exists()
    assert (settings.models_path / CURRENT_FILE).read_text().strip() == "v2"
    assert registry.current_model(db) is not None and registry.current_model(db).id == "v2"  # type: ignore[union-attr]

    # A newer model promoted: the previous current (v2) is now only the third newest, and goes.
    _saved_version(settings, db, "v6", t0 + timedelta(hours=6))
    assert set(registry.promote(db, settings, "v6").pruned) == {"v2"}
    assert {d.id for d in registry.list_models(db)} == {"v6", "v5", "v4", "v0-foreign"}


# --- logs -------------------------------------------------------------------------------------


def _sections(text: str) -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return {name: dict(parser[name]) for name in parser.sections()}


@pytest.mark.parametrize("profile", ["local", "cluster"])
def test_every_demo_process_log_is_rotated(tmp_path: Path, profile: str) -> None:
    settings = Settings(data_dir=tmp_path, stack_profile=profile, log_max_mb=7, log_backups=3)
    sections = _sections(supervise.render(settings, "/p"))
    programs = {n: s for n, s in sections.items() if n.startswith("program:")}
    assert len(programs) == len(supervise.programs(settings))
    for name, section in programs.items():
        assert section["stdout_logfile"].endswith(".log"), name  # a file of ours, never AUTO
        assert section["stdout_logfile_maxbytes"] == "7MB", name
        assert section["stdout_logfile_backups"] == "3", name
        assert section["redirect_stderr"] == "true", name  # so stderr is rotated with it
    assert sections["supervisord"]["logfile_maxbytes"] == "7MB"
    assert sections["supervisord"]["logfile_backups"] == "3"


def test_kafka_brokers_roll_their_own_log(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, log_max_mb=7, log_backups=3)
    broker = kafka_stack.KafkaBroker(settings)
    text = kafka_stack.log4j_properties(broker.proc.log_file, settings.log_max_mb, settings.log_backups)
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    appender = props["log4j.rootLogger"].split(",")[1].strip()
    assert props[f"log4j.appender.{appender}"] == "org.apache.log4j.RollingFileAppender"
    assert props[f"log4j.appender.{appender}.File"] == str(broker.proc.log_file)
    assert props[f"log4j.appender.{appender}.MaxFileSize"] == "7MB"
    assert props[f"log4j.appender.{appender}.MaxBackupIndex"] == "3"
    assert "ConsoleAppender" not in text
    assert broker.proc.out_file != broker.proc.log_file  # raw JVM output beside, not into, the log


def test_spark_daemons_roll_their_logs_and_their_executors_output(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, stack_profile="cluster", log_max_mb=7, log_backups=3)
    for daemon in ss.spark_components(settings):
        assert daemon.proc.self_logging and daemon.proc.out_file != daemon.proc.log_file
        text = ss.daemon_log4j2(daemon.proc.log_file, settings.log_max_mb, settings.log_backups)
        props = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)
        assert props["appender.file.type"] == "RollingFile"
        assert props["appender.file.fileName"] == str(daemon.proc.log_file)
        assert props["appender.file.policies.size.size"] == "7MB"
        assert props["appender.file.strategy.max"] == "3"
    workers = ss.worker_properties(settings)
    assert workers["spark.executor.logs.rolling.strategy"] == "size"
    assert workers["spark.executor.logs.rolling.maxSize"] == str(7 * 1024 * 1024)
    assert workers["spark.executor.logs.rolling.maxRetainedFiles"] == "3"
    assert workers["spark.worker.cleanup.enabled"] == "true"
    assert ss.daemon_java_opts(Path("/x.properties")) == "-Dlog4j2.configurationFile=file:/x.properties"


def test_a_log_past_its_size_is_rotated_keeping_the_backups(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    for generation in range(4):
        log.write_text(f"run {generation}\n" * 100)
        assert rotate(log, max_bytes=100, backups=2)
    assert not log.exists()
    assert (tmp_path / "x.log.1").read_text().startswith("run 3")
    assert (tmp_path / "x.log.2").read_text().startswith("run 2")
    assert not (tmp_path / "x.log.3").exists()
    log.write_text("small")
    assert not rotate(log, max_bytes=100, backups=2)


def test_a_managed_process_starts_a_fresh_log_once_the_old_one_is_too_big(tmp_path: Path) -> None:
    marker = f"cadenza-rotate-{uuid.uuid4().hex[:8]}"
    proc = ManagedProcess("echo", tmp_path / "run", tmp_path / "logs", marker=marker, log_max_bytes=1000)
    proc.log_dir.mkdir(parents=True)
    proc.log_file.write_text("old\n" * 1000)
    proc.start(["sh", "-c", f"echo new # {marker}"])
    proc.stop(timeout=5)
    assert (tmp_path / "logs" / "echo.log.1").read_text().startswith("old")
    assert "old" not in proc.log_file.read_text()  # the new run's output only
    # FerretDB cannot rotate its own log: the stack rotates it at start with the settings' bounds.
    settings = Settings(data_dir=tmp_path, log_max_mb=3, log_backups=4)
    ferret = FerretDB(settings).proc
    assert (ferret.log_max_bytes, ferret.log_backups) == (3 * 1024 * 1024, 4)
