"""The closed-loop listener of ``bench.quality`` (simulator.choice): its stated probabilities hold
over many seeded draws, it is deterministic per seed, time advances as listened, and bad
parameters are refused. Pure: no stack needed."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest

from schemas.events import PlayKind
from simulator.choice import (
    BROWSE,
    UP_NEXT,
    ChoiceModel,
    Chooser,
    Play,
    choose,
    drift,
    list_weights,
    listen,
    new_chooser,
    step,
    up_next_probability,
)
from simulator.plays import Catalogue, Track, build_catalogue

GENRES = ("Rock", "Jazz", "Folk")
DRAWS = 20_000
#: Four standard deviations of a share measured over ``DRAWS`` draws (p near 0.5): ~0.014.
TOL = 0.015


def tracks(per_genre: int = 50, length: float = 200.0) -> list[Track]:
    return [Track(100 * (g + 1) + i, name, length) for g, name in enumerate(GENRES) for i in range(per_genre)]


def catalogue(per_genre: int = 50) -> Catalogue:
    return build_catalogue(tracks(per_genre), seed=0)


def listed(home: int, away: int) -> list[Track]:
    """A list of ``home`` Rock tracks then ``away`` Jazz tracks."""
    return [Track(1000 + i, "Rock", 200.0) for i in range(home)] + [
        Track(2000 + i, "Jazz", 200.0) for i in range(away)
    ]


def test_the_chance_to_take_from_the_list_rises_with_how_much_of_it_matches() -> None:
    model = ChoiceModel(accept_base=0.1, accept_full=0.9)
    assert up_next_probability([], "Rock", model) == 0.0
    assert up_next_probability(listed(0, 10), "Rock", model) == pytest.approx(0.1)
    assert up_next_probability(listed(5, 5), "Rock", model) == pytest.approx(0.5)
    assert up_next_probability(listed(10, 0), "Rock", model) == pytest.approx(0.9)


@pytest.mark.parametrize("home", [0, 3, 7, 10])
def test_the_listener_takes_from_the_list_as_often_as_stated(home: int) -> None:
    model = ChoiceModel()
    offered = listed(home, 10 - home)
    cat = catalogue()
    rng = random.Random(1)
    sources = Counter(choose(Chooser("Rock"), offered, cat, model, rng)[1] for _ in range(DRAWS))
    assert sources[UP_NEXT] / DRAWS == pytest.approx(up_next_probability(offered, "Rock", model), abs=TOL)


def test_picks_from_the_list_lean_to_the_taste_and_the_top_as_stated() -> None:
    model = ChoiceModel(accept_base=1.0, accept_full=1.0, taste_weight=4.0, rank_decay=0.8)
    offered = [
        Track(1, "Jazz", 200.0),
        Track(2, "Rock", 200.0),
        Track(3, "Jazz", 200.0),
        Track(4, "Rock", 200.0),
    ]
    weights = list_weights(offered, "Rock", model)
    assert weights == pytest.approx([1.0, 4.0 * 0.8, 0.8**2, 4.0 * 0.8**3])
    rng = random.Random(2)
    ranks = Counter(choose(Chooser("Rock"), offered, catalogue(), model, rng)[2] for _ in range(DRAWS))
    for rank, weight in enumerate(weights):
        assert ranks[rank] / DRAWS == pytest.approx(weight / sum(weights), abs=TOL)


def test_browsing_picks_the_home_genre_by_zipf_popularity() -> None:
    model = ChoiceModel()
    cat = catalogue(per_genre=20)
    rng = random.Random(3)
    picks: Counter[int] = Counter()
    for _ in range(DRAWS):
        track, source, rank = choose(Chooser("Folk"), [], cat, model, rng)
        assert (source, rank, track.genre) == (BROWSE, None, "Folk")
        picks[track.track_id] += 1
    most_popular = cat.genre("Folk").tracks[0].track_id  # rank 1 of the genre's permutation
    assert picks.most_common(1)[0][0] == most_popular
    harmonic = sum(r**-model.zipf_exponent for r in range(1, 21))
    assert picks[most_popular] / DRAWS == pytest.approx(1 / harmonic, abs=TOL)


@pytest.mark.parametrize("genre", ["Rock", "Jazz"])
def test_skips_and_likes_happen_at_the_stated_rates_inside_and_outside_the_taste(genre: str) -> None:
    model = ChoiceModel()
    rng = random.Random(4)
    kinds: Counter[PlayKind] = Counter()
    for _ in range(DRAWS):
        events = listen(Chooser("Rock"), Track(1, genre, 200.0), model, rng)
        kinds.update(e.kind for e in events)
    at_home = genre == "Rock"
    skip = model.skip_home if at_home else model.skip_away
    like = model.like_home if at_home else model.like_away
    assert kinds[PlayKind.PLAY] == DRAWS
    assert kinds[PlayKind.SKIP] / DRAWS == pytest.approx(skip, abs=TOL)
    assert kinds[PlayKind.COMPLETE] == DRAWS - kinds[PlayKind.SKIP]
    assert kinds[PlayKind.LIKE] / kinds[PlayKind.COMPLETE] == pytest.approx(like, abs=2 * TOL)


def test_event_time_advances_by_what_was_listened_plus_a_small_gap() -> None:
    model = ChoiceModel()
    rng = random.Random(5)
    chooser = Chooser("Rock", now=1000.0)
    for _ in range(2000):
        start = chooser.now
        length = rng.choice([30.0, 200.0, 400.0])
        events = listen(chooser, Track(1, rng.choice(GENRES), length), model, rng)
        assert events[0] == events[0].__class__(PlayKind.PLAY, start, 0.0)
        assert [e.ts for e in events] == sorted(e.ts for e in events)
        last = events[-1]
        if last.kind is PlayKind.SKIP:
            low, high = model.skip_within_s
            assert low <= last.position_s <= min(high, 0.9 * length)
        else:
            assert last.kind is PlayKind.COMPLETE
            assert last.ts == pytest.approx(start + length)
        assert all(e.ts - start == pytest.approx(e.position_s) for e in events)
        assert model.gap_s[0] <= chooser.now - last.ts <= model.gap_s[1]
    assert chooser.plays == 2000


def test_drift_happens_at_the_stated_rate_and_always_to_another_genre() -> None:
    model = ChoiceModel(drift=0.05)
    cat = catalogue()
    rng = random.Random(6)
    chooser = new_chooser(cat, rng)
    moved = 0
    for _ in range(DRAWS):
        before = chooser.home
        if drift(chooser, cat, model, rng):
            moved += 1
            assert chooser.home != before
        else:
            assert chooser.home == before
    assert moved == chooser.drifts
    assert moved / DRAWS == pytest.approx(0.05, abs=0.005)
    lonely = build_catalogue([Track(1, "Rock")], seed=0)
    alone = Chooser("Rock")
    assert not any(drift(alone, lonely, ChoiceModel(drift=1.0), rng) for _ in range(100))


def test_a_separate_drift_stream_gives_the_same_drifts_whatever_the_list() -> None:
    cat = catalogue()
    model = ChoiceModel(drift=0.1)

    def drifts(offered: list[Track], seed: int) -> list[bool]:
        """Choices drawn from ``seed``, drifts from a stream of their own."""
        chooser = Chooser("Rock")
        rng, taste = random.Random(seed), random.Random("taste")
        return [step(chooser, offered, cat, model, rng, drift_rng=taste).drifted for _ in range(300)]

    assert drifts(listed(10, 0), 7) == drifts(listed(0, 10), 8)
    assert sum(drifts([], 7)) > 10


def plays(seed: int, n: int = 200) -> list[Play]:
    cat = catalogue()
    model = ChoiceModel(drift=0.1)
    rng = random.Random(seed)
    chooser = new_chooser(cat, rng)
    offered = listed(4, 6)
    return [step(chooser, offered, cat, model, rng) for _ in range(n)]


def test_the_same_seed_gives_the_same_plays_and_another_seed_others() -> None:
    assert plays(11) == plays(11)
    assert plays(11) != plays(12)
    sources = {p.source for p in plays(11)}
    assert sources == {UP_NEXT, BROWSE}
    for p in plays(11):
        assert (p.rank is None) == (p.source == BROWSE)
        assert p.skipped == (p.events[-1].kind is PlayKind.SKIP)


@pytest.mark.parametrize(
    "change",
    [
        {"drift": -0.1},
        {"accept_full": 1.5},
        {"skip_away": float("nan")},
        {"accept_base": 0.9, "accept_full": 0.5},
        {"taste_weight": 0.5},
        {"taste_weight": float("inf")},
        {"rank_decay": 0.0},
        {"rank_decay": 1.2},
        {"zipf_exponent": -1.0},
        {"skip_within_s": (0.0, 10.0)},
        {"skip_within_s": (20.0, 10.0)},
        {"gap_s": (-1.0, 2.0)},
        {"gap_s": (3.0, 2.0)},
    ],
)
def test_bad_parameters_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(ChoiceModel(), **change)  # type: ignore[arg-type]
