"""The recommender's counters and latency histogram, as prometheus_client metrics.

Sources: :class:`recommender_stream.processor.Processor` (events in, recommendations
out, duplicates, dead letters by reason, tracks added, processing time per event).
Destination: the worker's ``/metrics`` page (Faust web server, ``CADENZA_FAUST_PORT``),
through the app's registry (:mod:`recommender_stream.app`). Every sample is labelled
``worker`` (the process id), so the workers of one host stay apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import Counter
from prometheus_client.core import Metric

from infra.prometheus import latency_histogram


class Metrics:
    """The recommender's metrics, a collector for the app's registry; ``worker`` defaults to
    this process's id."""

    def __init__(self, worker: int | str | None = None) -> None:
        self.worker = str(os.getpid() if worker is None else worker)
        by_worker = ["worker"]
        self._events = Counter(
            "cadenza_recommender_events_total", "Play events received.", by_worker, registry=None
        )
        self._recommendations = Counter(
            "cadenza_recommender_recommendations_total",
            "Recommendation lists produced.",
            by_worker,
            registry=None,
        )
        self._duplicates = Counter(
            "cadenza_recommender_duplicates_total", "Redelivered events ignored.", by_worker, registry=None
        )
        self._tracks = Counter(
            "cadenza_recommender_tracks_added_total",
            "New tracks placed in the catalogue.",
            by_worker,
            registry=None,
        )
        self._dead_letters = Counter(
            "cadenza_recommender_dead_letters_total",
            "Records sent to the dead-letter topic.",
            ["worker", "reason"],
            registry=None,
        )
        self._processing = latency_histogram(
            "cadenza_recommender_processing_seconds", "Time from receiving a play to its list.", by_worker
        )
        self._families = (
            self._events,
            self._recommendations,
            self._duplicates,
            self._tracks,
            self._dead_letters,
            self._processing,
        )
        # The worker's samples exist from 0 (a dead-letter reason appears with its first letter).
        self._event_in = self._events.labels(self.worker)
        self._recommendation_out = self._recommendations.labels(self.worker)
        self._duplicate = self._duplicates.labels(self.worker)
        self._track_added = self._tracks.labels(self.worker)
        self._processed = self._processing.labels(self.worker)

    def event_in(self) -> None:
        self._event_in.inc()

    def duplicate(self) -> None:
        self._duplicate.inc()

    def track_added(self) -> None:
        self._track_added.inc()

    def dead_letter(self, reason: str) -> None:
        self._dead_letters.labels(self.worker, reason).inc()

    def recommendation_out(self, seconds: float) -> None:
        self._recommendation_out.inc()
        self._processed.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield from family.collect()
