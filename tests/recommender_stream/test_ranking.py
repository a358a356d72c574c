"""Properties of the ranking and the listener state (pure, hypothesis)."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.settings import Settings
from recommender_stream.catalogue import Catalogue
from recommender_stream.listener import DELTAS, Limits, ListenerState
from recommender_stream.ranking import (
    PREVIOUS,
    SKIP_ROOM,
    Pick,
    RankingParams,
    make_room,
    ranking_params,
    recommend,
    skipped_cluster,
)

KINDS = ("play", "skip", "complete", "like")
LIMITS = Limits(last_n=5, half_life_s=600.0, seen_events=50)


def make_catalogue(n: int, k: int, seed: int, dims: int = 3) -> Catalogue:
    rng = np.random.default_rng(seed)
    cat = Catalogue(model=None, dims=dims)
    centres = rng.normal(0, 5, (k, dims))
    for i in range(n):
        c = i % k
        cat.add(100 + i, c, centres[c] + rng.normal(0, 1, dims), f"title {i}", "artist")
    return cat


events_strategy = st.lists(
    st.tuples(st.integers(0, 39), st.sampled_from(KINDS), st.floats(0, 7200)), min_size=0, max_size=40
)


def build_state(cat: Catalogue, events: list[tuple[int, str, float]]) -> ListenerState:
    state = ListenerState()
    for i, kind, ts in sorted(events, key=lambda e: e[2]):
        track = cat.ids[i % len(cat)]
        state.apply(
            uuid.uuid4().hex,
            track_id=track,
            kind=kind,
            cluster=cat.clusters[i % len(cat)],
            ts=ts,
            limits=LIMITS,
        )
    return state


@settings(max_examples=80, deadline=None)
@given(
    events=events_strategy,
    n=st.integers(12, 40),
    k=st.integers(1, 5),
    seed=st.integers(0, 5),
    want=st.integers(1, 10),
)
def test_never_recent_or_skipped_exactly_k_and_deterministic(
    events: list[tuple[int, str, float]], n: int, k: int, seed: int, want: int
) -> None:
    cat = make_catalogue(n, k, seed)
    state = build_state(cat, events)
    trending = {0: [(cat.ids[0], 5), (cat.ids[1], 3)]}
    popularity = {cat.ids[2]: 4}
    picks = recommend(state, cat, trending, popularity, k=want, now=7200.0, half_life_s=600.0)
    ids = [p.track_id for p in picks]
    assert not set(ids) & set(state.recent)
    assert not set(ids) & set(state.skipped)
    available = len(set(cat.ids) - set(state.recent) - set(state.skipped))
    assert len(ids) == min(want, available) and len(set(ids)) == len(ids)
    assert all(p.reason for p in picks)
    again = recommend(state, cat, trending, popularity, k=want, now=7200.0, half_life_s=600.0)
    assert [(p.track_id, p.score, p.reason) for p in again] == [
        (p.track_id, p.score, p.reason) for p in picks
    ]


@settings(max_examples=100, deadline=None)
@given(events=events_strategy, cluster=st.integers(0, 3), ts=st.floats(0, 9000))
def test_a_skip_never_raises_its_clusters_weight(
    events: list[tuple[int, str, float]], cluster: int, ts: float
) -> None:
    cat = make_catalogue(40, 4, 0)
    state = build_state(cat, events)
    before = state.decayed(ts, LIMITS.half_life_s).get(cluster, 0.0)
    state.apply("skip-event", track_id=cat.ids[cluster], kind="skip", cluster=cluster, ts=ts, limits=LIMITS)
    assert state.affinity.get(cluster, 0.0) <= before + 1e-12
    assert DELTAS["skip"] < 0 < DELTAS["like"]


def test_a_like_raises_and_redelivery_changes_nothing() -> None:
    state = ListenerState()
    assert state.apply("e1", track_id=1, kind="play", cluster=2, ts=0.0, limits=LIMITS)
    snapshot = state.to_dict()
    assert not state.apply("e1", track_id=1, kind="play", cluster=2, ts=0.0, limits=LIMITS)
    assert state.to_dict() == snapshot
    state.apply("e2", track_id=1, kind="like", cluster=2, ts=0.0, limits=LIMITS)
    assert state.affinity[2] == 3.0 and state.liked == [1]
    assert ListenerState.from_dict(state.to_dict()) == state


def test_affinity_halves_after_one_half_life() -> None:
    state = ListenerState()
    state.apply("e1", track_id=1, kind="play", cluster=0, ts=0.0, limits=LIMITS)
    assert state.decayed(600.0, 600.0)[0] == 0.5


def test_recommendations_follow_the_strongest_cluster() -> None:
    cat = make_catalogue(40, 4, 1)
    events = [(i, "play", float(i)) for i in range(0, 40, 4)][:5]  # cluster 0 tracks
    state = build_state(cat, events)
    picks = recommend(state, cat, {}, {}, k=6, now=10.0, half_life_s=600.0)
    assert sum(p.cluster == 0 for p in picks) >= 5
    assert any(p.reason.startswith("sounds like title") for p in picks)


def test_cold_start_uses_trending_then_popular() -> None:
    cat = make_catalogue(20, 2, 0)
    picks = recommend(
        ListenerState(), cat, {1: [(cat.ids[3], 9)]}, {cat.ids[5]: 7}, k=3, now=0.0, half_life_s=600.0
    )
    assert [(p.track_id, p.reason) for p in picks[:2]] == [
        (cat.ids[3], "trending now"),
        (cat.ids[5], "popular on Cadenza"),
    ]
    assert len(picks) == 3


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 80), seed=st.integers(0, 5), counts=st.lists(st.integers(1, 30), min_size=1, max_size=4)
)
def test_nearest_neighbours_match_a_brute_force_scan_whatever_was_asked_before(
    n: int, seed: int, counts: list[int]
) -> None:
    """The per-track cache serves any depth asked for, in any order, as a full scan would."""
    cat = make_catalogue(n, 3, seed)
    for pos in range(0, n, 7):
        mates = [p for p in range(n) if cat.clusters[p] == cat.clusters[pos] and p != pos]
        d = {p: float(np.linalg.norm(cat.coords([p])[0] - cat.coords([pos])[0])) for p in mates}
        expected = sorted(mates, key=lambda p: (d[p], p))
        for count in counts:
            got = cat.nearest(pos, count)
            assert [p for p, _ in got] == expected[:count]
            assert all(abs(dist - d[p]) < 1e-3 for p, dist in got)


@settings(max_examples=60, deadline=None)
@given(
    events=events_strategy,
    n=st.integers(12, 40),
    k=st.integers(1, 5),
    seed=st.integers(0, 5),
    audio_every=st.integers(2, 4),
)
def test_tracks_without_audio_are_never_recommended_while_any_has_audio(
    events: list[tuple[int, str, float]], n: int, k: int, seed: int, audio_every: int
) -> None:
    """A catalogue of a few tracks with audio among imported rows (the full-size demo): only
    playable tracks are offered, as many as there are to offer; with no audio at all (a
    catalogue of feature rows alone) every track may be."""
    mixed = make_catalogue(n, k, seed)
    for pos, track in enumerate(mixed.ids):
        mixed.add(
            track,
            mixed.clusters[pos],
            mixed.coords([pos])[0],
            mixed.titles[pos],
            mixed.artists[pos],
            playable=pos % audio_every == 0,
        )
    state = build_state(mixed, events)
    picks = recommend(state, mixed, {}, {}, k=10, now=7200.0, half_life_s=LIMITS.half_life_s)
    playable = {t for pos, t in enumerate(mixed.ids) if mixed.playable[pos]}
    assert {p.track_id for p in picks} <= playable
    allowed = playable - set(state.recent) - set(state.skipped)
    assert len(picks) == min(10, len(allowed))

    silent = make_catalogue(n, k, seed)
    for pos, track in enumerate(silent.ids):
        silent.add(track, silent.clusters[pos], silent.coords([pos])[0], playable=False)
    assert silent.playable_count == 0
    picks = recommend(build_state(silent, events), silent, {}, {}, k=10, now=7200.0, half_life_s=600.0)
    assert len(picks) == min(10, len(set(silent.ids) - set(state.recent) - set(state.skipped)))


def test_the_rankings_weights_come_from_settings_and_bad_ones_are_refused() -> None:
    # What ships: the weights bench/tune.py chose (bench/results/tuning-demo.json), not PREVIOUS.
    assert ranking_params(Settings()) == RankingParams(3.0, 0.5, 0.5, 0.85, seed_decay=0.3, skip_penalty=0.3)
    assert Settings().reco_half_life_s == 300.0
    tuned = Settings(
        reco_seed_weight=2.0,
        reco_trending_weight=0.25,
        reco_mix_weight=0.0,
        reco_mmr_lambda=1.0,
        reco_seed_decay=0.5,
        reco_skip_penalty=0.0,
    )
    assert ranking_params(tuned) == RankingParams(2.0, 0.25, 0.0, 1.0, 0.5, 0.0)
    with pytest.raises(pydantic.ValidationError):
        Settings(reco_mmr_lambda=1.5)
    with pytest.raises(ValueError, match="lambda_"):
        RankingParams(lambda_=-0.1)


# --- the reacting ranking (relative closeness, seed decay, skip penalty) -------------------------

REACTING = RankingParams(seed_weight=3.0, seed_decay=0.3, skip_penalty=0.3, lambda_=1.0)


def play(state: ListenerState, cat: Catalogue, pos: int, kind: str, ts: float) -> None:
    state.apply(
        uuid.uuid4().hex, track_id=cat.ids[pos], kind=kind, cluster=cat.clusters[pos], ts=ts, limits=LIMITS
    )


def share_of(picks: list[Pick], cluster: int) -> float:
    return sum(p.cluster == cluster for p in picks) / len(picks)


@pytest.mark.parametrize("params", [PREVIOUS, REACTING])
@given(seed=st.integers(0, 20), events=events_strategy)
@settings(max_examples=40, deadline=None)
def test_both_rankings_keep_the_lists_rules(
    params: RankingParams, seed: int, events: list[tuple[int, str, float]]
) -> None:
    cat = make_catalogue(40, 3, seed)
    state = build_state(cat, events)
    picks = recommend(state, cat, {}, {}, k=8, now=7200.0, half_life_s=600.0, params=params)
    ids = [p.track_id for p in picks]
    assert not set(ids) & (set(state.recent) | set(state.skipped))
    assert len(ids) == len(set(ids)) == min(8, len(set(cat.ids) - set(state.recent) - set(state.skipped)))


def test_a_scripted_listener_who_changes_taste_is_followed_after_one_play() -> None:
    """Ten tracks of cluster 0 completed, then one of cluster 1: the reacting ranking's list is
    mostly cluster 1 at once, the shipped one stays on cluster 0 (its affinity dominates)."""
    cat = make_catalogue(300, 3, seed=1, dims=20)  # a model's space has tens of dimensions
    state, ts = ListenerState(), 0.0
    for pos in range(0, 30, 3):  # cluster 0
        play(state, cat, pos, "play", ts)
        play(state, cat, pos, "complete", ts + 200)
        ts += 205
    play(state, cat, 1, "play", ts)  # cluster 1
    play(state, cat, 1, "complete", ts + 200)
    now = ts + 200
    reacting = recommend(state, cat, {}, {}, k=10, now=now, half_life_s=600.0, params=REACTING)
    shipped = recommend(state, cat, {}, {}, k=10, now=now, half_life_s=600.0)
    assert share_of(reacting, 1) > 0.5 > share_of(shipped, 1)


def test_right_after_a_skip_its_cluster_steps_back_and_comes_back_with_the_next_play() -> None:
    cat = make_catalogue(300, 3, seed=2, dims=20)
    state, ts = ListenerState(), 0.0
    for pos in range(0, 60, 3):  # a loyal cluster-0 listener with a little cluster-1 history
        play(state, cat, pos, "play", ts)
        play(state, cat, pos, "complete", ts + 200)
        ts += 205
    play(state, cat, 4, "play", ts)
    play(state, cat, 4, "complete", ts + 200)
    ts += 205
    play(state, cat, 60, "play", ts)
    before = recommend(state, cat, {}, {}, k=10, now=ts, half_life_s=600.0, params=REACTING)
    assert share_of(before, 0) == 1.0
    play(state, cat, 60, "skip", ts + 5)  # a cluster-0 track skipped
    assert skipped_cluster(state, cat) == 0
    after = recommend(state, cat, {}, {}, k=10, now=ts + 5, half_life_s=600.0, params=REACTING)
    others = [p for p in after if p.cluster != 0]
    assert len(others) >= SKIP_ROOM and share_of(after, 0) < share_of(before, 0)
    shipped = recommend(state, cat, {}, {}, k=10, now=ts + 5, half_life_s=600.0)
    assert share_of(shipped, 0) == 1.0  # without a skip penalty, nothing steps back
    play(state, cat, 63, "play", ts + 10)  # the next track: the skip is behind
    assert skipped_cluster(state, cat) is None
    again = recommend(state, cat, {}, {}, k=10, now=ts + 10, half_life_s=600.0, params=REACTING)
    assert share_of(again, 0) == 1.0


def test_make_room_keeps_k_tracks_and_only_adds_what_it_must() -> None:
    def pick(track: int, cluster: int, score: float) -> Pick:
        return Pick(track, score, "r", cluster)

    picked = [pick(i, 0, 10.0 - i) for i in range(5)]
    found = dict(enumerate([*picked, pick(50, 1, 0.5), pick(51, 2, 0.7), pick(52, 1, 0.1)]))
    room = make_room(picked, found, 0, k=5)
    assert [p.track_id for p in room] == [0, 1, 2, 51, 50]
    assert make_room(room, found, 0, k=5) == room  # already room: unchanged
    assert make_room(picked, dict(enumerate(picked)), 0, k=5) == picked  # nothing to add


def test_a_skipped_track_played_again_is_no_longer_a_skip() -> None:
    cat = make_catalogue(60, 3, seed=3, dims=20)
    state = ListenerState()
    play(state, cat, 0, "play", 0.0)
    play(state, cat, 0, "skip", 5.0)
    assert skipped_cluster(state, cat) == 0 and cat.ids[0] in state.skipped
    play(state, cat, 0, "play", 60.0)  # the listener comes back to it
    assert skipped_cluster(state, cat) is None and cat.ids[0] not in state.skipped
    picks = recommend(state, cat, {}, {}, k=10, now=60.0, half_life_s=600.0, params=REACTING)
    assert cat.ids[0] not in {p.track_id for p in picks}  # still recent: not offered
    # Relative closeness is measured from the nearest track that may be offered, not from the
    # listener's own track at distance 0: "more from your mix" keeps its weight (0.5 x 0.2+).
    mix_only = dataclasses.replace(REACTING, seed_weight=0.0)
    picks = recommend(state, cat, {}, {}, k=10, now=60.0, half_life_s=600.0, params=mix_only)
    mix = [p for p in picks if p.reason == "more from your mix"]
    assert mix and all(p.score > 1.1 for p in mix), picks
