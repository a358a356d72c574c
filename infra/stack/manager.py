"""``cadenza stack up | down | status``: the local stack as one unit.

Local profile: one Kafka broker and FerretDB. Cluster profile (``CADENZA_STACK_PROFILE=
cluster`` or ``--profile cluster``): three KRaft brokers, FerretDB, and a Spark standalone
master with its workers. Starts each part only if it is not already running, waits
until each really serves, then creates the registry topics (replicated in a cluster)
and the database's collections and indexes. Idempotent: ``up`` on a running stack
changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from infra.errors import InfraError
from infra.groups import GroupAssignment, describe_group
from infra.kafka_clients import TopicState, describe_topics, ensure_topics
from infra.mongo import client, database, init_db, ping
from infra.settings import Settings
from infra.spark import kafka_connector_jars
from infra.stack.ferretdb import FerretDB
from infra.stack.kafka import KafkaBroker
from infra.stack.process import ManagedProcess, wait_until


class Component(Protocol):
    name: str
    proc: ManagedProcess

    @property
    def address(self) -> str: ...
    def running(self) -> bool: ...
    def answers(self) -> bool: ...
    def start(self, timeout: float = ...) -> None: ...
    def stop(self) -> bool: ...
    def kill(self) -> None: ...


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
    recommenders: GroupAssignment | None = None

    @property
    def healthy(self) -> bool:
        return all(c.answers for c in self.components) and not self.problems


Report = Callable[[str], None]


class LocalStack:
    """The development/CI stack (one broker, FerretDB) or the local cluster profile
    (``kafka_brokers`` brokers, FerretDB, a Spark standalone master and workers)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.brokers = [KafkaBroker(settings, i) for i in range(len(settings.broker_ports()))]
        self.kafka = self.brokers[0]
        self.ferretdb = FerretDB(settings)
        self.spark: list[Component] = []
        if settings.clustered:
            from infra.stack.spark_standalone import spark_components

            self.spark = list(spark_components(settings))
        self.components: tuple[Component, ...] = (*self.brokers, self.ferretdb, *self.spark)

    def component(self, name: str) -> Component:
        """One part by name (``kafka-2``, ``spark-worker-1`` …), for fault injection."""
        for comp in self.components:
            if comp.name == name:
                return comp
        names = ", ".join(c.name for c in self.components)
        raise InfraError(f"no stack component {name!r}; there are {names}")

    def prepare(self, report: Report = lambda _msg: None) -> None:
        """Resolve Kafka's jars and build FerretDB into the cache (no processes started)."""
        report(f"kafka jars: {self.kafka.ensure_jars()}")
        report(f"ferretdb binary: {self.ferretdb.ensure_binary()}")
        jars = kafka_connector_jars(self.settings)
        report(f"spark kafka connector: {', '.join(j.name for j in jars)}")
        if self.settings.clustered:
            from infra.deploy.executor_env import executor_env_archive

            report(f"spark executor environment: {executor_env_archive(self.settings, report=report)}")

    def up(self, report: Report = lambda _msg: None) -> None:
        # Brokers start together: none is ready before a majority of the quorum runs.
        launched = []
        for broker in self.brokers:
            if broker.running():
                self.start(broker, report)  # waits until it answers
            else:
                report(f"{broker.name}: starting …")
                broker.launch()
                launched.append(broker)
        for broker in launched:
            broker.wait_ready(90.0)
            report(f"{broker.name}: ready at {broker.address} (log {broker.proc.log_file})")
        for comp in (self.ferretdb, *self.spark):
            self.start(comp, report)
        for change in ensure_topics(self.settings):
            report(f"kafka: {change}")
        mongo = client(self.settings)
        try:
            for change in init_db(database(self.settings, mongo)):
                report(f"mongodb: created {change}")
        finally:
            mongo.close()

    def start(self, comp: Component, report: Report = lambda _msg: None) -> None:
        """Start one part unless it runs already, and wait until it answers."""
        if comp.running():
            wait_until(comp.answers, 30, comp.name, comp.proc)
            report(f"{comp.name}: already running at {comp.address}")
            return
        report(f"{comp.name}: starting …")
        comp.start()
        report(f"{comp.name}: ready at {comp.address} (log {comp.proc.log_file})")

    def down(self, report: Report = lambda _msg: None) -> None:
        def stop(comp: Component) -> None:
            report(f"{comp.name}: {'stopped' if comp.stop() else 'not running'}")

        for comp in reversed((self.ferretdb, *self.spark)):
            stop(comp)
        # Brokers stop together: one by one, the last would wait for a quorum that is gone.
        with ThreadPoolExecutor(max_workers=len(self.brokers)) as pool:
            list(pool.map(stop, self.brokers))

    def status(self) -> StackStatus:
        comps = [
            ComponentStatus(c.name, c.address, c.proc.pid(), c.answers(), str(c.proc.log_file))
            for c in self.components
        ]
        problems: list[str] = []
        topics: list[TopicState] = []
        version = None
        group = None
        try:
            topics = describe_topics(self.settings)
            problems += [
                f"topic {t.name} has {t.partitions} partitions, registry says {t.expected}"
                for t in topics
                if t.partitions != t.expected
            ]
            problems += [f"topic {t.name}: {t.offline} partition(s) leaderless" for t in topics if t.offline]
            group = describe_group(self.settings, self.settings.recommender_group)
        except InfraError as err:
            problems.append(str(err))
        try:
            version = ping(self.settings)
        except InfraError as err:
            problems.append(str(err))
        return StackStatus(comps, topics, version, problems, group)
