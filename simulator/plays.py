"""The listener model of ``cadenza simulate``: who plays what, when, and what they do with it.

Source: the catalogue as :class:`Track` rows (id, genre, duration), read once from
MongoDB ``tracks`` by :mod:`simulator.run`, and a seed. Destination: a time-ordered
stream of :class:`Scheduled` events (offset from the start, listener, track, kind,
position) that the runner sends through the gateway or straight to Kafka. No IO and no
clock: every draw comes from a ``random.Random`` seeded here, so one seed gives the same
events on every machine, whatever order the database returned the tracks in.

The model:

* **popularity** is Zipf (exponent ``zipf_exponent``, ~1.1) over a seeded permutation of
  each genre's tracks: the rank-``r`` track is played ``r ** -s`` as often as the first;
* **tastes**: each listener has a home genre (drawn by genre size) and picks from it with
  probability ``loyalty``, else from another genre (also by size); before each track the
  home genre changes with probability ``1 / drift_every`` (drift);
* **listening**: every track starts with ``play``, then either ``skip`` a few seconds in
  (likelier outside the home genre) or ``complete`` at its end, sometimes preceded by a
  ``like``;
* **sessions**: after each track a session ends with probability ``1 / session_tracks``;
  the listener is then away for an exponential gap (mean ``gap_mean_s``);
* **time** is compressed: events come as one Poisson process of the total rate, each
  given to a listener drawn uniformly among those in a session (if all are away, the
  first to come back returns early, so the rate holds). Positions are the model's
  listening positions, not the wall-clock time between a listener's events.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from schemas.events import PlayKind

#: The genre of tracks without a ``genre_top``.
NO_GENRE: Final = "(no genre)"
#: The length assumed for tracks without a known duration.
DEFAULT_DURATION_S: Final = 200.0


@dataclass(frozen=True, slots=True)
class Track:
    """One catalogue entry as the model sees it."""

    track_id: int
    genre: str
    duration_s: float = DEFAULT_DURATION_S


def track(track_id: int, genre: str | None, duration_s: float | None = None) -> Track:
    """A :class:`Track` from stored values: a missing genre or duration gets the defaults."""
    length = float(duration_s) if duration_s and math.isfinite(duration_s) and duration_s > 0 else 0.0
    return Track(int(track_id), genre or NO_GENRE, length or DEFAULT_DURATION_S)


@dataclass(frozen=True, slots=True)
class ListenerModel:
    """The knobs of the listener model (probabilities per track, seconds of compressed time)."""

    loyalty: float = 0.8
    drift_every: float = 50.0
    zipf_exponent: float = 1.1
    skip_home: float = 0.2
    skip_away: float = 0.6
    skip_within_s: tuple[float, float] = (2.0, 25.0)
    like_home: float = 0.2
    like_away: float = 0.05
    session_tracks: float = 10.0
    gap_mean_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("loyalty", "skip_home", "skip_away", "like_home", "like_away"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability, in [0, 1]")
        if self.drift_every < 1 or self.session_tracks < 1:
            raise ValueError("drift_every and session_tracks are means of at least 1 track")
        if self.gap_mean_s <= 0 or self.zipf_exponent < 0:
            raise ValueError("gap_mean_s must be positive and zipf_exponent not negative")
        low, high = self.skip_within_s
        if not 0 < low <= high:
            raise ValueError("skip_within_s is (earliest, latest) seconds, 0 < earliest <= latest")


def zipf_weights(n: int, exponent: float) -> list[float]:
    """Relative popularity of ranks 1..n: ``rank ** -exponent``."""
    return [r**-exponent for r in range(1, n + 1)]


@dataclass(frozen=True)
class Genre:
    """A genre's tracks, most popular first, with their cumulative Zipf weights."""

    name: str
    tracks: tuple[Track, ...]
    cumulative: tuple[float, ...]

    def pick(self, rng: random.Random) -> Track:
        return self.tracks[draw(self.cumulative, rng)]


@dataclass(frozen=True)
class Catalogue:
    """The genres, largest first (name on a tie), and their sizes as cumulative weights."""

    genres: tuple[Genre, ...]
    cumulative: tuple[float, ...]
    by_name: dict[str, int] = field(repr=False)

    def __len__(self) -> int:
        return sum(len(g.tracks) for g in self.genres)

    def genre(self, name: str) -> Genre:
        return self.genres[self.by_name[name]]

    def pick_genre(self, rng: random.Random, avoid: str | None = None) -> Genre:
        """A genre drawn by size, never ``avoid`` unless it is the only one."""
        if avoid is None or len(self.genres) == 1:
            return self.genres[draw(self.cumulative, rng)]
        skip = self.by_name[avoid]
        sizes = [len(g.tracks) for i, g in enumerate(self.genres) if i != skip]
        others = [g for i, g in enumerate(self.genres) if i != skip]
        return others[draw(tuple(itertools.accumulate(sizes)), rng)]


def draw(cumulative: Sequence[float], rng: random.Random) -> int:
    """An index drawn with the weights whose running sums are ``cumulative``."""
    i = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
    return min(i, len(cumulative) - 1)


def build_catalogue(tracks: Iterable[Track], *, seed: int, zipf_exponent: float = 1.1) -> Catalogue:
    """Genres with Zipf popularity over a seeded permutation of their tracks.

    Duplicate ids keep their first row; ValueError if there is no track."""
    unique: dict[int, Track] = {}
    for t in tracks:
        unique.setdefault(t.track_id, t)
    if not unique:
        raise ValueError("the catalogue is empty")
    rng = random.Random(f"{seed}:catalogue")
    grouped: dict[str, list[Track]] = {}
    for tid in sorted(unique):
        grouped.setdefault(unique[tid].genre, []).append(unique[tid])
    genres: list[Genre] = []
    for name in sorted(grouped):
        members = grouped[name]
        rng.shuffle(members)
        weights = zipf_weights(len(members), zipf_exponent)
        genres.append(Genre(name, tuple(members), tuple(itertools.accumulate(weights))))
    genres.sort(key=lambda g: (-len(g.tracks), g.name))
    sizes = itertools.accumulate(float(len(g.tracks)) for g in genres)
    return Catalogue(tuple(genres), tuple(sizes), {g.name: i for i, g in enumerate(genres)})


# --- one listener -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    """One thing a listener does with a track; ``home`` is their home genre when they chose it."""

    track: Track
    kind: PlayKind
    position_s: float
    home: str


@dataclass
class Listener:
    """A listener's state: tastes, session number, and what is left to do with the current track."""

    index: int
    home: str
    session: int = 0
    tracks: int = 0
    drifts: int = 0
    pending: deque[Action] = field(default_factory=deque)


def new_listener(index: int, catalogue: Catalogue, rng: random.Random) -> Listener:
    return Listener(index, catalogue.pick_genre(rng).name)


def choose(listener: Listener, catalogue: Catalogue, model: ListenerModel, rng: random.Random) -> Track:
    """The listener's next track: maybe drift to a new home genre, then home with ``loyalty``."""
    if len(catalogue.genres) > 1 and rng.random() < 1.0 / model.drift_every:
        listener.home = catalogue.pick_genre(rng, avoid=listener.home).name
        listener.drifts += 1
    loyal = len(catalogue.genres) == 1 or rng.random() < model.loyalty
    genre = catalogue.genre(listener.home) if loyal else catalogue.pick_genre(rng, avoid=listener.home)
    listener.tracks += 1
    return genre.pick(rng)


def listen(track: Track, home: str, model: ListenerModel, rng: random.Random) -> list[Action]:
    """What happens to one track: play, then skip a few seconds in, or (like and) complete."""
    at_home = track.genre == home
    actions = [Action(track, PlayKind.PLAY, 0.0, home)]
    if rng.random() < (model.skip_home if at_home else model.skip_away):
        low, high = model.skip_within_s
        latest = min(high, 0.9 * track.duration_s)
        position = rng.uniform(low, latest) if latest > low else track.duration_s * rng.uniform(0.1, 0.9)
        actions.append(Action(track, PlayKind.SKIP, round(position, 1), home))
        return actions
    if rng.random() < (model.like_home if at_home else model.like_away):
        actions.append(Action(track, PlayKind.LIKE, round(track.duration_s * rng.uniform(0.2, 0.9), 1), home))
    actions.append(Action(track, PlayKind.COMPLETE, round(track.duration_s, 1), home))
    return actions


def next_action(
    listener: Listener, catalogue: Catalogue, model: ListenerModel, rng: random.Random
) -> tuple[Action, bool]:
    """The listener's next action, and whether it is the last one of its track."""
    if not listener.pending:
        chosen = choose(listener, catalogue, model, rng)
        listener.pending.extend(listen(chosen, listener.home, model, rng))
    action = listener.pending.popleft()
    return action, not listener.pending


# --- many listeners over time ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scheduled:
    """One event of the run: ``at_s`` seconds after the start, by listener ``listener``."""

    at_s: float
    listener: int
    session: int
    track_id: int
    genre: str
    home: str
    kind: PlayKind
    position_s: float
    #: Where the listener started the track (``up_next``, ``browse``; None: not said, as
    #: the open-loop model's events, whose tracks are drawn in advance).
    source: str | None = None


def schedule(
    catalogue: Catalogue,
    listeners: int,
    rate: float,
    *,
    seed: int,
    model: ListenerModel | None = None,
) -> Iterator[Scheduled]:
    """Endless, time-ordered events of ``listeners`` listeners at ``rate`` events/s in total."""
    if listeners < 1:
        raise ValueError("at least one listener")
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError("the rate must be a positive number of events per second")
    model = model or ListenerModel()
    rng = random.Random(f"{seed}:schedule")
    people = [new_listener(i, catalogue, rng) for i in range(listeners)]
    active = list(range(listeners))
    away: list[tuple[float, int]] = []  # (back at, listener): a heap
    now = 0.0
    while True:
        now += rng.expovariate(rate)
        while away and (away[0][0] <= now or not active):  # if all are away, the first returns now
            _, back = heapq.heappop(away)
            people[back].session += 1
            active.append(back)
        slot = rng.randrange(len(active))
        who = people[active[slot]]
        action, last = next_action(who, catalogue, model, rng)
        yield Scheduled(
            now,
            who.index,
            who.session,
            action.track.track_id,
            action.track.genre,
            action.home,
            action.kind,
            action.position_s,
        )
        if last and rng.random() < 1.0 / model.session_tracks:
            active[slot] = active[-1]
            active.pop()
            heapq.heappush(away, (now + rng.expovariate(1.0 / model.gap_mean_s), who.index))


def until(events: Iterable[Scheduled], horizon_s: float) -> Iterator[Scheduled]:
    """The events before ``horizon_s`` seconds."""
    return itertools.takewhile(lambda e: e.at_s < horizon_s, events)
