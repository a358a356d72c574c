"""Kafka client factories for every Cadenza process, configured from settings.

Sync code (CLI, Spark foreachBatch, benches, gateway publishing threads) uses
kafka-python; async services use aiokafka. Producers are idempotent with
``acks=all`` so a retried send is never written twice. ``ensure_topics`` creates
the registry's topics (``schemas.topics``) with their partition counts and the
configs that bound their disk use (retention by time and size, segment sizes), and
gives an existing topic any of those configs it lacks, with incremental alter-configs
(a value an operator set on the topic is kept).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from infra.errors import InfraError, UnreachableError
from infra.settings import Settings
from schemas.topics import PLAYS, TOPICS, TopicSpec

CLIENT_ID = "cadenza"
#: How long a kafka-python client waits for the first broker before giving up.
BOOTSTRAP_TIMEOUT_MS = 10000


def unreachable(settings: Settings, err: Exception) -> UnreachableError:
    return UnreachableError(
        f"Kafka at {settings.bootstrap_servers} did not answer ({type(err).__name__}); start the "
        "local stack with `cadenza stack up` or point CADENZA_KAFKA_BOOTSTRAP at your brokers"
    )


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """An idempotent, ``acks=all`` kafka-python producer (bytes in, bytes out)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": f"{CLIENT_ID}-producer",
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": 2 * 1024 * 1024,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "request_timeout_ms": 30000,
    }
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except KafkaError as err:
        raise unreachable(settings, err) from None


def consumer(settings: Settings, *topics: str, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    """A kafka-python consumer with manual commits (commit after processing)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": f"{CLIENT_ID}-consumer",
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    config.update(overrides)
    try:
        return KafkaConsumer(*topics, **config)
    except KafkaError as err:
        raise unreachable(settings, err) from None


def admin(settings: Settings, timeout_ms: int = 10000) -> KafkaAdminClient:
    """A kafka-python admin client; :class:`UnreachableError` if no broker answers."""
    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            client_id=f"{CLIENT_ID}-admin",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
    except KafkaError as err:
        raise unreachable(settings, err) from None


def aio_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent, ``acks=all`` aiokafka producer (call ``await p.start()``)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{CLIENT_ID}-aio-producer",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "max_request_size": 2 * 1024 * 1024,
    }
    config.update(overrides)
    return AIOKafkaProducer(**config)


def aio_consumer(
    settings: Settings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """An aiokafka consumer with manual commits (call ``await c.start()``)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{CLIENT_ID}-aio-consumer",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    config.update(overrides)
    return AIOKafkaConsumer(*topics, **config)


@dataclass(frozen=True)
class PartitionState:
    """One partition as the cluster's metadata reports it (node ids; leader -1 = offline)."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)


@dataclass(frozen=True)
class TopicState:
    """A deployed topic as the broker reports it."""

    name: str
    partitions: int
    expected: int | None
    replication: int = 0
    under_replicated: int = 0
    offline: int = 0


def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec] = TOPICS, client: KafkaAdminClient | None = None
) -> list[str]:
    """Create missing registry topics and grow partition counts; return what changed."""
    own = client is None
    client = client or admin(settings)
    changed: list[str] = []
    try:
        existing = _partition_counts(client)
        wanted = {settings.topic(s): s for s in specs}
        new = [
            NewTopic(
                name,
                num_partitions=spec.partitions,
                replication_factor=settings.kafka_replication_factor,
                topic_configs=_topic_configs(settings, spec),
            )
            for name, spec in wanted.items()
            if name not in existing
        ]
        changelog = settings.recommender_changelog
        if PLAYS in wanted.values() and changelog not in existing:
            # The recommender table's changelog, created here rather than by the first worker:
            # workers starting together race to create it, and the loser's agent crashes
            # (PartitionsMismatch) on the plays it holds, which Faust then acks unprocessed.
            new.append(
                NewTopic(
                    changelog,
                    num_partitions=PLAYS.partitions,
                    replication_factor=settings.kafka_replication_factor,
                    topic_configs={**_durability(settings), "cleanup.policy": "compact"},
                )
            )
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won the race
                client.create_topics(new, timeout_ms=30000)
            changed += [f"created {t.name} ({t.num_partitions} partitions)" for t in new]
        grow = {
            name: NewPartitions(spec.partitions)
            for name, spec in wanted.items()
            if name in existing and existing[name] < spec.partitions
        }
        if grow:
            client.create_partitions(grow)
            changed += [f"grew {n} to {p.total_count} partitions" for n, p in grow.items()]
        if changed:
            _wait_visible(
                client, {t.name: t.num_partitions for t in new} | {n: p.total_count for n, p in grow.items()}
            )
        # Only the disk bounds: durability depends on the replicas a topic really has.
        changed += _add_missing_configs(
            client, {name: spec.configs() for name, spec in wanted.items() if name in existing}
        )
    except KafkaError as err:
        raise unreachable(settings, err) from None
    finally:
        if own:
            client.close()
    return changed


def _wait_visible(client: KafkaAdminClient, wanted: dict[str, int], timeout: float = 30.0) -> None:
    """Block until the broker's metadata shows every topic with its partitions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = _partition_counts(client)
        if all(counts.get(name, 0) >= n for name, n in wanted.items()):
            return
        time.sleep(0.1)
    raise UnreachableError(f"topics {sorted(wanted)} were created but did not appear within {timeout:.0f} s")


def _partition_counts(client: KafkaAdminClient) -> dict[str, int]:
    """Topic name -> partition count for every topic on the cluster."""
    return {name: len(parts) for name, parts in _partition_states(client).items()}


def _partition_states(
    client: KafkaAdminClient, topics: list[str] | None = None
) -> dict[str, list[PartitionState]]:
    """Topic name -> its partitions' leader, replicas and in-sync replicas."""
    out: dict[str, list[PartitionState]] = {}
    for t in client.describe_topics(topics):
        if t.get("is_internal") or t.get("error_code"):
            continue
        name = str(t.get("name") or t.get("topic"))
        out[name] = sorted(
            (
                PartitionState(
                    name,
                    int(p["partition_index"]),
                    int(p["leader_id"]),
                    tuple(p.get("replica_nodes") or ()),
                    tuple(p.get("isr_nodes") or ()),
                )
                for p in t["partitions"]
            ),
            key=lambda p: p.partition,
        )
    return out


def partition_states(settings: Settings, topic: str) -> list[PartitionState]:
    """Leader and replicas of each partition of ``topic`` (``[]`` if it does not exist)."""
    client = admin(settings)
    try:
        return _partition_states(client, [topic]).get(topic, [])
    except KafkaError as err:
        raise unreachable(settings, err) from None
    finally:
        client.close()


def _durability(settings: Settings) -> dict[str, str]:
    """An ``acks=all`` write needs two replicas in sync when there are at least two."""
    return {"min.insync.replicas": str(min(2, settings.kafka_replication_factor))}


def _topic_configs(settings: Settings, spec: TopicSpec) -> dict[str, str]:
    return {**_durability(settings), **spec.configs()}


def _add_missing_configs(client: KafkaAdminClient, wanted: dict[str, dict[str, str]]) -> list[str]:
    """Set on each existing topic the configs of ``wanted`` it has no topic-level value for
    (topics created before the registry had them); return what changed."""
    if not wanted:
        return []
    described = _describe_topic_configs(client, wanted)
    missing: dict[str, dict[str, str]] = {}
    for name, configs in wanted.items():
        current = described.get(name) or {}
        if not current:  # not described (an error the client drops): never overwrite blindly
            continue
        unset = {
            key: value
            for key, value in configs.items()
            if current.get(key, {}).get("config_source") != "DYNAMIC_TOPIC_CONFIG"
        }
        if unset:
            missing[name] = unset
    if not missing:
        return []
    results = client.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, dict(configs)) for name, configs in missing.items()],
        raise_on_unknown=False,
        incremental=True,
    ).get("topic", {})
    failed = {name: result for name, result in results.items() if result != "OK"}
    if failed:
        raise InfraError(f"Kafka refused topic configs ({failed}); see the brokers' logs")
    _wait_configs(client, missing)
    return [
        f"configured {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(configs.items()))
        for name, configs in missing.items()
    ]


def _describe_topic_configs(
    client: KafkaAdminClient, wanted: dict[str, dict[str, str]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Topic -> config name -> ``{"value", "config_source", …}`` for the names in ``wanted``."""
    found = client.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, list(configs)) for name, configs in wanted.items()],
        config_filter="all",
    )
    return dict(found.get("topic", {}))


def _wait_configs(client: KafkaAdminClient, wanted: dict[str, dict[str, str]], timeout: float = 30.0) -> None:
    """Block until every broker answer shows ``wanted`` as the topics' own configs (a change
    reaches the brokers a moment after the controller accepts it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = _describe_topic_configs(client, wanted)
        if all(
            described.get(name, {}).get(key, {}).get("value") == value
            for name, configs in wanted.items()
            for key, value in configs.items()
        ):
            return
        time.sleep(0.1)
    raise UnreachableError(
        f"configs of topics {sorted(wanted)} were set but did not apply within {timeout:.0f} s"
    )


def describe_topics(settings: Settings, client: KafkaAdminClient | None = None) -> list[TopicState]:
    """Registry topics with their deployed partition counts (0 if missing)."""
    own = client is None
    client = client or admin(settings)
    try:
        existing = _partition_states(client)
    except KafkaError as err:
        raise unreachable(settings, err) from None
    finally:
        if own:
            client.close()
    out = []
    for spec in TOPICS:
        parts = existing.get(settings.topic(spec), [])
        out.append(
            TopicState(
                settings.topic(spec),
                len(parts),
                spec.partitions,
                replication=max((len(p.replicas) for p in parts), default=0),
                under_replicated=sum(p.under_replicated for p in parts),
                offline=sum(p.leader < 0 for p in parts),
            )
        )
    return out


def end_offsets(
    settings: Settings, topics: Iterable[str], timeout_ms: int = BOOTSTRAP_TIMEOUT_MS
) -> dict[str, dict[int, int]]:
    """Log-end offset of every partition of ``topics`` (missing topics are left out)."""
    import logging

    from kafka import TopicPartition

    quiet = logging.getLogger("kafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # an unreachable broker is reported once, below
    try:
        c = consumer(settings, group_id=None, enable_auto_commit=False, bootstrap_timeout_ms=timeout_ms)
    finally:
        quiet.setLevel(level)
    try:
        partitions = []
        for topic in topics:
            for p in sorted(c.partitions_for_topic(topic) or ()):
                partitions.append(TopicPartition(topic, p))
        ends = c.end_offsets(partitions) if partitions else {}
    except KafkaError as err:
        raise unreachable(settings, err) from None
    finally:
        c.close()
    out: dict[str, dict[int, int]] = {}
    for tp, offset in ends.items():
        out.setdefault(tp.topic, {})[tp.partition] = int(offset)
    return out
