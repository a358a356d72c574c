"""The topic registry: every Kafka topic Cadenza uses, its key, value type and partitions.

Names are relative (``plays``); the deployed name is ``<prefix><name>`` with the prefix
from settings (``cadenza.`` by default), so tests and tenants can run side by side.
``infra.stack`` creates these topics; every producer and consumer looks names up here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas.events import DeadLetter, PlayEvent, Recommendation, TrackAssigned, TrackEvent, Trending


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: relative name, what its key is, the value model and partition count."""

    name: str
    key: str
    value: type[BaseModel]
    partitions: int
    description: str
    retention_ms: int | None = None

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"


_WEEK_MS = 7 * 24 * 3600 * 1000

PLAYS = TopicSpec("plays", "user_id", PlayEvent, 6, "plays, skips, completes and likes")
TRACKS_NEW = TopicSpec("tracks.new", "track_id", TrackEvent, 3, "tracks entering the catalogue")
TRACKS_ASSIGNED = TopicSpec(
    "tracks.assigned", "track_id", TrackAssigned, 3, "cluster assignments of new tracks"
)
RECOMMENDATIONS = TopicSpec(
    "recommendations", "user_id", Recommendation, 6, "fresh up-next lists per listener"
)
TRENDING = TopicSpec("trending", "cluster", Trending, 3, "sliding-window play counts per cluster")
DLQ = TopicSpec(
    "dlq", "original key", DeadLetter, 1, "records a consumer rejected, with the reason", 4 * _WEEK_MS
)

TOPICS: tuple[TopicSpec, ...] = (PLAYS, TRACKS_NEW, TRACKS_ASSIGNED, RECOMMENDATIONS, TRENDING, DLQ)
BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}
