"""Settings of Kafka: where clients connect, topic names, the local stack's brokers."""

from __future__ import annotations

from pydantic import Field

from infra.settings.component import Component
from schemas.topics import TopicSpec


class KafkaSettings(Component):
    """Kafka settings: see each field's description."""

    kafka_bootstrap: str | None = Field(
        None,
        description="Kafka bootstrap servers (comma-separated host:port); default: the "
        "local stack's broker, 127.0.0.1:<kafka_port>.",
    )
    topic_prefix: str = Field("cadenza.", description="Prefix of every topic name.")
    kafka_version: str = Field(
        "3.9.1", description="Apache Kafka version the local stack runs (from Maven jars)."
    )
    kafka_port: int = Field(9092, description="Local stack: broker listener port.")
    kafka_controller_port: int = Field(9093, description="Local stack: KRaft controller port.")
    kafka_heap: str = Field("512m", description="Local stack: broker JVM heap (-Xmx).")
    kafka_replication_factor: int = Field(
        1, ge=1, description="Replication factor of created topics (default 3 in the cluster profile)."
    )
    kafka_brokers: int = Field(
        3,
        ge=1,
        le=9,
        description="Cluster profile: brokers started; broker i listens on kafka_port + 100*i and "
        "kafka_controller_port + 100*i.",
    )

    def topic(self, spec: TopicSpec | str) -> str:
        """Deployed name of a registry topic (``plays`` -> ``cadenza.plays``)."""
        name = spec if isinstance(spec, str) else spec.name
        return f"{self.topic_prefix}{name}"
