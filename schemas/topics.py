"""The topic registry: every Kafka topic Cadenza uses, its key, value type and partitions.

Names are relative (``plays``); the deployed name is ``<prefix><name>`` with the prefix
from settings (``cadenza.`` by default), so tests and tenants can run side by side.
``infra.stack`` creates these topics; every producer and consumer looks names up here.

Every topic's disk use is bounded: Kafka deletes a partition's oldest records once they
are older than ``retention_ms`` or the partition holds more than ``retention_bytes``
(whichever comes first), a segment at a time; segments roll at least every
``segment_ms`` and ``segment_bytes``, so at most one segment per partition outlives
the bound. A topic therefore holds at most about ``partitions x (retention_bytes +
segment_bytes)`` per replica. Defaults (the README's "Bounded disks" table):

=================  ==========  =================  ===================
topic              retention   bytes / partition  bound (x replicas)
=================  ==========  =================  ===================
plays              7 days      1 GiB              6 x 1.06 GiB
tracks.new         30 days     256 MiB            3 x 320 MiB
tracks.assigned    7 days      256 MiB            3 x 320 MiB
recommendations    1 day       512 MiB            6 x 576 MiB
trending           1 day       128 MiB            3 x 160 MiB
dlq                28 days     1 GiB              1 x 1.06 GiB
=================  ==========  =================  ===================

``infra.kafka_clients.ensure_topics`` creates topics with :meth:`TopicSpec.configs` and
adds any of them an existing topic lacks (an operator's own per-topic value is kept).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas.events import DeadLetter, PlayEvent, Recommendation, TrackAssigned, TrackEvent, Trending

_HOUR_MS = 3600 * 1000
_DAY_MS = 24 * _HOUR_MS
_WEEK_MS = 7 * _DAY_MS
_MIB = 1024 * 1024
#: Largest segment: what a partition may hold beyond ``retention_bytes``.
MAX_SEGMENT_BYTES = 64 * _MIB


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: relative name, what its key is, the value model, partition count and how
    long (``retention_ms``) and how much (``retention_bytes`` per partition) Kafka keeps."""

    name: str
    key: str
    value: type[BaseModel]
    partitions: int
    description: str
    retention_ms: int = _WEEK_MS
    retention_bytes: int = 1024 * _MIB

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"

    @property
    def segment_bytes(self) -> int:
        """A quarter of ``retention_bytes``, at most 64 MiB: deletion goes in small steps."""
        return min(MAX_SEGMENT_BYTES, max(_MIB, self.retention_bytes // 4))

    @property
    def segment_ms(self) -> int:
        """A quarter of ``retention_ms``, at most a day: a quiet topic's records still expire
        (Kafka never deletes the segment being written)."""
        return min(_DAY_MS, max(_HOUR_MS, self.retention_ms // 4))

    def configs(self) -> dict[str, str]:
        """The topic-level Kafka configs that bound this topic's disk use."""
        return {
            "cleanup.policy": "delete",
            "retention.ms": str(self.retention_ms),
            "retention.bytes": str(self.retention_bytes),
            "segment.ms": str(self.segment_ms),
            "segment.bytes": str(self.segment_bytes),
        }


PLAYS = TopicSpec("plays", "user_id", PlayEvent, 6, "plays, skips, completes and likes")
TRACKS_NEW = TopicSpec(
    "tracks.new",
    "track_id",
    TrackEvent,
    3,
    "tracks entering the catalogue",
    retention_ms=30 * _DAY_MS,  # few, small records; a stopped `stream assign` has a month to catch up
    retention_bytes=256 * _MIB,
)
TRACKS_ASSIGNED = TopicSpec(
    "tracks.assigned",
    "track_id",
    TrackAssigned,
    3,
    "cluster assignments of new tracks",
    retention_bytes=256 * _MIB,
)
RECOMMENDATIONS = TopicSpec(
    "recommendations",
    "user_id",
    Recommendation,
    6,
    "fresh up-next lists per listener",
    retention_ms=_DAY_MS,  # gateways read back CADENZA_GATEWAY_REPLAY_S (15 min) of it
    retention_bytes=512 * _MIB,
)
TRENDING = TopicSpec(
    "trending",
    "cluster",
    Trending,
    3,
    "sliding-window play counts per cluster",
    retention_ms=_DAY_MS,
    retention_bytes=128 * _MIB,
)
DLQ = TopicSpec(
    "dlq",
    "original key",
    DeadLetter,
    1,
    "records a consumer rejected, with the reason",
    retention_ms=4 * _WEEK_MS,
)

TOPICS: tuple[TopicSpec, ...] = (PLAYS, TRACKS_NEW, TRACKS_ASSIGNED, RECOMMENDATIONS, TRENDING, DLQ)
BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}
