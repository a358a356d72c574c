"""Closed-loop listeners (pure): they choose from the list they were last pushed, or browse."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from schemas.events import PlayKind
from simulator import choice
from simulator.closed_loop import Choices, closed_loop, compression
from simulator.plays import Scheduled, Track, build_catalogue

TRACKS = [Track(i, "Rock" if i <= 30 else "Jazz", 180.0) for i in range(1, 61)]
JAZZ_LIST = list(range(31, 41))


def run(
    n: int, *, seed: int = 7, listed: list[int] | None = None, listeners: int = 5
) -> tuple[list[Scheduled], Choices]:
    catalogue = build_catalogue(TRACKS, seed=seed)
    choices = Choices()
    events = list(
        itertools.islice(
            closed_loop(
                catalogue,
                listeners,
                10.0,
                seed=seed,
                latest=lambda who: listed or [],
                choices=choices,
            ),
            n,
        )
    )
    return events, choices


def test_same_seed_same_events_and_times_increase() -> None:
    first, _ = run(300, listed=JAZZ_LIST)
    again, _ = run(300, listed=JAZZ_LIST)
    assert first == again
    assert all(a.at_s < b.at_s for a, b in itertools.pairwise(first))
    assert run(300, seed=8, listed=JAZZ_LIST)[0] != first


def test_each_listeners_events_follow_a_play_of_the_same_track_with_its_source() -> None:
    events, choices = run(2000, listed=JAZZ_LIST)
    current: dict[int, tuple[int, str | None] | None] = {}
    for e in events:
        if e.kind is PlayKind.PLAY:
            assert current.get(e.listener) is None, e  # the previous track was finished first
            current[e.listener] = (e.track_id, e.source)
        else:
            assert current[e.listener] == (e.track_id, e.source), e
            if e.kind is not PlayKind.LIKE:
                current[e.listener] = None
    starts = [e for e in events if e.kind is PlayKind.PLAY]
    assert Counter(e.source for e in starts) == choices.started
    assert {e.track_id for e in starts if e.source == choice.UP_NEXT} <= set(JAZZ_LIST)
    # Browsed tracks are of the listener's home genre at the time.
    assert all(e.genre == e.home for e in starts if e.source == choice.BROWSE)
    assert choices.offered == len(starts)


def test_with_no_list_every_track_is_browsed_and_acceptance_follows_the_lists_match() -> None:
    _, none = run(1500)
    assert none.started[choice.UP_NEXT] == 0 and none.acceptance == 0.0 and none.offered == 0
    _, jazz = run(4000, listed=JAZZ_LIST, listeners=40)
    assert jazz.acceptance is not None
    # Jazz lovers (15 of 60 tracks: a quarter of the listeners by genre size) accept an all-jazz
    # list with accept_full, the others with accept_base: the mix lies strictly between.
    model = choice.ChoiceModel()
    assert model.accept_base < jazz.acceptance < model.accept_full


def test_compression_is_event_time_over_wall_time() -> None:
    _, choices = run(500, listed=JAZZ_LIST)
    assert choices.event_seconds > 0
    assert compression(choices, 10.0) == pytest.approx(choices.event_seconds / 10.0)
    assert compression(Choices(), 10.0) is None and compression(choices, 0.0) is None
    assert Choices().acceptance is None
    assert choices.to_dict()["started"] == dict(choices.started)


def test_bad_arguments_are_refused() -> None:
    catalogue = build_catalogue(TRACKS, seed=1)
    with pytest.raises(ValueError, match="listener"):
        next(closed_loop(catalogue, 0, 1.0, seed=1, latest=lambda who: []))
    with pytest.raises(ValueError, match="rate"):
        next(closed_loop(catalogue, 1, 0.0, seed=1, latest=lambda who: []))
