"""Replay a plays history through the ranking, offline, and score what it would have shown (pure).

Sources: history rows (MongoDB ``plays`` documents or JSON lines, read by
:mod:`recommender_stream.replay_source`) made into :class:`ReplayEvent` (or the
:class:`BadRow` a row became) by :func:`event_from_row`, in event-time order, and the
current model's :class:`~recommender_stream.catalogue.Catalogue`. Destination: a
:class:`ReplayReport` (one :class:`StrategyScore` per strategy), printed and kept as JSON
by ``cadenza evaluate replay`` (:mod:`recommender_stream.replay_cli`). No IO, no clock:
the same rows and seed give the same report.

How (issue 26, "prove that recommendations react"):

* every listener's state is a :class:`~recommender_stream.listener.ListenerState` folded
  with :meth:`~recommender_stream.listener.ListenerState.apply` event by event, as a worker
  folds it (a ranking with another half-life folds its own copy, since the state decays
  with it); the cluster of an event is the catalogue's, as in the worker;
* just before each ``play`` of a listener who had an event before, every strategy lists
  ``k`` tracks from what was known then, and the list is scored against the track played:
  a hit if it is listed, 1/rank (0 if absent) for the MRR, and the list's novelty, the mean
  of ``-log2`` of each listed track's share of the plays so far, add-one smoothed over the
  catalogue (``(plays + 1) / (all plays + catalogue size)``): higher is less obvious;
  coverage is the distinct tracks a strategy listed over the catalogue's size;
* what the ranking sees beside the state: ``popularity``, the :data:`POPULAR_KEPT` most
  played tracks so far and their plays (what a worker keeps, here exact at every play
  where a worker refreshes it every few hundred), and ``trending``, per cluster the
  ``trending_top_n`` tracks with the most events over the last ``trending_window_s`` of
  replayed events (every kind counts, as in the ``plays-trending`` query; the window slides
  with every event, where the query's slide by ``CADENZA_TRENDING_SLIDE`` and reach the
  workers a trigger later; ``trending_window_s`` 0: no trending);
* events of tracks the catalogue does not hold are counted and skipped (a worker
  dead-letters them), as are events a listener's state has seen already (duplicates) and
  malformed rows (counted by reason).

Strategies (:func:`standard_strategies`): the candidate ranking (:class:`Ranking` with the
weights under test), the previous ranking (:data:`~recommender_stream.ranking.PREVIOUS`),
the most played so far (:class:`MostPlayed`) and random tracks of the last played
track's cluster (:class:`SameClusterRandom`); any object with a ``name`` and a
``rank(moment, k)`` method can join them.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from recommender_stream.catalogue import Catalogue
from recommender_stream.listener import Limits, ListenerState, seen_key
from recommender_stream.ranking import PREVIOUS, PREVIOUS_HALF_LIFE_S, RankingParams, recommend

#: The most played tracks the ranking and the popularity baseline see (as a worker keeps).
POPULAR_KEPT: Final = 200
KINDS: Final = frozenset({"play", "skip", "complete", "like"})
#: Longest example kept per reason a row was refused.
EXAMPLE_CHARS: Final = 160


# --- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayEvent:
    """One good history row: the fields the replay uses (``ts``: seconds since the epoch, UTC)."""

    event_id: str
    user_id: str
    track_id: int
    kind: str
    ts: float


@dataclass(frozen=True, slots=True)
class BadRow:
    """A history row that cannot be replayed: why (a short reason, counted) and what it held."""

    reason: str
    example: str = ""


def _example(row: object) -> str:
    text = repr(row)
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


def _timestamp(value: object) -> float | None:
    """Seconds since the epoch of a datetime (naive = UTC), an ISO 8601 string or a number."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return _timestamp(parsed)
    return None


def _event_id(value: object) -> str:
    """The id as a UUID string: plays carry UUIDs, whose first 64 bits a listener's state
    remembers (:func:`~recommender_stream.listener.seen_key`); any other id (a file's
    ``e17``, ``sim-3-000017``) becomes the UUID named by it, so ids that share a prefix
    are not taken for one another."""
    text = str(value)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cadenza:event:{text}"))


def event_from_row(row: object) -> ReplayEvent | BadRow:
    """The event of a ``plays`` document or JSON object (``_id`` or ``event_id``, ``user_id``,
    ``track_id``, ``kind``, ``ts``; others ignored), or why it cannot be replayed."""
    if not isinstance(row, Mapping):
        return BadRow("not an object", _example(row))
    event_id = row.get("_id")
    if event_id is None:
        event_id = row.get("event_id")
    for name, value in (
        ("event_id", event_id),
        *((f, row.get(f)) for f in ("user_id", "track_id", "kind", "ts")),
    ):
        if value is None:
            return BadRow(f"missing {name}", _example(row))
    user = row["user_id"]
    if not isinstance(user, str) or not user:
        return BadRow("bad user_id", _example(row))
    track = row["track_id"]
    if isinstance(track, str) and track.strip().isdigit():
        track = int(track)
    if not isinstance(track, int) or isinstance(track, bool) or track < 0:
        return BadRow("bad track_id", _example(row))
    kind = row["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        return BadRow("bad kind", _example(row))
    ts = _timestamp(row["ts"])
    if ts is None:
        return BadRow("bad ts", _example(row))
    return ReplayEvent(_event_id(event_id), user, track, kind, ts)


def events_from_rows(rows: Iterable[object]) -> Iterator[ReplayEvent | BadRow]:
    return (event_from_row(row) for row in rows)


# --- what the replay has seen so far -------------------------------------------------------------


class PlayCounts:
    """Plays per track so far, and the ``kept`` most played (most first, lower id on a tie),
    kept exact at every play: counts only grow by one, so a track enters the top by
    passing its last and climbs from there."""

    def __init__(self, kept: int = POPULAR_KEPT) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self._kept = kept
        self._top: list[int] = []
        self._in_top: set[int] = set()
        self._view: dict[int, int] | None = None

    def _before(self, a: int, b: int) -> bool:
        ca, cb = self.counts[a], self.counts[b]
        return ca > cb or (ca == cb and a < b)

    def add(self, track: int) -> None:
        self.counts[track] = self.counts.get(track, 0) + 1
        self.total += 1
        top = self._top
        if track in self._in_top:
            i = top.index(track)
        elif len(top) < self._kept:
            top.append(track)
            self._in_top.add(track)
            i = len(top) - 1
        elif self._before(track, top[-1]):
            self._in_top.discard(top[-1])
            top[-1] = track
            self._in_top.add(track)
            i = len(top) - 1
        else:
            return
        while i > 0 and self._before(top[i], top[i - 1]):
            top[i], top[i - 1] = top[i - 1], top[i]
            i -= 1
        self._view = None

    @property
    def ranked(self) -> Sequence[int]:
        """The most played tracks, most first."""
        return self._top

    def view(self) -> dict[int, int]:
        """``{track: plays}`` of the most played (the ranking's ``popularity``)."""
        if self._view is None:
            self._view = {t: self.counts[t] for t in self._top}
        return self._view

    def surprise(self, track: int, catalogue_size: int) -> float:
        """``-log2`` of the track's add-one smoothed share of the plays so far."""
        return -math.log2((self.counts.get(track, 0) + 1) / (self.total + max(1, catalogue_size)))


class TrendingWindow(Mapping[int, Sequence[tuple[int, int]]]):
    """Per cluster, the ``top_n`` tracks with the most events over the last ``window_s``
    (``(track, events)``, most first, lower id on a tie): what the ranking reads as
    ``trending``. A cluster's top is computed when read after a change."""

    def __init__(self, window_s: float, top_n: int) -> None:
        self.window_s = window_s
        self.top_n = top_n
        self._events: deque[tuple[float, int, int]] = deque()
        self._counts: dict[int, Counter[int]] = {}
        self._tops: dict[int, list[tuple[int, int]]] = {}

    def add(self, ts: float, track: int, cluster: int) -> None:
        if self.window_s <= 0 or cluster < 0:
            return
        self._events.append((ts, track, cluster))
        self._counts.setdefault(cluster, Counter())[track] += 1
        self._tops.pop(cluster, None)

    def advance(self, now: float) -> None:
        """Forget events at or before ``now - window_s``."""
        events = self._events
        while events and events[0][0] <= now - self.window_s:
            _, track, cluster = events.popleft()
            counts = self._counts[cluster]
            counts[track] -= 1
            if counts[track] <= 0:
                del counts[track]
                if not counts:
                    del self._counts[cluster]
            self._tops.pop(cluster, None)

    def __getitem__(self, cluster: int) -> Sequence[tuple[int, int]]:
        top = self._tops.get(cluster)
        if top is None:
            counts = self._counts[cluster]  # KeyError: no events (Mapping.get gives the default)
            top = heapq.nsmallest(self.top_n, counts.items(), key=lambda tc: (-tc[1], tc[0]))
            self._tops[cluster] = top
        return top

    def __iter__(self) -> Iterator[int]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)


# --- strategies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """What was known just before a listener's play: every strategy's input."""

    user_id: str
    ts: float
    #: The listener's state under the replay's limits.
    state: ListenerState
    #: The listener's state per half-life (rankings with a half-life of their own).
    states: Mapping[float, ListenerState]
    half_life_s: float
    catalogue: Catalogue
    plays: PlayCounts
    trending: Mapping[int, Sequence[tuple[int, int]]]

    @property
    def excluded(self) -> set[int]:
        """Never listed: the last tracks played and those recently skipped (the ranking's rule)."""
        return set(self.state.recent) | set(self.state.skipped)


class Strategy(Protocol):
    """Lists ``k`` tracks for a moment (deterministic given its own seed)."""

    @property
    def name(self) -> str: ...

    def rank(self, moment: Moment, k: int) -> list[int]: ...


@dataclass(frozen=True)
class Ranking:
    """:func:`recommender_stream.ranking.recommend` with ``params`` and ``half_life_s``
    (None: the replay's)."""

    name: str
    params: RankingParams = PREVIOUS
    half_life_s: float | None = None

    def rank(self, moment: Moment, k: int) -> list[int]:
        half_life = self.half_life_s or moment.half_life_s
        picks = recommend(
            moment.states[half_life],
            moment.catalogue,
            moment.trending,
            moment.plays.view(),
            k=k,
            now=moment.ts,
            half_life_s=half_life,
            params=self.params,
        )
        return [p.track_id for p in picks]


@dataclass(frozen=True)
class MostPlayed:
    """The ``k`` most played tracks so far, but the listener's recent and skipped ones."""

    name: str = "popularity"

    def rank(self, moment: Moment, k: int) -> list[int]:
        excluded = moment.excluded
        return [t for t in moment.plays.ranked if t not in excluded][:k]


@dataclass
class SameClusterRandom:
    """``k`` seeded-random tracks of the cluster of the listener's last played track (the
    whole catalogue when they played none yet) that may be recommended (the ranking's rule:
    with audio while any track has), but their recent and skipped ones."""

    seed: int = 0
    name: str = "same-cluster random"
    _rng: random.Random = field(init=False, repr=False)
    #: Recommendable positions per (cluster or None, catalogue size): the catalogue is fixed.
    _pools: dict[tuple[int | None, int], list[int]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _pool(self, cat: Catalogue, cluster: int | None) -> list[int]:
        key = (cluster, len(cat))
        pool = self._pools.get(key)
        if pool is None:
            where = range(len(cat)) if cluster is None else cat.members(cluster).tolist()
            pool = self._pools[key] = [p for p in where if cat.recommendable(p)]
        return pool

    def rank(self, moment: Moment, k: int) -> list[int]:
        cat = moment.catalogue
        last = next((cat.position(t) for t in reversed(moment.state.recent) if t in cat), None)
        pool = self._pool(cat, None if last is None else cat.clusters[last])
        excluded = moment.excluded
        if len(pool) <= 4 * (k + len(excluded)):
            allowed = [p for p in pool if cat.ids[p] not in excluded]
            return [cat.ids[p] for p in self._rng.sample(allowed, min(k, len(allowed)))]
        picked: dict[int, None] = {}  # an insertion-ordered set
        while len(picked) < k:  # at least 3 draws in 4 are allowed: the pool is large
            pos = pool[self._rng.randrange(len(pool))]
            if pos not in picked and cat.ids[pos] not in excluded:
                picked[pos] = None
        return [cat.ids[p] for p in picked]


def standard_strategies(
    candidate: RankingParams = PREVIOUS, candidate_half_life_s: float | None = None, seed: int = 0
) -> list[Strategy]:
    """The candidate ranking, the previous ranking and the two baselines, in that order."""
    return [
        Ranking("candidate", candidate, candidate_half_life_s),
        Ranking("previous ranking", PREVIOUS, PREVIOUS_HALF_LIFE_S),
        MostPlayed(),
        SameClusterRandom(seed),
    ]


# --- scores ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrategyScore:
    """How one strategy's lists did against what the listeners played next."""

    name: str
    lists: int
    hits: int
    hit_rate: float
    mrr: float
    novelty: float
    coverage: float
    distinct_tracks: int


@dataclass
class _Tally:
    name: str
    lists: int = 0
    hits: int = 0
    reciprocal: float = 0.0
    novelty: float = 0.0
    novelty_lists: int = 0
    listed: set[int] = field(default_factory=set)

    def add(self, listed: Sequence[int], played: int, surprise: Callable[[int], float]) -> None:
        self.lists += 1
        if played in listed:
            self.hits += 1
            self.reciprocal += 1.0 / (list(listed).index(played) + 1)
        if listed:
            self.novelty += sum(surprise(t) for t in listed) / len(listed)
            self.novelty_lists += 1
        self.listed.update(listed)

    def score(self, catalogue_size: int) -> StrategyScore:
        n = self.lists or 1
        return StrategyScore(
            name=self.name,
            lists=self.lists,
            hits=self.hits,
            hit_rate=self.hits / n,
            mrr=self.reciprocal / n,
            novelty=self.novelty / (self.novelty_lists or 1),
            coverage=len(self.listed) / catalogue_size if catalogue_size else 0.0,
            distinct_tracks=len(self.listed),
        )


@dataclass(frozen=True)
class ReplayReport:
    """What a replay read, skipped and scored."""

    k: int
    catalogue_tracks: int
    rows: int
    events: int
    listeners: int
    lists: int
    unknown_track_events: int
    unknown_tracks: int
    duplicates: int
    out_of_order: int
    malformed: dict[str, int]
    malformed_examples: dict[str, str]
    first_ts: float | None
    last_ts: float | None
    trending_window_s: float
    scores: tuple[StrategyScore, ...]

    def score(self, name: str) -> StrategyScore:
        return next(s for s in self.scores if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        def iso(ts: float | None) -> str | None:
            return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()

        return {
            "k": self.k,
            "catalogue_tracks": self.catalogue_tracks,
            "rows": self.rows,
            "events": self.events,
            "listeners": self.listeners,
            "lists": self.lists,
            "skipped": {
                "unknown_track_events": self.unknown_track_events,
                "unknown_tracks": self.unknown_tracks,
                "duplicates": self.duplicates,
                "malformed": dict(self.malformed),
                "malformed_examples": dict(self.malformed_examples),
            },
            "out_of_order": self.out_of_order,
            "first_ts": iso(self.first_ts),
            "last_ts": iso(self.last_ts),
            "trending_window_s": self.trending_window_s,
            "strategies": [vars(s).copy() for s in self.scores],
        }


# --- the replay -----------------------------------------------------------------------------


class Replayer:
    """Feed it history rows in event-time order (:meth:`feed`), then ask for the :meth:`report`."""

    def __init__(
        self,
        catalogue: Catalogue,
        strategies: Sequence[Strategy],
        *,
        k: int = 10,
        limits: Limits = Limits(),
        trending_window_s: float = 600.0,
        trending_top_n: int = 20,
        popular_kept: int = POPULAR_KEPT,
    ) -> None:
        names = [s.name for s in strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy names must differ: {names}")
        self.catalogue = catalogue
        self.strategies = list(strategies)
        self.k = k
        self.limits = limits
        half_lives = {limits.half_life_s} | {
            s.half_life_s for s in strategies if isinstance(s, Ranking) and s.half_life_s
        }
        self._limits = {
            h: Limits(last_n=limits.last_n, half_life_s=h, seen_events=limits.seen_events) for h in half_lives
        }
        self.plays = PlayCounts(popular_kept)
        self.trending = TrendingWindow(trending_window_s, trending_top_n)
        self._states: dict[str, dict[float, ListenerState]] = {}
        self._tallies = [_Tally(s.name) for s in strategies]
        self.rows = self.events = self.lists = 0
        self.unknown_events = self.duplicates = self.out_of_order = 0
        self.unknown: set[int] = set()
        self.malformed: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    def feed(self, item: ReplayEvent | BadRow) -> None:
        self.rows += 1
        if isinstance(item, BadRow):
            self.malformed[item.reason] += 1
            self.examples.setdefault(item.reason, item.example)
            return
        pos = self.catalogue.position(item.track_id)
        if pos is None:
            self.unknown_events += 1
            self.unknown.add(item.track_id)
            return
        states = self._states.get(item.user_id)
        if states is None:
            states = self._states[item.user_id] = {h: ListenerState() for h in self._limits}
        state = states[self.limits.half_life_s]
        if seen_key(item.event_id) in state.seen:
            self.duplicates += 1
            return
        if self.last_ts is not None and item.ts < self.last_ts:
            self.out_of_order += 1
        self.trending.advance(item.ts)
        if item.kind == "play" and state.events > 0:
            self._score(item, state, states)
        cluster = self.catalogue.clusters[pos]
        for half_life, each in states.items():
            each.apply(
                item.event_id,
                track_id=item.track_id,
                kind=item.kind,
                cluster=cluster,
                ts=item.ts,
                limits=self._limits[half_life],
            )
        if item.kind == "play":
            self.plays.add(item.track_id)
        self.trending.add(item.ts, item.track_id, cluster)
        self.events += 1
        self.first_ts = item.ts if self.first_ts is None else min(self.first_ts, item.ts)
        self.last_ts = item.ts if self.last_ts is None else max(self.last_ts, item.ts)

    def _score(self, event: ReplayEvent, state: ListenerState, states: dict[float, ListenerState]) -> None:
        moment = Moment(
            user_id=event.user_id,
            ts=event.ts,
            state=state,
            states=states,
            half_life_s=self.limits.half_life_s,
            catalogue=self.catalogue,
            plays=self.plays,
            trending=self.trending,
        )
        size = len(self.catalogue)
        surprises: dict[int, float] = {}

        def surprise(track: int) -> float:
            found = surprises.get(track)
            if found is None:
                found = surprises[track] = self.plays.surprise(track, size)
            return found

        same: dict[tuple[RankingParams, float], list[int]] = {}  # equal rankings are asked once
        for strategy, tally in zip(self.strategies, self._tallies, strict=True):
            if isinstance(strategy, Ranking):
                key = (strategy.params, strategy.half_life_s or self.limits.half_life_s)
                listed = same.get(key)
                if listed is None:
                    listed = same[key] = strategy.rank(moment, self.k)[: self.k]
            else:
                listed = strategy.rank(moment, self.k)[: self.k]
            tally.add(listed, event.track_id, surprise)
        self.lists += 1

    def report(self) -> ReplayReport:
        size = len(self.catalogue)
        return ReplayReport(
            k=self.k,
            catalogue_tracks=size,
            rows=self.rows,
            events=self.events,
            listeners=len(self._states),
            lists=self.lists,
            unknown_track_events=self.unknown_events,
            unknown_tracks=len(self.unknown),
            duplicates=self.duplicates,
            out_of_order=self.out_of_order,
            malformed=dict(self.malformed.most_common()),
            malformed_examples=dict(self.examples),
            first_ts=self.first_ts,
            last_ts=self.last_ts,
            trending_window_s=self.trending.window_s,
            scores=tuple(t.score(size) for t in self._tallies),
        )


def replay(
    items: Iterable[ReplayEvent | BadRow],
    catalogue: Catalogue,
    strategies: Sequence[Strategy],
    *,
    k: int = 10,
    limits: Limits = Limits(),
    trending_window_s: float = 600.0,
    trending_top_n: int = 20,
) -> ReplayReport:
    """Replay ``items`` (in event-time order) and score every strategy (see the module)."""
    replayer = Replayer(
        catalogue,
        strategies,
        k=k,
        limits=limits,
        trending_window_s=trending_window_s,
        trending_top_n=trending_top_n,
    )
    for item in items:
        replayer.feed(item)
    return replayer.report()
