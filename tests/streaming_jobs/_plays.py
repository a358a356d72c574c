"""Scripted plays for the plays-stream tests, and the expected results in plain Python.

The reference here is written independently of ``streaming_jobs`` (no shared code):
sessions split where consecutive plays are ``gap`` or more apart, trending windows of
``window`` sliding by ``slide`` aligned on the epoch, profiles counted per cluster.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from infra.kafka_clients import producer
from infra.settings import Settings
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind

BASE = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
VERSION = "20260301-000000-test01"


def install_model_files(models_path: Path, clusters: dict[int, int], version: str = VERSION) -> None:
    """A registry pointer and the ``assignments.npz`` a trained model would leave."""
    directory = models_path / version
    directory.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(sorted(clusters), dtype=np.int64)
    np.savez(directory / "assignments.npz", ids=ids, clusters=np.asarray([clusters[i] for i in ids]))
    (models_path / "current").write_text(version + "\n")


def play(
    user: str, track: int, minutes: float, kind: str = "play", event_id: uuid.UUID | None = None
) -> PlayEvent:
    return PlayEvent(
        event_id=event_id or uuid.uuid4(),
        user_id=user,
        track_id=track,
        kind=PlayKind(kind),
        ts=BASE + timedelta(minutes=minutes),
    )


def publish(settings: Settings, topic: str, records: Iterable[PlayEvent | tuple[bytes | None, bytes]]) -> int:
    sent = 0
    with_producer = producer(settings)
    try:
        for record in records:
            if isinstance(record, PlayEvent):
                with_producer.send(topic, key=encode_key(record.user_id), value=encode(record))
            else:
                with_producer.send(topic, key=record[0], value=record[1])
            sent += 1
        with_producer.flush(timeout=30)
    finally:
        with_producer.close(timeout=10)
    return sent


@dataclass
class Reference:
    """What the stream should have stored, given which plays were on time."""

    accepted: list[PlayEvent]
    clusters: dict[int, int]
    gap: timedelta
    window: timedelta
    slide: timedelta

    def sessions(self, watermark: datetime) -> dict[str, dict[str, Any]]:
        by_user: dict[str, list[PlayEvent]] = defaultdict(list)
        for e in self.accepted:
            by_user[e.user_id].append(e)
        out: dict[str, dict[str, Any]] = {}
        for user, events in by_user.items():
            events.sort(key=lambda e: (e.ts, e.track_id, e.kind.value))
            groups: list[list[PlayEvent]] = [[events[0]]]
            for prev, cur in pairwise(events):
                if cur.ts - prev.ts >= self.gap:
                    groups.append([])
                groups[-1].append(cur)
            for group in groups:
                if group[-1].ts + self.gap > watermark:
                    continue  # still open
                kinds = Counter(e.kind.value for e in group)
                clusters = Counter(self.clusters[e.track_id] for e in group)
                first: dict[int, datetime] = {}
                for e in group:
                    first.setdefault(e.track_id, e.ts)
                top = max(clusters.values())
                key = f"{user}:{group[0].ts.isoformat().replace('+00:00', 'Z')}"
                out[key] = {
                    "user_id": user,
                    "start": group[0].ts,
                    "end": group[-1].ts,
                    "tracks": [t for t, _ in sorted(first.items(), key=lambda kv: (kv[1], kv[0]))],
                    "plays": kinds["play"],
                    "skips": kinds["skip"],
                    "completes": kinds["complete"],
                    "likes": kinds["like"],
                    "dominant_cluster": min(c for c, n in clusters.items() if n == top),
                }
        return out

    def profiles(self, version: str) -> dict[str, dict[str, Any]]:
        counts: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        totals: dict[str, Counter[str]] = defaultdict(Counter)
        tracks: dict[str, Counter[str]] = defaultdict(Counter)
        for e in self.accepted:
            counts[e.user_id][str(self.clusters[e.track_id])][e.kind.value] += 1
            totals[e.user_id][e.kind.value] += 1
            if e.kind is PlayKind.PLAY:
                tracks[e.user_id][str(e.track_id)] += 1
        return {
            user: {
                "counts": {version: {c: dict(k) for c, k in counts[user].items()}},
                "totals": dict(totals[user]),
                "track_plays": dict(tracks[user]),
                "model_version": version,
            }
            for user in counts
        }

    def trending(self, top_n: int) -> dict[str, dict[str, Any]]:
        slide_s = int(self.slide.total_seconds())
        per = int(self.window / self.slide)
        windows: dict[tuple[int, datetime], Counter[int]] = defaultdict(Counter)
        for e in self.accepted:
            bucket = int(e.ts.timestamp()) // slide_s * slide_s
            for i in range(per):
                start = datetime.fromtimestamp(bucket - i * slide_s, UTC)
                windows[(self.clusters[e.track_id], start)][e.track_id] += 1
        out = {}
        for (cluster, start), tracks in windows.items():
            key = f"cluster:{cluster}:{start.isoformat().replace('+00:00', 'Z')}"
            out[key] = {
                "ref": cluster,
                "window_start": start,
                "window_end": start + self.window,
                "plays": sum(tracks.values()),
                "top_tracks": [
                    {"track_id": t, "plays": n}
                    for t, n in sorted(tracks.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
                ],
            }
        return out


def unique(events: Sequence[PlayEvent]) -> list[PlayEvent]:
    seen: set[uuid.UUID] = set()
    out = []
    for e in events:
        if e.event_id not in seen:
            seen.add(e.event_id)
            out.append(e)
    return out
