"""Per-listener state of the plays stream: open sessions and the long-term profile (pure).

Source: one listener's deduplicated, on-time plays of a micro-batch (the plays query
groups by ``user_id`` and hands them here through ``applyInPandasWithState``; see
:mod:`streaming_jobs.plays_stream`). Destination: :class:`ClosedSession` records for
``sessions`` and a profile for ``users``, both written as absolute values, so that a
replayed micro-batch rewrites the same documents.

Sessions: plays of one listener whose consecutive event times are less than ``gap``
apart form one session, however out of order they arrive (sessions merge when a play
bridges them). A session is closed, emitted once and forgotten when the watermark has
passed its last play + ``gap``; since the stream drops plays older than the watermark,
a closed session can never change. ``start``/``end`` are its first and last play.

Profile: counts per cluster and kind, totals per kind, and play counts per track
(at most ``track_cap`` tracks; the least played are forgotten first). Cluster counts
belong to one model version: when plays arrive labelled with a new model, they start
again from zero (cluster ids of different models mean different things).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("play", "skip", "complete", "like")


@dataclass(frozen=True)
class Play:
    """One on-time play, as the listener stage sees it."""

    ts_ms: int
    track_id: int
    kind: str
    cluster: int
    model_version: str | None = None


@dataclass
class OpenSession:
    start_ms: int
    last_ms: int
    first_seen: dict[int, int] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    clusters: Counter[int] = field(default_factory=Counter)

    def add(self, play: Play) -> None:
        self.start_ms = min(self.start_ms, play.ts_ms)
        self.last_ms = max(self.last_ms, play.ts_ms)
        seen = self.first_seen.get(play.track_id)
        if seen is None or play.ts_ms < seen:
            self.first_seen[play.track_id] = play.ts_ms
        self.kinds[play.kind] += 1
        if play.cluster >= 0:
            self.clusters[play.cluster] += 1

    def absorb(self, other: OpenSession) -> None:
        self.start_ms = min(self.start_ms, other.start_ms)
        self.last_ms = max(self.last_ms, other.last_ms)
        for track, ts in other.first_seen.items():
            if track not in self.first_seen or ts < self.first_seen[track]:
                self.first_seen[track] = ts
        self.kinds.update(other.kinds)
        self.clusters.update(other.clusters)


@dataclass(frozen=True)
class ClosedSession:
    """A finished session, as stored in ``sessions``."""

    start_ms: int
    end_ms: int
    tracks: tuple[int, ...]
    plays: int
    skips: int
    completes: int
    likes: int
    dominant_cluster: int | None


def close(session: OpenSession) -> ClosedSession:
    tracks = tuple(t for t, _ in sorted(session.first_seen.items(), key=lambda kv: (kv[1], kv[0])))
    dominant = None
    if session.clusters:
        dominant = min(session.clusters.items(), key=lambda kv: (-kv[1], kv[0]))[0]
    return ClosedSession(
        start_ms=session.start_ms,
        end_ms=session.last_ms,
        tracks=tracks,
        plays=session.kinds["play"],
        skips=session.kinds["skip"],
        completes=session.kinds["complete"],
        likes=session.kinds["like"],
        dominant_cluster=dominant,
    )


@dataclass
class ListenerState:
    """Everything the stream remembers about one listener between micro-batches."""

    sessions: list[OpenSession] = field(default_factory=list)
    model_version: str | None = None
    clusters: dict[int, Counter[str]] = field(default_factory=dict)
    totals: Counter[str] = field(default_factory=Counter)
    track_plays: Counter[int] = field(default_factory=Counter)

    # --- updates ------------------------------------------------------------------------

    def apply(self, plays: Iterable[Play], *, gap_ms: int, track_cap: int) -> None:
        """Add on-time plays to the sessions and the profile."""
        for play in sorted(plays, key=lambda p: (p.ts_ms, p.track_id, p.kind)):
            self._sessionize(play, gap_ms)
            self._count(play)
        if len(self.track_plays) > track_cap:
            keep = sorted(self.track_plays.items(), key=lambda kv: (-kv[1], kv[0]))[:track_cap]
            self.track_plays = Counter(dict(keep))

    def _sessionize(self, play: Play, gap_ms: int) -> None:
        near = [s for s in self.sessions if s.start_ms - gap_ms < play.ts_ms < s.last_ms + gap_ms]
        session = OpenSession(start_ms=play.ts_ms, last_ms=play.ts_ms)
        session.add(play)
        for other in near:
            session.absorb(other)
            self.sessions.remove(other)
        self.sessions.append(session)
        self.sessions.sort(key=lambda s: s.start_ms)

    def _count(self, play: Play) -> None:
        if play.model_version is not None and play.model_version != self.model_version:
            self.model_version = play.model_version
            self.clusters = {}
        self.totals[play.kind] += 1
        if play.cluster >= 0:
            self.clusters.setdefault(play.cluster, Counter())[play.kind] += 1
        if play.kind == "play":
            self.track_plays[play.track_id] += 1

    def close_expired(self, watermark_ms: int, *, gap_ms: int) -> list[ClosedSession]:
        """Close (and forget) every session whose last play + gap is at or before the watermark."""
        done = [s for s in self.sessions if s.last_ms + gap_ms <= watermark_ms]
        self.sessions = [s for s in self.sessions if s.last_ms + gap_ms > watermark_ms]
        return [close(s) for s in done]

    def next_timeout_ms(self, gap_ms: int) -> int | None:
        """Event time at which the earliest open session expires."""
        return min((s.last_ms + gap_ms for s in self.sessions), default=None)

    # --- outputs ------------------------------------------------------------------------

    def profile(self, top_n: int) -> dict[str, Any]:
        """The ``users`` fields this state determines (absolute values)."""
        top = sorted(self.track_plays.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
        return {
            "counts": {str(c): dict(sorted(v.items())) for c, v in sorted(self.clusters.items())},
            "totals": {k: self.totals[k] for k in KINDS},
            "top_tracks": [{"track_id": t, "plays": n} for t, n in top],
            "model_version": self.model_version,
        }

    # --- (de)serialisation, for Spark's state store -------------------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "s": [
                    [
                        s.start_ms,
                        s.last_ms,
                        list(s.first_seen.items()),
                        dict(s.kinds),
                        list(s.clusters.items()),
                    ]
                    for s in self.sessions
                ],
                "v": self.model_version,
                "c": [[c, dict(k)] for c, k in self.clusters.items()],
                "t": dict(self.totals),
                "p": list(self.track_plays.items()),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ListenerState:
        data = json.loads(text)
        return cls(
            sessions=[
                OpenSession(
                    start_ms=start,
                    last_ms=last,
                    first_seen={int(t): int(ts) for t, ts in seen},
                    kinds=Counter(kinds),
                    clusters=Counter({int(c): int(n) for c, n in clusters}),
                )
                for start, last, seen, kinds, clusters in data["s"]
            ],
            model_version=data["v"],
            clusters={int(c): Counter(k) for c, k in data["c"]},
            totals=Counter(data["t"]),
            track_plays=Counter({int(t): int(n) for t, n in data["p"]}),
        )
