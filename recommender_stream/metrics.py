"""The recommender's counters and latency histogram, in Prometheus text format.

Sources: :class:`recommender_stream.processor.Processor` (events in, recommendations
out, duplicates, dead letters by reason, tracks added, processing time per event).
Destination: the worker's ``/metrics`` page (Faust web server, ``CADENZA_FAUST_PORT``).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class Metrics:
    events_in: int = 0
    recommendations_out: int = 0
    duplicates: int = 0
    tracks_added: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    seconds_sum: float = 0.0

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
        self.seconds_sum += seconds
        self.buckets[bisect.bisect_left(BUCKETS_S, seconds)] += 1

    def prometheus(self, labels: str = "") -> str:
        lab = f"{{{labels}}}" if labels else ""
        lines = [
            "# HELP cadenza_recommender_events_total Play events received.",
            "# TYPE cadenza_recommender_events_total counter",
            f"cadenza_recommender_events_total{lab} {self.events_in}",
            "# HELP cadenza_recommender_recommendations_total Recommendation lists produced.",
            "# TYPE cadenza_recommender_recommendations_total counter",
            f"cadenza_recommender_recommendations_total{lab} {self.recommendations_out}",
            "# HELP cadenza_recommender_duplicates_total Redelivered events ignored.",
            "# TYPE cadenza_recommender_duplicates_total counter",
            f"cadenza_recommender_duplicates_total{lab} {self.duplicates}",
            "# HELP cadenza_recommender_tracks_added_total New tracks placed in the catalogue.",
            "# TYPE cadenza_recommender_tracks_added_total counter",
            f"cadenza_recommender_tracks_added_total{lab} {self.tracks_added}",
            "# HELP cadenza_recommender_dead_letters_total Records sent to the dead-letter topic.",
            "# TYPE cadenza_recommender_dead_letters_total counter",
        ]
        sep = "," if labels else ""
        for reason, n in sorted(self.dead_letters.items()):
            lines.append(f'cadenza_recommender_dead_letters_total{{{labels}{sep}reason="{reason}"}} {n}')
        lines += [
            "# HELP cadenza_recommender_processing_seconds Time from receiving a play to its list.",
            "# TYPE cadenza_recommender_processing_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip((*BUCKETS_S, float("inf")), self.buckets, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(
                f'cadenza_recommender_processing_seconds_bucket{{{labels}{sep}le="{le}"}} {cumulative}'
            )
        lines.append(f"cadenza_recommender_processing_seconds_sum{lab} {self.seconds_sum:.6f}")
        lines.append(f"cadenza_recommender_processing_seconds_count{lab} {self.recommendations_out}")
        return "\n".join(lines) + "\n"
