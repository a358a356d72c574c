"""One listener's real-time state in the recommender (pure; stored in a Faust table).

Source: the listener's plays, skips, completes and likes from ``cadenza.plays``, each
with the cluster the catalogue gives its track. Destination: the ``listeners`` table
(the states themselves in memory, their JSON form (:meth:`ListenerState.to_dict`) in the
changelog on Kafka) and the ranking (:mod:`recommender_stream.ranking`).

* ``recent``: the last N distinct tracks played (newest last); never recommended.
* ``skipped``: recently skipped tracks (bounded); never recommended while remembered; a
  track played again leaves it (it is then among the recent ones).
* ``affinity``: weight per cluster, decaying with a half-life in event time; a play adds
  1, a completion 0.5, a like 2, a skip takes 1 away (never below 0).
* ``seen``: the last ``seen_events`` event ids (:func:`seen_key`), so a redelivered event
  changes nothing. Redelivery only reaches back to the last committed offset (commits
  happen every second), so a few hundred is plenty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

DELTAS: Final = {"play": 1.0, "complete": 0.5, "like": 2.0, "skip": -1.0}
SKIPPED_KEPT: Final = 50


def seen_key(event_id: str) -> str:
    """The remembered form of an event id: its first 64 bits (hex), enough to tell a
    listener's recent events apart, a third of the size in every changelog record."""
    return event_id.replace("-", "")[:16]


@dataclass(frozen=True)
class Limits:
    last_n: int = 20
    half_life_s: float = 1800.0
    seen_events: int = 200


@dataclass
class ListenerState:
    recent: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    liked: list[int] = field(default_factory=list)
    affinity: dict[int, float] = field(default_factory=dict)
    last_ts: float | None = None
    seen: list[str] = field(default_factory=list)
    events: int = 0
    #: Set when :meth:`apply` folds an event in (not stored).
    changed: bool = field(default=False, compare=False)

    def decayed(self, ts: float, half_life_s: float) -> dict[int, float]:
        """Affinity as of event time ``ts`` (no change for events older than the last)."""
        if self.last_ts is None or ts <= self.last_ts:
            return dict(self.affinity)
        factor = 0.5 ** ((ts - self.last_ts) / half_life_s)
        return {c: w * factor for c, w in self.affinity.items()}

    def apply(
        self, event_id: str, *, track_id: int, kind: str, cluster: int, ts: float, limits: Limits
    ) -> bool:
        """Fold one event in; False (and no change) when ``event_id`` was already applied."""
        key = seen_key(event_id)
        if key in self.seen:
            return False
        self.seen.append(key)
        del self.seen[: max(0, len(self.seen) - limits.seen_events)]
        self.affinity = self.decayed(ts, limits.half_life_s)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        if cluster >= 0:
            weight = self.affinity.get(cluster, 0.0) + DELTAS.get(kind, 0.0)
            self.affinity[cluster] = max(0.0, weight)
        if kind in ("play", "complete", "like"):
            if track_id in self.skipped:  # played again: no longer a skip (recent still hides it)
                self.skipped.remove(track_id)
            if track_id in self.recent:
                self.recent.remove(track_id)
            self.recent.append(track_id)
            del self.recent[: max(0, len(self.recent) - limits.last_n)]
        if kind == "skip":
            if track_id not in self.skipped:
                self.skipped.append(track_id)
            del self.skipped[: max(0, len(self.skipped) - SKIPPED_KEPT)]
        if kind == "like" and track_id not in self.liked:
            self.liked.append(track_id)
            del self.liked[: max(0, len(self.liked) - SKIPPED_KEPT)]
        self.events += 1
        self.changed = True
        return True

    def copy(self) -> ListenerState:
        """An independent copy (what a table holds is never changed in place)."""
        return ListenerState(
            recent=list(self.recent),
            skipped=list(self.skipped),
            liked=list(self.liked),
            affinity=dict(self.affinity),
            last_ts=self.last_ts,
            seen=list(self.seen),
            events=self.events,
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form; ``seen`` is one space-separated string, which is far
        cheaper to encode and decode on every change than a list of a few hundred."""
        return {
            "recent": self.recent,
            "skipped": self.skipped,
            "liked": self.liked,
            "affinity": {str(c): w for c, w in self.affinity.items()},
            "last_ts": self.last_ts,
            "seen": " ".join(self.seen),
            "events": self.events,
        }

    #: Faust's JSON codec encodes an object through ``__json__``: a table can hold states.
    __json__ = to_dict

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ListenerState:
        if not data:
            return cls()
        seen = data.get("seen", [])
        return cls(
            recent=[int(t) for t in data.get("recent", [])],
            skipped=[int(t) for t in data.get("skipped", [])],
            liked=[int(t) for t in data.get("liked", [])],
            affinity={int(c): float(w) for c, w in data.get("affinity", {}).items()},
            last_ts=data.get("last_ts"),
            # Also the list of ids that earlier versions stored.
            seen=seen.split() if isinstance(seen, str) else [str(e) for e in seen],
            events=int(data.get("events", 0)),
        )

    @classmethod
    def load(cls, stored: ListenerState | dict[str, Any] | None) -> ListenerState:
        """A state to change from what a table holds: a state (kept in memory; copied),
        its stored form (read back from the changelog or a disk store), or nothing."""
        if isinstance(stored, ListenerState):
            return stored.copy()
        return cls.from_dict(stored)
