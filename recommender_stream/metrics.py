"""The recommender's counters and latency histogram, as prometheus_client metrics.

Sources: :class:`recommender_stream.processor.Processor` (events in, by kind and source,
recommendations out, duplicates, dead letters by reason, tracks added, processing time per
event; each list's reasons, turnover and the coverage after it, from
:mod:`recommender_stream.reaction`) and
:func:`recommender_stream.app.follow_feeds` (catalogue loads by source, ``snapshot`` or
``scan``, and the seconds the last one took).
Destination: the worker's ``/metrics`` page (Faust web server, ``CADENZA_FAUST_PORT``),
through the app's registry (:mod:`recommender_stream.app`). Every sample is labelled
``worker`` (the process id), so the workers of one host stay apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from prometheus_client import Counter, Gauge, Summary
from prometheus_client.core import Metric

from infra.prometheus import latency_histogram
from recommender_stream.reaction import OTHER_REASON, REASON_KINDS
from schemas.events import SOURCE_LABELS, PlayKind, source_label


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
        by_source = ["worker", "source"]
        self._loads = Counter(
            "cadenza_recommender_catalogue_loads_total",
            "Catalogues loaded (at start and on a model change), by source: snapshot or scan.",
            by_source,
            registry=None,
        )
        self._load_seconds = Gauge(
            "cadenza_recommender_catalogue_load_seconds",
            "Seconds the last catalogue load from this source took (a snapshot's replay of "
            "tracks.new included; -1: none from it yet).",
            by_source,
            registry=None,
        )
        for source in ("snapshot", "scan"):  # exported from the start, as 0 loads and -1 s
            self._loads.labels(self.worker, source)
            self._load_seconds.labels(self.worker, source).set(-1.0)
        self._plays = Counter(
            "cadenza_recommender_plays_total",
            "Play events applied, by kind and source (where the listener started the track: browse, "
            "up_next, radio, queue, unknown). Acceptance: kind=play and source up_next or radio "
            "over all kind=play.",
            ["worker", "kind", "source"],
            registry=None,
        )
        self._items = Counter(
            "cadenza_recommender_items_total",
            "Tracks recommended, by the kind of reason shown (sounds_like, trending_in_mix, "
            "more_from_mix, trending_now, popular, something_new, other).",
            ["worker", "reason"],
            registry=None,
        )
        self._turnover = Summary(
            "cadenza_recommender_list_turnover",
            "Share of a listener's new list not in their previous one (0: same tracks, 1: all new); "
            "mean = rate(_sum) / rate(_count).",
            by_worker,
            registry=None,
        )
        self._coverage = Gauge(
            "cadenza_recommender_coverage_ratio",
            "Share of the recommendable catalogue this worker recommended in the last hour.",
            by_worker,
            registry=None,
        )
        for kind in PlayKind:  # exported from the start, as 0
            for source in SOURCE_LABELS:
                self._plays.labels(self.worker, kind.value, source)
        for reason in (*REASON_KINDS.values(), OTHER_REASON):
            self._items.labels(self.worker, reason)
        self._processing = latency_histogram(
            "cadenza_recommender_processing_seconds", "Time from receiving a play to its list.", by_worker
        )
        self._families = (
            self._events,
            self._recommendations,
            self._duplicates,
            self._tracks,
            self._dead_letters,
            self._loads,
            self._load_seconds,
            self._plays,
            self._items,
            self._turnover,
            self._coverage,
            self._processing,
        )
        # The worker's samples exist from 0 (a dead-letter reason appears with its first letter).
        self._event_in = self._events.labels(self.worker)
        self._recommendation_out = self._recommendations.labels(self.worker)
        self._duplicate = self._duplicates.labels(self.worker)
        self._track_added = self._tracks.labels(self.worker)
        self._processed = self._processing.labels(self.worker)
        self._turned = self._turnover.labels(self.worker)
        self._covered = self._coverage.labels(self.worker)

    def event_in(self) -> None:
        self._event_in.inc()

    def duplicate(self) -> None:
        self._duplicate.inc()

    def track_added(self) -> None:
        self._track_added.inc()

    def dead_letter(self, reason: str) -> None:
        self._dead_letters.labels(self.worker, reason).inc()

    def catalogue_loaded(self, source: str, seconds: float) -> None:
        """A catalogue was loaded from ``source`` (``snapshot`` or ``scan``) in ``seconds``."""
        self._loads.labels(self.worker, source).inc()
        self._load_seconds.labels(self.worker, source).set(seconds)

    def played(self, kind: str, source: str | None) -> None:
        """One play event applied (not a redelivery), by kind and source."""
        self._plays.labels(self.worker, kind, source_label(source)).inc()

    def listed(self, reasons: Sequence[str], turnover: float | None, coverage: float) -> None:
        """One list produced: its items' reason kinds, its turnover (None: no earlier list)
        and the worker's coverage after it."""
        for reason in reasons:
            self._items.labels(self.worker, reason).inc()
        if turnover is not None:
            self._turned.observe(turnover)
        self._covered.set(coverage)

    def recommendation_out(self, seconds: float) -> None:
        self._recommendation_out.inc()
        self._processed.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield from family.collect()
