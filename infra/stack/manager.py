"""``cadenza stack up | down | status``: the local stack as one unit.

Starts the Kafka broker and FerretDB (each only if not already running), waits
until each really serves, then creates the registry topics and the database's
collections and indexes. Idempotent: ``up`` on a running stack changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from infra.errors import InfraError
from infra.kafka_clients import TopicState, describe_topics, ensure_topics
from infra.mongo import client, database, init_db, ping
from infra.settings import Settings
from infra.spark import kafka_connector_jars
from infra.stack.ferretdb import FerretDB
from infra.stack.kafka import KafkaBroker
from infra.stack.process import wait_until


class Component(Protocol):
    name: str

    @property
    def address(self) -> str: ...
    def running(self) -> bool: ...
    def answers(self) -> bool: ...
    def start(self, timeout: float = ...) -> None: ...
    def stop(self) -> bool: ...


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    address: str
    pid: int | None
    answers: bool
    log: str


@dataclass(frozen=True)
class StackStatus:
    components: list[ComponentStatus]
    topics: list[TopicState]
    database: str | None
    problems: list[str]

    @property
    def healthy(self) -> bool:
        return all(c.answers for c in self.components) and not self.problems


Report = Callable[[str], None]


class LocalStack:
    """The development/CI stack: one Kafka broker (KRaft) and one FerretDB."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kafka = KafkaBroker(settings)
        self.ferretdb = FerretDB(settings)
        self.components: tuple[KafkaBroker | FerretDB, ...] = (self.kafka, self.ferretdb)

    def prepare(self, report: Report = lambda _msg: None) -> None:
        """Resolve Kafka's jars and build FerretDB into the cache (no processes started)."""
        report(f"kafka jars: {self.kafka.ensure_jars()}")
        report(f"ferretdb binary: {self.ferretdb.ensure_binary()}")
        jars = kafka_connector_jars(self.settings)
        report(f"spark kafka connector: {', '.join(j.name for j in jars)}")

    def up(self, report: Report = lambda _msg: None) -> None:
        for comp in self.components:
            if comp.running():
                wait_until(comp.answers, 30, comp.name, comp.proc)
                report(f"{comp.name}: already running at {comp.address}")
                continue
            report(f"{comp.name}: starting …")
            comp.start()
            report(f"{comp.name}: ready at {comp.address} (log {comp.proc.log_file})")
        for change in ensure_topics(self.settings):
            report(f"kafka: {change}")
        mongo = client(self.settings)
        try:
            for change in init_db(database(self.settings, mongo)):
                report(f"mongodb: created {change}")
        finally:
            mongo.close()

    def down(self, report: Report = lambda _msg: None) -> None:
        for comp in reversed(self.components):
            if comp.stop():
                report(f"{comp.name}: stopped")
            else:
                report(f"{comp.name}: not running")

    def status(self) -> StackStatus:
        comps = [
            ComponentStatus(c.name, c.address, c.proc.pid(), c.answers(), str(c.proc.log_file))
            for c in self.components
        ]
        problems: list[str] = []
        topics: list[TopicState] = []
        version = None
        try:
            topics = describe_topics(self.settings)
            problems += [
                f"topic {t.name} has {t.partitions} partitions, registry says {t.expected}"
                for t in topics
                if t.partitions != t.expected
            ]
        except InfraError as err:
            problems.append(str(err))
        try:
            version = ping(self.settings)
        except InfraError as err:
            problems.append(str(err))
        return StackStatus(comps, topics, version, problems)
