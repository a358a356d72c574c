"""What the recommender does with one record, apart from Kafka and Faust (testable without IO).

Sources: raw ``cadenza.plays``, ``cadenza.tracks.new`` and ``cadenza.trending`` records.
Destinations (returned as :class:`Output` for the caller to send): a ``Recommendation``
on ``cadenza.recommendations`` (key = user) per applied play, and ``DeadLetter``
records on ``cadenza.dlq`` for anything that cannot be used. Listener state is read
from and written to a mapping (the Faust table in production, a dict in tests).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from recommender_stream.catalogue import Catalogue
from recommender_stream.errors import UnknownTrackError
from recommender_stream.listener import Limits, ListenerState
from recommender_stream.metrics import Metrics
from recommender_stream.ranking import PREVIOUS, RankingParams, recommend
from recommender_stream.reaction import ListTracker, reason_kind
from schemas.codec import dead_letter_for, decode, encode, encode_key
from schemas.errors import SchemaError
from schemas.events import PlayEvent, Recommendation, TrackEvent, Trending

STAGE: Final = "recommender_stream"
POPULAR_KEPT: Final = 200
POPULAR_EVERY: Final = 500
#: New tracks kept for the next catalogue reload (4 KiB of features each: about 40 MiB).
ARRIVALS_KEPT: Final = 10_000


class Arrival(NamedTuple):
    """A track from ``tracks.new`` kept until a reloaded catalogue holds it."""

    features: NDArray[np.float64]
    title: str
    artist: str
    playable: bool = True


@dataclass(frozen=True)
class Output:
    topic: str  # registry name: "recommendations" or "dlq"
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Processor:
    """The recommender's logic over one worker's catalogue and trending view."""

    catalogue: Catalogue
    limits: Limits
    k: int
    half_life_s: float
    params: RankingParams = PREVIOUS
    metrics: Metrics = field(default_factory=Metrics)
    trending: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    trending_end: dict[int, float] = field(default_factory=dict)
    popularity: Counter[int] = field(default_factory=Counter)
    #: The most played tracks (what ranking sees), rebuilt every ``POPULAR_EVERY`` plays.
    popular: dict[int, int] = field(default_factory=dict)
    plays_seen: int = 0
    #: Tracks that arrived on ``tracks.new`` and are not in the loaded catalogue yet, to
    #: place again after a reload (features, title, artist), oldest first and
    #: at most ``arrivals_kept``: a reload drops those MongoDB already had.
    arrived: OrderedDict[int, Arrival] = field(default_factory=OrderedDict)
    arrivals_kept: int = ARRIVALS_KEPT
    #: Each listener's last list and the tracks recommended lately (online metrics).
    lists: ListTracker = field(default_factory=ListTracker)
    clock: Callable[[], float] = time.monotonic

    def _dead(self, record: Record, error: BaseException) -> Output:
        self.metrics.dead_letter(type(error).__name__)
        letter = dead_letter_for(record, error, STAGE)
        return Output("dlq", record.key, encode(letter))

    # --- plays -------------------------------------------------------------------------

    def on_play(self, record: Record, table: MutableMapping[str, Any]) -> list[Output]:
        return self.on_plays([record], table)

    def on_plays(self, records: Sequence[Record], table: MutableMapping[str, Any]) -> list[Output]:
        """Apply plays in order; each listener's state is read from and written back to
        ``table`` once per call. One recommendation per applied play."""
        outputs: list[Output] = []
        states: dict[str, ListenerState] = {}
        for record in records:
            started = time.perf_counter()
            self.metrics.event_in()
            try:
                event = decode(PlayEvent, record.value)
                pos = self.catalogue.position(event.track_id)
                if pos is None:
                    raise UnknownTrackError(f"track {event.track_id} is not in the recommender's catalogue")
            except (SchemaError, UnknownTrackError) as err:
                outputs.append(self._dead(record, err))
                continue
            state = states.get(event.user_id)
            if state is None:
                state = states[event.user_id] = ListenerState.load(table.get(event.user_id))
            ts = event.ts.timestamp()
            applied = state.apply(
                str(event.event_id),
                track_id=event.track_id,
                kind=event.kind.value,
                cluster=self.catalogue.clusters[pos],
                ts=ts,
                limits=self.limits,
            )
            if not applied:
                # Counted already; answered again from the current state, because the first
                # answer may have died with a crashed worker after its state change was saved.
                self.metrics.duplicate()
            else:
                self.metrics.played(event.kind.value, event.source)
                if event.kind.value == "play":
                    self._count_play(event.track_id)
            items = self.rank(state, now=ts)
            if applied:
                self._track_list(event.user_id, items)
            message = Recommendation.model_validate(
                {
                    "user_id": event.user_id,
                    "items": items,
                    "model_version": self.catalogue.version,
                    "cause_event_id": event.event_id,
                    "cause_ts": event.ts,
                }
            )
            self.metrics.recommendation_out(time.perf_counter() - started)
            outputs.append(Output("recommendations", encode_key(event.user_id), encode(message)))
        for user, state in states.items():
            if state.changed:
                # The state itself: a memory table keeps it as is (no decoding on the next
                # play), the changelog and disk stores get its JSON form (``__json__``).
                table[user] = state
        return outputs

    def _count_play(self, track_id: int) -> None:
        self.popularity[track_id] += 1
        self.plays_seen += 1
        if len(self.popular) < POPULAR_KEPT or self.plays_seen % POPULAR_EVERY == 0:
            self.popular = dict(self.popularity.most_common(POPULAR_KEPT))

    def _track_list(self, user_id: str, items: Sequence[dict[str, Any]]) -> None:
        now = self.clock()
        turnover = self.lists.observe(user_id, [item["track_id"] for item in items], now)
        size = self.catalogue.playable_count or len(self.catalogue)
        self.metrics.listed(
            [reason_kind(item["reason"]) for item in items], turnover, self.lists.coverage(size, now)
        )

    def rank(self, state: ListenerState, *, now: float) -> list[dict[str, Any]]:
        """The listener's list as ``RecommendedTrack`` fields: plain dicts, which the
        ``Recommendation`` they go into validates in one pass (far cheaper than a model each)."""
        picks = recommend(
            state,
            self.catalogue,
            self.trending,
            self.popular,
            k=self.k,
            now=now,
            half_life_s=self.half_life_s,
            params=self.params,
        )
        cat = self.catalogue
        items = []
        for p in picks:
            pos = cat.position(p.track_id) or 0
            items.append(
                {
                    "track_id": p.track_id,
                    "score": round(p.score, 6),
                    "reason": p.reason[:500],
                    "cluster": p.cluster,
                    "title": cat.titles[pos][:1000],
                    "artist": cat.artists[pos][:1000],
                }
            )
        return items

    # --- catalogue and trending feeds -----------------------------------------------------

    def replace_catalogue(self, catalogue: Catalogue) -> None:
        """Swap in a freshly loaded catalogue and place again the tracks that arrived and
        that it does not hold yet (the others are forgotten: MongoDB has them now)."""
        for track_id in [t for t in self.arrived if t in catalogue]:
            del self.arrived[track_id]
        if catalogue.model is not None:
            for track_id, (features, title, artist, playable) in self.arrived.items():
                catalogue.add_vector(track_id, features, title, artist, playable=playable)
        self.catalogue = catalogue

    def on_track(self, record: Record) -> list[Output]:
        try:
            event = decode(TrackEvent, record.value)
        except SchemaError as err:
            return [self._dead(record, err)]
        playable = bool(event.audio_path)
        self.arrived[event.track_id] = Arrival(
            np.asarray(event.features, dtype=np.float64), event.title, event.artist, playable
        )
        self.arrived.move_to_end(event.track_id)
        while len(self.arrived) > self.arrivals_kept:
            self.arrived.popitem(last=False)
        if self.catalogue.model is None:
            return []  # nothing to place it with yet; the catalogue reload will pick it up
        self.catalogue.add_vector(
            event.track_id, event.features, event.title, event.artist, playable=playable
        )
        self.metrics.track_added()
        return []

    def on_trending(self, record: Record) -> list[Output]:
        try:
            window = decode(Trending, record.value)
        except SchemaError as err:
            return [self._dead(record, err)]
        end = window.window_end.timestamp()
        if end >= self.trending_end.get(window.cluster, 0.0):  # keep the newest window per cluster
            self.trending_end[window.cluster] = end
            self.trending[window.cluster] = [(t.track_id, t.plays) for t in window.top_tracks]
        return []
