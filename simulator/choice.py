"""A listener who chooses from "up next": the closed-loop listener model of ``python -m bench.quality``.

Source: the "up next" list the listener was last pushed (as :class:`~simulator.plays.Track`
rows: id, genre, length), a browsable catalogue (:class:`simulator.plays.Catalogue`: each
genre's tracks by Zipf popularity) and a seeded ``random.Random``. Destination: one
:class:`Play` per track: which track, where it came from (``source``: ``"up_next"`` or
``"browse"``) and the events the listener sends for it (``play``, then ``skip`` or
[``like``] ``complete``), each with its event time, for the caller to fold into the
recommender's listener state. Pure: no IO and no clock; the same seed gives the same plays.
Frozen: :class:`ChoiceModel`'s defaults are the reference listener of the quality bench;
change them only on purpose, since every figure it reports is relative to them.

The model (every probability a field of :class:`ChoiceModel`):

* **taste**: a listener has a *home genre* (its current taste), drawn by genre size. Before
  each play it *drifts* with probability ``drift`` to another genre (also drawn by size,
  never the same), as :mod:`simulator.plays` does.
* **choosing**: with the list's share ``m`` of tracks in the home genre, the listener takes
  its next track from the list with probability ``accept_base + (accept_full - accept_base)
  * m`` (an empty list: never), weighting each listed track by ``taste_weight`` (home
  genre) or 1, times ``rank_decay ** position`` (position 0 first): source ``"up_next"``.
  Otherwise it *browses*: a track of its home genre drawn by Zipf popularity
  (:meth:`simulator.plays.Genre.pick`): source ``"browse"``.
* **listening**: every track starts with ``play`` at time ``t``; it is skipped with
  probability ``skip_home`` / ``skip_away`` (inside / outside the home genre) at a position
  uniform in ``skip_within_s`` (at most 90 % of the track); otherwise liked with probability
  ``like_home`` / ``like_away`` at 20-90 % of it, and completed at its end.
* **time** is event time in seconds, as the recommender sees it: a skip at position ``s``
  comes at ``t + s``, a completion at ``t + length``, and the next track starts after a gap
  uniform in ``gap_s`` after the last event. So the recommender's half-life
  (``Limits.half_life_s``, ``CADENZA_RECO_HALF_LIFE_S``, 1800 s by default) means what it
  means in production: with tracks of 200 s, a cluster's weight halves over about nine
  completed tracks, or about 110 quick skips.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from schemas.events import PlayKind
from simulator.plays import Catalogue, Track

Source = Literal["up_next", "browse"]
UP_NEXT: Final = "up_next"
BROWSE: Final = "browse"


@dataclass(frozen=True, slots=True)
class ChoiceModel:
    """The listener's probabilities (per play) and times (seconds of event time).

    * ``drift``: chance per play that the home genre changes (0.02: every 50 plays on average);
    * ``accept_base`` / ``accept_full``: chance to take the next track from "up next" when
      none / all of its tracks are in the home genre (linear in between);
    * ``taste_weight``: how many times likelier a listed track of the home genre is picked
      than one outside it (>= 1); ``rank_decay``: weight of list position ``r`` is
      ``rank_decay ** r`` (1: position does not matter);
    * ``zipf_exponent``: popularity when browsing (rank ``r`` of a genre is played ``r ** -s``
      as often as the first);
    * ``skip_home`` / ``skip_away``, ``like_home`` / ``like_away``: chance to skip, and (not
      skipped) to like, a track inside / outside the home genre;
    * ``skip_within_s``: (earliest, latest) position of a skip; ``gap_s``: (shortest,
      longest) pause before the next track.
    """

    drift: float = 0.02
    accept_base: float = 0.1
    accept_full: float = 0.8
    taste_weight: float = 4.0
    rank_decay: float = 0.85
    zipf_exponent: float = 1.1
    skip_home: float = 0.15
    skip_away: float = 0.6
    like_home: float = 0.2
    like_away: float = 0.03
    skip_within_s: tuple[float, float] = (2.0, 25.0)
    gap_s: tuple[float, float] = (0.5, 5.0)

    def __post_init__(self) -> None:
        for name in (
            "drift",
            "accept_base",
            "accept_full",
            "skip_home",
            "skip_away",
            "like_home",
            "like_away",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability, in [0, 1], got {value}")
        if self.accept_base > self.accept_full:
            raise ValueError("accept_base must not exceed accept_full: a matching list is not less welcome")
        if not 1.0 <= self.taste_weight < float("inf"):
            raise ValueError(f"taste_weight must be a finite number >= 1, got {self.taste_weight}")
        if not 0.0 < self.rank_decay <= 1.0:
            raise ValueError(f"rank_decay must be in (0, 1], got {self.rank_decay}")
        if not 0.0 <= self.zipf_exponent < float("inf"):
            raise ValueError(f"zipf_exponent must be a finite number >= 0, got {self.zipf_exponent}")
        low, high = self.skip_within_s
        if not 0.0 < low <= high < float("inf"):
            raise ValueError("skip_within_s is (earliest, latest) seconds, 0 < earliest <= latest")
        low, high = self.gap_s
        if not 0.0 <= low <= high < float("inf"):
            raise ValueError("gap_s is (shortest, longest) seconds, 0 <= shortest <= longest")


@dataclass(frozen=True, slots=True)
class Heard:
    """One event the listener sends: what, when (event time, s) and where in the track (s)."""

    kind: PlayKind
    ts: float
    position_s: float


@dataclass(frozen=True, slots=True)
class Play:
    """One track played: where it came from, the home genre it was chosen under, whether the
    listener drifted just before choosing, its position in the list (None: browsed), and the
    events sent for it in time order."""

    track: Track
    source: Source
    home: str
    drifted: bool
    rank: int | None
    events: tuple[Heard, ...]

    @property
    def skipped(self) -> bool:
        return self.events[-1].kind is PlayKind.SKIP

    @property
    def liked(self) -> bool:
        return any(e.kind is PlayKind.LIKE for e in self.events)


@dataclass
class Chooser:
    """A listener's state: home genre, event time at which it starts its next track, counts."""

    home: str
    now: float = 0.0
    plays: int = 0
    drifts: int = 0


def new_chooser(catalogue: Catalogue, rng: random.Random, *, start_s: float = 0.0) -> Chooser:
    """A listener whose home genre is drawn by genre size, starting at event time ``start_s``."""
    return Chooser(catalogue.pick_genre(rng).name, now=start_s)


def drift(chooser: Chooser, catalogue: Catalogue, model: ChoiceModel, rng: random.Random) -> bool:
    """Maybe move the home genre to another one (probability ``model.drift``); True if it moved.

    Draws one number, and one more when it moves, whatever the list: a separate ``rng`` here
    gives every strategy compared by the bench the same drifts at the same plays."""
    if rng.random() >= model.drift or len(catalogue.genres) < 2:
        return False
    chooser.home = catalogue.pick_genre(rng, avoid=chooser.home).name
    chooser.drifts += 1
    return True


def up_next_probability(offered: Sequence[Track], home: str, model: ChoiceModel) -> float:
    """The chance of choosing from ``offered`` rather than browsing (0 for an empty list)."""
    if not offered:
        return 0.0
    matching = sum(t.genre == home for t in offered) / len(offered)
    return model.accept_base + (model.accept_full - model.accept_base) * matching


def list_weights(offered: Sequence[Track], home: str, model: ChoiceModel) -> list[float]:
    """Relative chance of each listed track once the listener chooses from the list."""
    return [
        (model.taste_weight if t.genre == home else 1.0) * model.rank_decay**r for r, t in enumerate(offered)
    ]


def choose(
    chooser: Chooser, offered: Sequence[Track], catalogue: Catalogue, model: ChoiceModel, rng: random.Random
) -> tuple[Track, Source, int | None]:
    """The next track, its source and its list position (None when browsed)."""
    if offered and rng.random() < up_next_probability(offered, chooser.home, model):
        rank = rng.choices(range(len(offered)), weights=list_weights(offered, chooser.home, model))[0]
        return offered[rank], UP_NEXT, rank
    return catalogue.genre(chooser.home).pick(rng), BROWSE, None


def listen(chooser: Chooser, track: Track, model: ChoiceModel, rng: random.Random) -> tuple[Heard, ...]:
    """The events of one track from ``chooser.now``; moves ``chooser.now`` to the next track's start."""
    start = chooser.now
    at_home = track.genre == chooser.home
    events = [Heard(PlayKind.PLAY, start, 0.0)]
    if rng.random() < (model.skip_home if at_home else model.skip_away):
        low, high = model.skip_within_s
        latest = min(high, 0.9 * track.duration_s)
        position = rng.uniform(low, latest) if latest > low else track.duration_s * rng.uniform(0.1, 0.9)
        events.append(Heard(PlayKind.SKIP, start + position, position))
    else:
        if rng.random() < (model.like_home if at_home else model.like_away):
            position = track.duration_s * rng.uniform(0.2, 0.9)
            events.append(Heard(PlayKind.LIKE, start + position, position))
        events.append(Heard(PlayKind.COMPLETE, start + track.duration_s, track.duration_s))
    chooser.now = events[-1].ts + rng.uniform(*model.gap_s)
    chooser.plays += 1
    return tuple(events)


def step(
    chooser: Chooser,
    offered: Sequence[Track],
    catalogue: Catalogue,
    model: ChoiceModel,
    rng: random.Random,
    *,
    drift_rng: random.Random | None = None,
) -> Play:
    """One play: maybe drift (drawn from ``drift_rng``, else ``rng``), choose, listen."""
    drifted = drift(chooser, catalogue, model, drift_rng or rng)
    track, source, rank = choose(chooser, offered, catalogue, model, rng)
    events = listen(chooser, track, model, rng)
    return Play(track, source, chooser.home, drifted, rank, events)
