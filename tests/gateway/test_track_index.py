"""The in-memory catalogue: search (words, prefixes, accents, filters, pages, totals), genre counts,
changes from tracks.new / tracks.assigned, and similar tracks equal to a brute-force numpy answer."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.track_index import Change, TrackIndex
from gateway.track_json import MAX_PER_PAGE, Track, nearest
from gateway.word_index import query_words, words
from schemas.events import TrackAssigned, TrackEvent
from schemas.features import N_FEATURES
from tests._vectors import model_518

TRACKS = [
    Track(7, "Love Song", "The Cure", "Disintegration", "Rock", (12,), 201.5, 0),
    Track(3, "Lovely Day", "Bill Withers", "Menagerie", "Soul", (14,), 255.0, 1),
    Track(12, "Glove", "Beyoncé", "", "Pop", (10,), 180.0, 0),
    Track(5, "Ágætis byrjun", "Sigur Rós", "Ágætis byrjun", "Rock", (12, 45), 600.0, 2),
    Track(9, "Song 2", "Blur", "Blur", "Rock", (12,), 122.0, 1),
    Track(20, "Untitled", "", "", None, (), 0.0, None),
    Track(15, "Halo", "BEYONCE", "I Am... Sasha Fierce", "Pop", (10,), 261.0, 2),
]


def index_of(tracks: list[Track], seed: int = 0) -> TrackIndex:
    index = TrackIndex(model_518(seed), "v-vectors")
    rng = np.random.default_rng(seed)
    features = rng.normal(0, 50, (len(tracks), N_FEATURES)).astype(np.float32)
    index.add_many(tracks, index.coords(features), [True] * len(tracks))
    index.settle()
    return index


def ids(answer: dict[str, Any]) -> list[int]:
    return [t["track_id"] for t in answer["items"]]


def search(
    index: TrackIndex, q: str | None = None, genre: str | None = None, artist: str | None = None, **page: int
) -> dict[str, Any]:
    return index.search(q, genre, artist, page=page.get("page", 1), per_page=page.get("per_page", 50))


def test_every_word_must_begin_a_word_of_the_title_artist_or_album() -> None:
    index = index_of(TRACKS)
    assert ids(search(index, "love")) == [3, 7]  # in id order, as MongoDB's path
    assert ids(search(index, "lov")) == [3, 7]
    assert ids(search(index, "song")) == [7, 9]
    assert ids(search(index, "song cure")) == [7]  # words from the title and the artist
    assert ids(search(index, "ove")) == []  # prefixes of words, not substrings
    assert ids(search(index, "beyonce")) == [12, 15]  # accents and case aside
    assert ids(search(index, "BEYONCÉ")) == [12, 15]
    assert ids(search(index, "agaetis ROS")) == [5]
    assert ids(search(index, "sasha fier")) == [15]
    assert ids(search(index, ".*")) == [] and ids(search(index, "$where")) == []
    assert search(index, "")["total"] == len(TRACKS)  # no text: every track
    assert ids(search(index, "love", genre="Soul")) == [3]
    assert ids(search(index, genre="Rock")) == [5, 7, 9]
    assert ids(search(index, genre="rock")) == []  # the genre is exact
    assert ids(search(index, artist="beyonce")) == [12, 15]  # the whole name, case and accents aside
    assert ids(search(index, artist="beyon")) == []
    assert ids(search(index, "halo", genre="Pop", artist="Beyoncé")) == [15]


def test_pages_and_totals() -> None:
    tracks = [Track(i, f"Song {i}", "Band A" if i % 2 else "Band B", "", "Rock") for i in range(1, 13)]
    index = index_of(tracks)
    first = search(index, "song", per_page=5)
    assert (first["total"], first["page"], first["per_page"], ids(first)) == (12, 1, 5, [1, 2, 3, 4, 5])
    assert ids(search(index, "song", page=3, per_page=5)) == [11, 12]
    assert (
        ids(search(index, "song", page=4, per_page=5)) == [] and search(index, "song", page=4)["total"] == 12
    )
    assert search(index, "song", page=0, per_page=0)["per_page"] == 1  # bounds as MongoDB's path
    assert search(index, "song", per_page=10**6)["per_page"] == MAX_PER_PAGE
    assert ids(search(index, "song 1")) == [1, 10, 11, 12]
    assert search(index, "band b")["total"] == 12  # "b" begins "band" too
    assert search(index, artist="band b")["total"] == 6
    item = search(index, "song 3")["items"][0]
    assert item == {
        "track_id": 3,
        "title": "Song 3",
        "artist": "Band A",
        "album": "",
        "genre_top": "Rock",
        "genres": [],
        "duration_s": 0.0,
        "cluster": None,
        "audio_url": "/audio/3",
        "playable": True,
    }


def test_genre_counts_follow_new_and_changed_tracks() -> None:
    index = index_of(TRACKS)
    assert index.genres() == {
        "items": [
            {"genre": "Rock", "tracks": 3},
            {"genre": "Pop", "tracks": 2},
            {"genre": "Soul", "tracks": 1},
        ]
    }
    index.apply(Change(Track(30, "New", genre_top="Soul"), None))
    index.apply(Change(TRACKS[0]._replace(genre_top="Soul"), None))  # 7: Rock -> Soul
    assert index.genres()["items"] == [
        {"genre": "Soul", "tracks": 3},
        {"genre": "Pop", "tracks": 2},
        {"genre": "Rock", "tracks": 2},
    ]


def event(track_id: int, title: str, rng: np.random.Generator, **fields: Any) -> TrackEvent:
    features = rng.normal(0, 50, N_FEATURES).astype(np.float32).astype(float).tolist()
    return TrackEvent(track_id=track_id, title=title, features=features, **fields)


def test_tracks_new_adds_or_replaces_and_tracks_assigned_moves_clusters() -> None:
    index, rng = index_of(TRACKS), np.random.default_rng(1)
    index.apply(Change.arrival(event(40, "Brand New Day", rng, artist="Sting", genre_top="Pop")))
    assert ids(search(index, "brand")) == [40]
    assert index.one(40)["cluster"] is None  # type: ignore[index]
    assert index.similar(40, 5) == {"items": []}  # placed, waiting for its cluster
    assert index.apply(TrackAssigned(track_id=40, cluster=0, model_version="v-vectors"))
    assert index.one(40)["cluster"] == 0  # type: ignore[index]
    assert 40 in ids(index.similar(7, 10))  # type: ignore[arg-type]
    # A re-announced track keeps its cluster; its old words are gone.
    index.apply(Change.arrival(event(7, "Pictures of You", rng, artist="The Cure")))
    assert index.one(7)["cluster"] == 0  # type: ignore[index]
    assert ids(search(index, "love")) == [3] and ids(search(index, "pictures")) == [7]
    assert {"genre": "Rock", "tracks": 2} in index.genres()["items"]  # 7 has no genre now
    assert index.apply(TrackAssigned(track_id=7, cluster=2, model_version="v-vectors"))
    assert 7 not in ids(index.similar(12, 100))  # type: ignore[arg-type]
    assert 7 in ids(index.similar(15, 100))  # type: ignore[arg-type]
    assert not index.apply(TrackAssigned(track_id=999, cluster=1, model_version="v"))  # not here
    assert len(index) == len(TRACKS) + 1


def brute_force(tracks: list[Track], coords: np.ndarray, seed_id: int, limit: int) -> list[tuple[int, float]]:
    """The nearest tracks of the seed's cluster by a full sort (distance, then id)."""
    seed = next(i for i, t in enumerate(tracks) if t.track_id == seed_id)
    cluster = tracks[seed].cluster
    rows = [i for i, t in enumerate(tracks) if t.cluster == cluster and i != seed]
    d = {i: float(np.sqrt(((coords[i] - coords[seed]) ** 2).sum())) for i in rows}
    ranked = sorted(rows, key=lambda i: (d[i], tracks[i].track_id))
    return [(tracks[i].track_id, round(d[i], 6)) for i in ranked[: max(1, min(limit, MAX_PER_PAGE))]]


@pytest.mark.parametrize("limit", [1, 5, 20, 100, 10**6])
def test_similar_tracks_equal_a_brute_force_answer(limit: int) -> None:
    rng = np.random.default_rng(limit % 97)
    n = 400
    tracks = [Track(int(i), f"t{i}", cluster=int(rng.integers(0, 3))) for i in rng.permutation(5000)[:n]]
    features = rng.normal(0, 50, (n, N_FEATURES)).astype(np.float32)
    features[10] = features[11]  # equal distances: ordered by id
    index = TrackIndex(model_518(), "v-vectors")
    coords = index.coords(features)
    assert coords is not None
    index.add_many(tracks, coords, [True] * n)
    for seed in (tracks[0].track_id, tracks[10].track_id, tracks[-1].track_id):
        got = index.similar(seed, limit)
        assert got is not None and got["cluster"] == tracks[[t.track_id for t in tracks].index(seed)].cluster
        assert got["model_version"] == "v-vectors"
        assert [(t["track_id"], t["distance"]) for t in got["items"]] == brute_force(
            tracks, coords, seed, limit
        )
    assert index.similar(123_456, limit) is None  # not here: the caller asks MongoDB


@settings(max_examples=300, deadline=None)
@given(
    d=st.lists(st.integers(0, 5), min_size=1, max_size=60),
    limit=st.integers(0, 120),
    seed=st.integers(0, 59),
)
def test_nearest_by_partition_equals_a_full_sort(d: list[int], limit: int, seed: int) -> None:
    seed %= len(d)
    coords = np.asarray(d, dtype=np.float64)[:, None]
    track_ids = np.arange(len(d), dtype=np.int64)[::-1].copy()
    order, dist = nearest(track_ids, coords, seed, limit)
    full = sorted((i for i in range(len(d)) if i != seed), key=lambda i: (dist[i], track_ids[i]))
    assert order == full[: max(1, min(limit, MAX_PER_PAGE))]


def reference(tracks: list[Track], q: str) -> list[int]:
    """Tracks whose words begin with every word of ``q`` (a scan), by id."""
    wanted = query_words(q)
    found = []
    for t in tracks:
        have = words(t.title) + words(t.artist) + words(t.album)
        if all(any(h.startswith(w) for h in have) for w in wanted):
            found.append(t.track_id)
    return sorted(found) if wanted else []


WORDS = st.sampled_from(
    ["love", "Lové", "song", "SONG", "so", "l", "s", "ø", "Øst", "ost", "a", "b", "ab", "abc"]
)


@settings(max_examples=200, deadline=None)
@given(
    titles=st.lists(st.lists(WORDS, max_size=4).map(" ".join), min_size=1, max_size=30),
    q=st.lists(WORDS, min_size=1, max_size=3).map(" ".join),
)
def test_search_equals_a_scan_of_every_track(titles: list[str], q: str) -> None:
    tracks = [Track(100 - i, title, artist="a" if i % 3 else "") for i, title in enumerate(titles)]
    index = index_of(tracks)
    answer = search(index, q, per_page=100)
    assert ids(answer) == reference(tracks, q) and answer["total"] == len(ids(answer))


HOSTILE_TEXT = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["x" * 100_000, "a " * 50_000, "ﷺ" * 5_000, "\x00" * 1000, "é" * 10_000, "😀" * 10_000]),
)


@settings(max_examples=200, deadline=None)
@given(q=HOSTILE_TEXT, genre=st.none() | HOSTILE_TEXT, artist=st.none() | HOSTILE_TEXT)
def test_any_query_is_answered_quickly(q: str, genre: str | None, artist: str | None) -> None:
    index = index_of(TRACKS)
    started = time.perf_counter()
    answer = search(index, q, genre, artist, page=10**9 - 1, per_page=10**9 - 1)
    assert time.perf_counter() - started < 0.5
    assert answer["items"] == [] and answer["total"] <= len(TRACKS)
