"""The recommender's counters and latency histogram, in Prometheus text format.

Sources: :class:`recommender_stream.processor.Processor` (events in, recommendations
out, duplicates, dead letters by reason, tracks added, processing time per event).
Destination: the worker's ``/metrics`` page (Faust web server, ``CADENZA_FAUST_PORT``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from infra.prometheus import Histogram, Labels, family


@dataclass
class Metrics:
    events_in: int = 0
    recommendations_out: int = 0
    duplicates: int = 0
    tracks_added: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    processing: Histogram = field(default_factory=Histogram)

    def event_in(self) -> None:
        self.events_in += 1

    def duplicate(self) -> None:
        self.duplicates += 1

    def track_added(self) -> None:
        self.tracks_added += 1

    def dead_letter(self, reason: str) -> None:
        self.dead_letters[reason] += 1

    def recommendation_out(self, seconds: float) -> None:
        self.recommendations_out += 1
        self.processing.observe(seconds)

    def prometheus(self, labels: Labels | None = None) -> str:
        base = dict(labels or {})
        lines = [
            *family(
                "cadenza_recommender_events_total",
                "counter",
                "Play events received.",
                [(base, self.events_in)],
            ),
            *family(
                "cadenza_recommender_recommendations_total",
                "counter",
                "Recommendation lists produced.",
                [(base, self.recommendations_out)],
            ),
            *family(
                "cadenza_recommender_duplicates_total",
                "counter",
                "Redelivered events ignored.",
                [(base, self.duplicates)],
            ),
            *family(
                "cadenza_recommender_tracks_added_total",
                "counter",
                "New tracks placed in the catalogue.",
                [(base, self.tracks_added)],
            ),
            *family(
                "cadenza_recommender_dead_letters_total",
                "counter",
                "Records sent to the dead-letter topic.",
                [({**base, "reason": r}, n) for r, n in sorted(self.dead_letters.items())],
            ),
            *self.processing.lines(
                "cadenza_recommender_processing_seconds", "Time from receiving a play to its list.", base
            ),
        ]
        return "\n".join(lines) + "\n"
