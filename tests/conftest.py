"""Shared fixtures: the real local stack (one per test session), per-test isolation,
and one SparkSession (``local[2]``) per test session.

The stack is started on free ports in a temporary data dir, or reused when
``CADENZA_TEST_KAFKA_BOOTSTRAP`` and ``CADENZA_TEST_MONGODB_URI`` name a running one.
Every test that asks for ``settings`` gets its own topic prefix and database, so
tests never see each other's data.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from infra.kafka_clients import ensure_topics
from infra.mongo import client as mongo_client
from infra.settings import Settings
from infra.stack.manager import LocalStack
from infra.stack.process import free_port

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.database import Database
    from pyspark.sql import SparkSession


#: Fixtures that start a real part, and the mark a test using one must carry (so that
#: ``pytest -m "not spark"`` or ``make unit`` never starts Spark or waits for a broker).
NEEDS_MARK = {"spark": "spark", "stack_overrides": "stack"}


def unmarked(item: pytest.Item) -> list[str]:
    """The marks ``item`` lacks for the real parts its fixtures start (pure)."""
    names = set(getattr(item, "fixturenames", ()))
    marks = {m.name for m in item.iter_markers()}
    return sorted({mark for fixture, mark in NEEDS_MARK.items() if fixture in names and mark not in marks})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuses a run in which a test starts Spark or the stack without saying so."""
    missing = [f"{item.nodeid} (add @pytest.mark.{', '.join(m)})" for item in items if (m := unmarked(item))]
    if missing:
        raise pytest.UsageError("tests that start real parts without their mark:\n  " + "\n  ".join(missing))


@pytest.fixture(scope="session")
def stack_overrides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Settings overrides that point at the session's running local stack."""
    bootstrap = os.environ.get("CADENZA_TEST_KAFKA_BOOTSTRAP")
    mongo_uri = os.environ.get("CADENZA_TEST_MONGODB_URI")
    if bootstrap and mongo_uri:
        yield {"kafka_bootstrap": bootstrap, "mongodb_uri": mongo_uri}
        return
    data_dir = tmp_path_factory.mktemp("stack")
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "kafka_port": free_port(),
        "kafka_controller_port": free_port(),
        "ferretdb_port": free_port(),
    }
    stack = LocalStack(Settings(**overrides))
    stack.up()
    try:
        yield overrides
    finally:
        stack.down()


@pytest.fixture(scope="session")
def owned_stack(stack_overrides: dict[str, Any]) -> LocalStack:
    """The session's local stack when this test run started it (skip when reusing one)."""
    if "data_dir" not in stack_overrides:
        pytest.skip("the stack is external (CADENZA_TEST_*): lifecycle tests need their own")
    return LocalStack(Settings(**stack_overrides))


@pytest.fixture
def settings(stack_overrides: dict[str, Any], tmp_path: Path) -> Settings:
    """Settings for one test: the session's stack, a unique topic prefix and database."""
    tag = uuid.uuid4().hex[:10]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    base = {k: v for k, v in stack_overrides.items() if k != "data_dir"}
    return Settings(
        **base,
        data_dir=data_dir,
        topic_prefix=f"t{tag}.",
        mongodb_db=f"t_{tag}",
    )


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """``settings`` with every registry topic created under the test's prefix."""
    ensure_topics(settings)
    return settings


@pytest.fixture
def mongo(settings: Settings) -> Iterator[MongoClient[dict[str, Any]]]:
    client = mongo_client(settings)
    try:
        yield client
    finally:
        client.drop_database(settings.mongodb_db)
        client.close()


@pytest.fixture
def db(mongo: MongoClient[dict[str, Any]], settings: Settings) -> Database[dict[str, Any]]:
    """The test's own database (dropped afterwards)."""
    return mongo[settings.mongodb_db]


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """The one SparkSession of the test run: local[2], with Spark's Kafka connector."""
    from infra.spark import spark_session

    data_dir = tmp_path_factory.mktemp("spark")
    session = spark_session(
        Settings(data_dir=data_dir, spark_master="local[2]", spark_shuffle_partitions=4),
        "cadenza-tests",
        kafka=True,
    )
    try:
        yield session
    finally:
        session.stop()


def topic_reader(settings: Settings, topic: str) -> Any:
    """A consumer of every partition of ``topic`` from its beginning, without a consumer
    group (no group join to wait for; nothing committed)."""
    from kafka import TopicPartition

    from infra.kafka_clients import consumer

    c = consumer(settings, group_id=None)
    deadline = time.monotonic() + 30
    parts = c.partitions_for_topic(topic)
    while not parts and time.monotonic() < deadline:
        time.sleep(0.2)
        parts = c.partitions_for_topic(topic)
    assert parts, f"topic {topic} has no partitions"
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    return c


def read_until_idle(settings: Settings, topic: str, idle_polls: int = 4) -> list[Any]:
    """Every record of ``topic`` (all partitions, from the beginning), read until
    ``idle_polls`` polls of 0.5 s in a row bring nothing."""
    c = topic_reader(settings, topic)
    records: list[Any] = []
    try:
        idle = 0
        while idle < idle_polls:
            batch = c.poll(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for part in batch.values():
                records.extend(part)
    finally:
        c.close()
    return records
