"""The listener model of ``cadenza simulate``: deterministic, at the asked rate, coherent per
listener (follow-ups after their play), loyal to a drifting home genre, Zipf-popular, with
session gaps. Pure: no stack needed."""

from __future__ import annotations

import itertools
import random
import statistics
from collections import Counter, defaultdict

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.events import PlayKind
from simulator.plays import (
    DEFAULT_DURATION_S,
    NO_GENRE,
    Catalogue,
    ListenerModel,
    Scheduled,
    Track,
    build_catalogue,
    schedule,
    track,
    until,
    zipf_weights,
)

GENRES = ("Rock", "Jazz", "Folk", "Electronic", "Hip-Hop")


@st.composite
def catalogues(draw: st.DrawFn) -> list[Track]:
    """1-60 tracks with unique ids in 1-5 genres, some without a genre or a duration."""
    ids = draw(st.lists(st.integers(1, 2**53 - 1), min_size=1, max_size=60, unique=True))
    genres = st.sampled_from((*GENRES, None))
    durations = st.one_of(st.none(), st.floats(0.5, 900.0))
    return [track(i, draw(genres), draw(durations)) for i in ids]


def rows(n_per_genre: dict[str, int], duration: float = 180.0) -> list[Track]:
    out, next_id = [], 1
    for genre, n in n_per_genre.items():
        for _ in range(n):
            out.append(Track(next_id, genre, duration))
            next_id += 1
    return out


def events_of(
    tracks: list[Track],
    listeners: int,
    rate: float,
    horizon: float,
    seed: int = 0,
    model: ListenerModel | None = None,
) -> list[Scheduled]:
    catalogue = build_catalogue(tracks, seed=seed)
    return list(until(schedule(catalogue, listeners, rate, seed=seed, model=model), horizon))


def by_listener(events: list[Scheduled]) -> dict[int, list[Scheduled]]:
    out: dict[int, list[Scheduled]] = defaultdict(list)
    for e in events:
        out[e.listener].append(e)
    return out


# --- properties over any catalogue -------------------------------------------------------------


@hsettings(max_examples=40, deadline=None)
@given(
    tracks=catalogues(),
    listeners=st.integers(1, 30),
    rate=st.floats(0.5, 200.0),
    seed=st.integers(0, 2**32),
    order=st.randoms(use_true_random=False),
)
def test_a_seed_gives_the_same_events_whatever_the_row_order(
    tracks: list[Track], listeners: int, rate: float, seed: int, order: random.Random
) -> None:
    horizon = 200 / rate
    first = events_of(tracks, listeners, rate, horizon, seed)
    shuffled = list(tracks)
    order.shuffle(shuffled)
    assert events_of(shuffled, listeners, rate, horizon, seed) == first


@hsettings(max_examples=60, deadline=None)
@given(
    tracks=catalogues(),
    listeners=st.integers(1, 30),
    rate=st.floats(0.5, 200.0),
    seed=st.integers(0, 2**32),
)
def test_events_are_ordered_in_time_and_name_catalogue_tracks(
    tracks: list[Track], listeners: int, rate: float, seed: int
) -> None:
    known = {t.track_id: t for t in tracks}
    events = events_of(tracks, listeners, rate, 300 / rate, seed)
    assert events, "300 expected events, none came"
    times = [e.at_s for e in events]
    assert times == sorted(times) and times[0] > 0
    for e in events:
        assert 0 <= e.listener < listeners
        t = known[e.track_id]
        assert e.genre == t.genre
        assert 0.0 <= e.position_s <= round(t.duration_s, 1)
        assert e.kind in PlayKind


@hsettings(max_examples=60, deadline=None)
@given(
    tracks=catalogues(),
    listeners=st.integers(1, 10),
    seed=st.integers(0, 2**32),
)
def test_each_skip_complete_and_like_follows_a_play_of_the_same_track(
    tracks: list[Track], listeners: int, seed: int
) -> None:
    """Per listener the kinds spell (play (skip | like? complete))* and sessions change only
    between tracks."""
    events = events_of(tracks, listeners, 50.0, 20.0, seed)
    for mine in by_listener(events).values():
        current: Scheduled | None = None  # the play whose follow-ups are due
        liked = False
        for e in mine:
            if e.kind is PlayKind.PLAY:
                assert current is None, f"a new play before {current} was skipped or completed"
                current, liked = e, False
                continue
            assert current is not None, f"{e.kind} without a play"
            assert (e.track_id, e.session) == (current.track_id, current.session)
            if e.kind is PlayKind.LIKE:
                assert not liked
                liked = True
            else:
                assert not (liked and e.kind is PlayKind.SKIP)
                current = None
            if e.kind is PlayKind.SKIP:  # a few seconds in
                assert 0 < e.position_s <= ListenerModel().skip_within_s[1]


@hsettings(max_examples=25, deadline=None)
@given(
    listeners=st.integers(1, 60),
    rate=st.floats(0.5, 500.0),
    seed=st.integers(0, 2**32),
)
def test_the_rate_is_close_to_the_target_over_a_long_horizon(listeners: int, rate: float, seed: int) -> None:
    expected = 4000
    horizon = expected / rate
    events = events_of(rows({"Rock": 30, "Jazz": 10}), listeners, rate, horizon, seed)
    # Poisson: sd = sqrt(4000) ~ 63; 10 % is more than 6 sd, even with every listener away at times.
    assert abs(len(events) / horizon - rate) <= 0.1 * rate


# --- the model's tastes ---------------------------------------------------------------------------


@pytest.mark.parametrize("loyalty", [0.5, 0.8, 0.95])
def test_the_home_genre_share_of_plays_is_the_loyalty(loyalty: float) -> None:
    model = ListenerModel(loyalty=loyalty, drift_every=20)
    events = events_of(rows({"Rock": 40, "Jazz": 30, "Folk": 20}), 30, 100.0, 200.0, seed=3, model=model)
    plays = [e for e in events if e.kind is PlayKind.PLAY]
    share = sum(e.genre == e.home for e in plays) / len(plays)
    assert len(plays) > 5000
    assert share == pytest.approx(loyalty, abs=0.03)


def test_home_genres_are_drawn_by_size_and_drift() -> None:
    model = ListenerModel(drift_every=10)
    events = events_of(rows({"Rock": 60, "Jazz": 30, "Folk": 10}), 200, 200.0, 100.0, seed=5, model=model)
    first_home = {mine[0].listener: mine[0].home for mine in by_listener(events).values()}
    homes = Counter(first_home.values())
    assert homes["Rock"] > homes["Jazz"] > homes["Folk"]
    changes = tracks_seen = 0
    for mine in by_listener(events).values():
        plays = [e for e in mine if e.kind is PlayKind.PLAY]
        tracks_seen += len(plays)
        changes += sum(a.home != b.home for a, b in itertools.pairwise(plays))
    # Every drift changes the home genre; one drift per ~10 tracks.
    assert changes / tracks_seen == pytest.approx(1 / 10, rel=0.15)


def test_skips_are_likelier_outside_the_home_genre_and_likes_inside() -> None:
    model = ListenerModel(loyalty=0.5)
    events = events_of(rows({"Rock": 40, "Jazz": 40}), 20, 100.0, 300.0, seed=11, model=model)
    outcome: dict[bool, Counter[PlayKind]] = {True: Counter(), False: Counter()}
    for e in events:
        if e.kind is not PlayKind.PLAY:
            outcome[e.genre == e.home][e.kind] += 1

    def skip_rate(c: Counter[PlayKind]) -> float:
        return c[PlayKind.SKIP] / (c[PlayKind.SKIP] + c[PlayKind.COMPLETE])

    assert skip_rate(outcome[True]) == pytest.approx(model.skip_home, abs=0.04)
    assert skip_rate(outcome[False]) == pytest.approx(model.skip_away, abs=0.04)
    assert outcome[True][PlayKind.LIKE] / outcome[True][PlayKind.COMPLETE] > (
        outcome[False][PlayKind.LIKE] / outcome[False][PlayKind.COMPLETE]
    )


def test_popularity_is_zipf_over_a_seeded_permutation() -> None:
    tracks = rows({"Rock": 101})
    catalogue = build_catalogue(tracks, seed=1)
    ranked = [t.track_id for t in catalogue.genre("Rock").tracks]
    assert sorted(ranked) == [t.track_id for t in tracks]
    assert ranked != sorted(ranked), "the popularity order is a permutation, not the id order"
    assert [t.track_id for t in build_catalogue(tracks, seed=2).genre("Rock").tracks] != ranked
    events = list(until(schedule(catalogue, 20, 200.0, seed=1), 200.0))
    counts = Counter(e.track_id for e in events if e.kind is PlayKind.PLAY)
    top, median = counts[ranked[0]], counts[ranked[50]]
    assert top > 10 * median
    weights = zipf_weights(101, 1.1)
    assert top / counts.total() == pytest.approx(weights[0] / sum(weights), rel=0.1)


def test_listeners_have_sessions_separated_by_gaps() -> None:
    # ~60 % of the 50 listeners in a session at a time: nobody has to come back early.
    model = ListenerModel(session_tracks=5, gap_mean_s=20.0)
    events = events_of(rows({"Rock": 30, "Jazz": 30}), 50, 10.0, 600.0, seed=2, model=model)
    within: list[float] = []
    between: list[float] = []
    for mine in by_listener(events).values():
        for a, b in itertools.pairwise(mine):
            assert b.session in (a.session, a.session + 1)
            (between if b.session > a.session else within).append(b.at_s - a.at_s)
    assert len(between) > 50
    assert statistics.mean(between) > 5 * statistics.mean(within)
    assert statistics.mean(between) == pytest.approx(model.gap_mean_s, rel=0.35)


def test_when_everyone_is_away_the_first_back_returns_early_and_the_rate_holds() -> None:
    model = ListenerModel(session_tracks=1, gap_mean_s=1000.0)
    events = events_of(rows({"Rock": 5}), 2, 10.0, 100.0, seed=4, model=model)
    assert len(events) == pytest.approx(1000, rel=0.1)
    assert max(e.session for e in events) > 50


# --- the catalogue and bad input ------------------------------------------------------------------


def test_catalogue_rows_get_defaults_and_duplicates_count_once() -> None:
    assert track(7, None, None) == Track(7, NO_GENRE, DEFAULT_DURATION_S)
    assert track(7, "Rock", 0.0).duration_s == DEFAULT_DURATION_S
    assert track(7, "Rock", float("nan")).duration_s == DEFAULT_DURATION_S
    catalogue = build_catalogue(
        [Track(1, "Rock"), Track(1, "Jazz"), Track(2, "Jazz"), Track(3, "Jazz")], seed=0
    )
    assert isinstance(catalogue, Catalogue) and len(catalogue) == 3
    assert [g.name for g in catalogue.genres] == ["Jazz", "Rock"]


def test_one_genre_is_enough() -> None:
    events = events_of(rows({"Rock": 3}), 4, 20.0, 50.0, model=ListenerModel(drift_every=1))
    assert events and {e.home for e in events} == {"Rock"}


def test_bad_input_is_refused() -> None:
    catalogue = build_catalogue(rows({"Rock": 3}), seed=0)
    with pytest.raises(ValueError, match="empty"):
        build_catalogue([], seed=0)
    with pytest.raises(ValueError, match="listener"):
        next(schedule(catalogue, 0, 1.0, seed=0))
    for rate in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="rate"):
            next(schedule(catalogue, 1, rate, seed=0))
    with pytest.raises(ValueError, match="loyalty"):
        ListenerModel(loyalty=1.5)
    with pytest.raises(ValueError, match="skip_within_s"):
        ListenerModel(skip_within_s=(10.0, 2.0))
