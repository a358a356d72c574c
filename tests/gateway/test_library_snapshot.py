"""The gateway's first catalogue load from the model's catalogue snapshot: the same answers as a
scan of the same tracks, the feed reading the track topics back from the snapshot's offsets
(and refusing them when the broker no longer holds those records), and, on the real stack,
a gateway's library and feed starting together from a snapshot, or scanning without one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pymongo.database import Database

from gateway import library as library_module
from gateway.feed import Feed
from gateway.hub import Hub
from gateway.library import SCAN, SNAPSHOT, Library, load_index, load_index_from_snapshot
from gateway.track_index import Change, TrackIndex
from gateway.track_json import Track
from gateway.word_index import words
from infra.prometheus import samples
from infra.settings import Settings
from schemas.catalogue_snapshot import SnapshotError, SnapshotRow, build_snapshot, snapshot_path
from schemas.cluster_model import export_path
from schemas.codec import encode, encode_key
from schemas.events import TrackAssigned, TrackEvent
from schemas.topics import RECOMMENDATIONS, TRACKS_ASSIGNED, TRACKS_NEW
from tests._vectors import model_518
from tests.gateway.test_library import doc, features, promote

Db = Database[dict[str, Any]]
VERSION = "v-vectors"  # promote()'s
MODEL = dataclasses.replace(model_518(0), version=VERSION)

#: (id, title, artist, album, genre_top, genres, duration_s, has features)
CATALOGUE: list[tuple[int, str, str, str, str | None, list[int], float, bool]] = [
    (7, "Love Song", "The Cure", "Disintegration", "Rock", [12], 201.5, True),
    (3, "Lovely Day", "Bill Withers", "Menagerie", "Soul", [14], 255.0, True),
    (12, "Glove", "Beyoncé", "", "Pop", [10], 180.0, True),
    (5, "Ágætis byrjun", "Sigur Rós", "Ágætis byrjun", "Rock", [12, 45], 600.0, True),
    (9, "Song 2", "Blur", "Blur", "Rock", [12], 122.0, True),
    (20, "Untitled", "", "", None, [], 0.0, False),
    (15, "Halo", "BEYONCE", "I Am... Sasha Fierce", "Pop", [10], 261.0, True),
    (31, "Straße\u00a0der Ölsardinen", "Die Ärzte", "Le Frisur", "Punk", [25], 99.0, True),
    (32, "ΣΑΣ ΟΔΟΣ", "Χαΐνηδες", "Ωδή", None, [], 180.0, True),
    (33, "東京事変 Live", "椎名林檎", "加爾基 精液 栗ノ花", "Pop", [10], 240.0, True),
    (34, "Ǆemal¨s  ﷺ song", "Ⅻ Ǆ", "ﬁne", "Folk", [17], 150.0, False),
    (35, "Love", "The Cure", "Wish", "Rock", [12], 201.0, True),
    *[
        (100 + i, f"Song {i} of love", f"Band {i % 4}", f"Album {i % 3}", "Rock", [12], 100.0 + i, True)
        for i in range(24)
    ],
]


def stored() -> list[dict[str, Any]]:
    """CATALOGUE as ``tracks`` documents with audio, placed tracks in the model's cluster."""
    docs = []
    for tid, title, artist, album, genre, genres, duration, has in CATALOGUE:
        cluster = int(MODEL.assign(np.asarray([features(tid)]))[0]) if has else None
        fields = {
            "audio_path": f"{tid:06d}.mp3",
            "artist": artist,
            "album": album,
            "genre_top": genre,
            "genres": genres,
            "duration_s": duration,
        }
        d = doc(tid, title, cluster, **fields)
        d["features"] = d["features"] if has else None
        docs.append(d)
    return docs


def write_snapshot(
    models: Path,
    tracks: list[tuple[int, str, str, str, str | None, list[int], float, bool]],
    offsets: dict[str, dict[int, int]] | None,
) -> Path:
    """The snapshot the registry writes of ``tracks`` for the promoted model."""
    placed = [t[7] for t in tracks]
    matrix = np.asarray([features(t[0]) for t in tracks if t[7]], dtype=np.float64)
    meta = [[t[1], t[2], t[3], t[4], t[5], t[6]] for t in tracks]
    snap = build_snapshot(
        MODEL, [t[0] for t in tracks], matrix, placed, meta, offsets=offsets, created="2026-12-05T00:00:00Z"
    )
    return snap.save(snapshot_path(models, VERSION))


class Scanned:
    """What :func:`load_index` reads of a database: ``tracks.find`` (the documents as stored)."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.tracks = SimpleNamespace(find=lambda *args, **kwargs: iter(docs))


# --- the index a snapshot makes ------------------------------------------------------------------


def test_a_snapshot_index_answers_as_a_scan_of_the_same_tracks(tmp_path: Path) -> None:
    promote(tmp_path)
    write_snapshot(tmp_path, CATALOGUE, None)
    scan = load_index(Scanned(stored()), tmp_path, VERSION, threading.Event())  # type: ignore[arg-type]
    snap = load_index_from_snapshot(tmp_path, VERSION)
    assert (
        (len(snap), snap.placed(), snap.version) == (len(scan), scan.placed(), VERSION) == (36, 34, VERSION)
    )
    ids = [t[0] for t in CATALOGUE]
    assert [snap.one(i) for i in ids] == [scan.one(i) for i in ids]
    assert snap.genres() == scan.genres()
    queries = {w[:n] for t in CATALOGUE for text in t[1:4] for w in words(text) for n in (1, 2, 4, 5, 32)}
    for q in sorted(queries | {"love so", "beyonce", "strasse", "σας", "aegir", "dzemal", "fine", "xii"}):
        assert snap.search(q, None, None, page=1, per_page=100) == scan.search(
            q, None, None, page=1, per_page=100
        )
    for args in [
        (None, "Rock", None),
        ("love", "Rock", None),
        (None, None, "beyoncé"),
        (None, None, "the cure"),
    ]:
        for page in (1, 2):
            assert snap.search(*args, page=page, per_page=3) == scan.search(*args, page=page, per_page=3)
    for i in ids:
        a, b = scan.similar(i, 10), snap.similar(i, 10)
        assert a is not None and b is not None
        assert [t["track_id"] for t in b["items"]] == [t["track_id"] for t in a["items"]]
        assert {k: v for k, v in b.items() if k != "items"} == {k: v for k, v in a.items() if k != "items"}
        # float32 coordinates in the snapshot: the distances agree to float32's precision
        np.testing.assert_allclose(
            [t["distance"] for t in b["items"]], [t["distance"] for t in a["items"]], rtol=1e-5, atol=2e-6
        )
    assert scan.similar(20, 10) == snap.similar(20, 10) == {"items": []}  # no features: not placed


def test_a_snapshot_index_takes_changes_as_a_scanned_one(tmp_path: Path) -> None:
    promote(tmp_path)
    write_snapshot(tmp_path, CATALOGUE, None)
    scan = load_index(Scanned(stored()), tmp_path, VERSION, threading.Event())  # type: ignore[arg-type]
    snap = load_index_from_snapshot(tmp_path, VERSION)
    moves: list[Any] = [
        TrackAssigned(track_id=7, cluster=2, model_version=VERSION),
        TrackEvent(track_id=7, title="Love Song (live)", artist="The Cure", features=features(70)),
        TrackEvent(track_id=500, title="New love", genre_top="Jazz", features=features(500)),
        TrackAssigned(track_id=500, cluster=1, model_version=VERSION),
    ]
    for index in (scan, snap):
        for message in moves:
            index.apply(Change.arrival(message) if isinstance(message, TrackEvent) else message)
    assert snap.one(7) == scan.one(7) and snap.one(500) == scan.one(500)
    assert snap.search("love", None, None, page=1, per_page=50) == scan.search(
        "love", None, None, page=1, per_page=50
    )
    assert snap.genres() == scan.genres()
    for i in (7, 500, 3):
        assert [t["track_id"] for t in snap.similar(i, 20)["items"]] == [  # type: ignore[index]
            t["track_id"]
            for t in scan.similar(i, 20)["items"]  # type: ignore[index]
        ]


def test_snapshot_rows_have_tracks_fields_in_tracks_order() -> None:
    """:meth:`TrackIndex.fill` takes a snapshot's rows as tracks: the same fields, in order
    (whether a track has audio included)."""
    assert SnapshotRow._fields == Track._fields


@hypothesis_settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_a_texts_words_are_its_whitespace_separated_parts_words(text: str) -> None:
    """What :meth:`TrackIndex.fill` relies on to find a title's words a part at a time."""
    assert [w for part in text.split() for w in words(part)] == words(text)


def test_fill_builds_only_an_empty_index_of_distinct_tracks() -> None:
    index = TrackIndex(None)
    index.fill([Track(1, "a"), Track(2, "b")], None, [False, False])
    with pytest.raises(ValueError, match="empty"):
        index.fill([Track(3, "c")], None, [False])
    with pytest.raises(ValueError, match="repeated"):
        TrackIndex(None).fill([Track(1, "a"), Track(1, "b")], None, [False, False])
    with pytest.raises(ValueError, match="shape"):
        TrackIndex(model_518()).fill([Track(1, "a", cluster=0)], np.zeros((1, 3)), [True])


def test_a_snapshot_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    promote(tmp_path)
    with pytest.raises(SnapshotError, match="no catalogue snapshot"):
        load_index_from_snapshot(tmp_path, VERSION)
    new, assigned = "cadenza.tracks.new", "cadenza.tracks.assigned"
    write_snapshot(tmp_path, CATALOGUE[:3], {new: {0: 5, 1: 2}, assigned: {0: 1}})
    # the feed reads on from later offsets than the snapshot covers (re-written since): not used
    with pytest.raises(SnapshotError, match="not covered"):
        load_index_from_snapshot(tmp_path, VERSION, {new: {0: 6, 1: 2}, assigned: {}})
    assert len(load_index_from_snapshot(tmp_path, VERSION, {new: {0: 5, 1: 0}, assigned: {}})) == 3
    other = dataclasses.replace(model_518(0, n_components=5), version=VERSION)
    other.save(export_path(tmp_path, VERSION))
    with pytest.raises(SnapshotError, match="dimensions"):
        load_index_from_snapshot(tmp_path, VERSION)


# --- the hand-off with the feed (no broker) ----------------------------------------------------


class SeekingConsumer:
    """What ``Feed._seek`` asks of a consumer: offsets by time, log starts and ends, seeks."""

    def __init__(self, firsts: dict[Any, int], ends: dict[Any, int]) -> None:
        self.firsts, self.ends, self.at = firsts, ends, {}
        self.asked_firsts = 0

    async def offsets_for_times(self, times: dict[Any, int]) -> dict[Any, Any]:
        return {tp: SimpleNamespace(offset=1) for tp in times}

    async def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        self.asked_firsts += 1
        return {tp: self.firsts[tp] for tp in tps}

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: self.ends[tp] for tp in tps}

    def seek(self, tp: Any, offset: int) -> None:
        self.at[tp] = offset


def feed_with_snapshot(
    tmp_path: Path, offsets: dict[str, dict[int, int]] | None
) -> tuple[Feed, Library, list[TopicPartition]]:
    settings = Settings(data_dir=tmp_path, model_dir=tmp_path / "models")
    promote(settings.models_path)
    new, assigned = settings.topic(TRACKS_NEW), settings.topic(TRACKS_ASSIGNED)
    if offsets is not None:
        write_snapshot(
            settings.models_path, CATALOGUE[:2], {new: offsets["new"], assigned: offsets["assigned"]}
        )
    library = Library(settings)
    feed = Feed(settings, Hub(queue_size=8), library=library)
    tps = [
        TopicPartition(settings.topic(RECOMMENDATIONS), 0),
        TopicPartition(new, 0),
        TopicPartition(new, 1),
        TopicPartition(assigned, 0),
    ]
    return feed, library, tps


def test_the_first_seek_reads_the_track_topics_back_from_the_snapshots_offsets(tmp_path: Path) -> None:
    feed, library, (reco, new0, new1, assigned0) = feed_with_snapshot(
        tmp_path, {"new": {0: 4}, "assigned": {0: 2}}
    )
    consumer = SeekingConsumer(
        {reco: 0, new0: 0, new1: 0, assigned0: 2}, {reco: 5, new0: 9, new1: 3, assigned0: 2}
    )
    replaying, catching_up = asyncio.run(feed._seek(consumer, [reco, new0, new1, assigned0]))
    # new[1] is not in the snapshot: from its beginning; the lists as before (by time)
    assert consumer.at == {reco: 1, new0: 4, new1: 0, assigned0: 2}
    assert replaying == {reco: 5, new0: 9, new1: 3} and catching_up == {reco: 5}
    assert feed.positions == {new0: 4, new1: 0, assigned0: 2}
    assert library.snapshot_offsets() is not None and library._backlog == []  # kept for the first load
    consumer.at.clear()
    asyncio.run(feed._seek(consumer, [reco, new0, new1, assigned0]))  # a reconnection: where it was
    assert consumer.at[new0] == 4 and consumer.asked_firsts == 1


@pytest.mark.parametrize(
    ("firsts", "ends"),
    [
        ({0: 5, 1: 0}, {0: 9, 1: 3}),  # records of new[0] deleted by retention since the snapshot
        ({0: 0, 1: 1}, {0: 9, 1: 3}),  # new[1], which the snapshot does not name, too
        ({0: 0, 1: 0}, {0: 3, 1: 3}),  # new[0] ends before the snapshot's offset: recreated
    ],
)
def test_offsets_the_broker_no_longer_holds_make_the_first_load_scan(
    tmp_path: Path, firsts: dict[int, int], ends: dict[int, int]
) -> None:
    feed, library, (reco, new0, new1, assigned0) = feed_with_snapshot(
        tmp_path, {"new": {0: 4}, "assigned": {}}
    )
    consumer = SeekingConsumer(
        {reco: 0, new0: firsts[0], new1: firsts[1], assigned0: 0},
        {reco: 5, new0: ends[0], new1: ends[1], assigned0: 0},
    )
    asyncio.run(feed._seek(consumer, [reco, new0, new1, assigned0]))
    assert consumer.at == {reco: 1, new0: 1, new1: 1, assigned0: 1}  # TRACKS_REPLAY_S back, as a scan needs
    assert library._refused is not None and library.snapshot_offsets() is None
    assert asyncio.run(library._from_snapshot(VERSION)) is None


def test_without_a_snapshot_the_feed_reads_a_minute_back(tmp_path: Path) -> None:
    feed, library, (reco, new0, new1, assigned0) = feed_with_snapshot(tmp_path, None)
    consumer = SeekingConsumer(
        dict.fromkeys([reco, new0, new1, assigned0], 0), dict.fromkeys([reco, new0, new1, assigned0], 5)
    )
    asyncio.run(feed._seek(consumer, [reco, new0, new1, assigned0]))
    assert consumer.at == dict.fromkeys([reco, new0, new1, assigned0], 1) and consumer.asked_firsts == 0
    assert library.snapshot_offsets() is None and library._refused is None


def test_a_refusal_after_the_snapshot_went_live_makes_a_scan_follow(tmp_path: Path) -> None:
    """The broker was unreachable at start: the snapshot's index answers, then the feed finds
    the offsets gone and a scan replaces it."""
    lib = Library(Settings(data_dir=tmp_path))
    lib.index, lib.source, lib.current = TrackIndex(None, VERSION), SNAPSHOT, VERSION
    lib.loaded_at = time.monotonic()
    assert not lib._due()
    lib.refuse_snapshot("gone")
    assert lib._due()
    lib.source = SCAN
    assert not lib._due()


def test_what_the_feed_sends_before_the_first_load_and_while_it_fails_reaches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed may read (from the snapshot's offsets) before the first load begins, and
    while a first load that failed waits to try again: all of it reaches the index, in order."""
    settings = Settings(data_dir=tmp_path, model_dir=tmp_path / "models")
    promote(settings.models_path)
    new, assigned = settings.topic(TRACKS_NEW), settings.topic(TRACKS_ASSIGNED)
    write_snapshot(
        settings.models_path, [t for t in CATALOGUE if t[0] in (7, 3, 12)], {new: {}, assigned: {}}
    )
    lib = Library(settings)
    assert lib.snapshot_offsets() == {new: {}, assigned: {}}  # the feed's first seek
    cluster = stored()[2]["cluster"]  # track 12's
    lib.apply(TrackAssigned(track_id=12, cluster=(cluster + 1) % 3, model_version=VERSION))
    lib.apply(TrackEvent(track_id=200, title="Announced", features=features(200)))

    def down(*args: Any) -> TrackIndex:
        raise ConnectionError("MongoDB down")

    monkeypatch.setattr(library_module, "load_index_from_snapshot", down)
    monkeypatch.setattr(library_module, "load_index", down)
    lib.current = VERSION
    with pytest.raises(ConnectionError):
        asyncio.run(lib._load(None))  # type: ignore[arg-type]
    assert lib.index is None and lib._backlog is not None and len(lib._backlog) == 2
    lib.apply(TrackAssigned(track_id=12, cluster=(cluster + 2) % 3, model_version=VERSION))
    monkeypatch.undo()
    monkeypatch.setattr(library_module, "load_index", lambda *args: load_index_from_snapshot(*args[1:3]))
    asyncio.run(lib._load(None))  # type: ignore[arg-type]
    assert lib.index is not None and lib.source == SCAN and lib._backlog is None
    assert lib.index.one(12)["cluster"] == (cluster + 2) % 3  # type: ignore[index]
    assert 200 in lib.index and len(lib.index) == 4


def test_a_snapshot_that_fails_to_load_or_of_another_model_makes_the_first_load_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, model_dir=tmp_path / "models")
    promote(settings.models_path)
    offsets = {settings.topic(TRACKS_NEW): {0: 1}, settings.topic(TRACKS_ASSIGNED): {0: 1}}
    write_snapshot(settings.models_path, CATALOGUE[:2], offsets)
    scanned = TrackIndex(None, VERSION)
    scanned.fill([Track(99, "Scanned")], None, [False])
    monkeypatch.setattr(library_module, "load_index", lambda *args, **kwargs: scanned)

    def broken(*args: Any) -> TrackIndex:
        raise zipfile.BadZipFile("truncated")  # what numpy raises for a cut file: not a SnapshotError

    async def first_load(current: str) -> Library:
        lib = Library(settings)
        lib.current = current
        await lib._load(None)  # type: ignore[arg-type]
        return lib

    monkeypatch.setattr(library_module, "load_index_from_snapshot", broken)
    lib = asyncio.run(first_load(VERSION))
    assert lib.index is scanned and lib.source == SCAN
    assert lib._refused == "BadZipFile: truncated" and lib.snapshot_offsets() is None  # not tried again
    monkeypatch.undo()
    monkeypatch.setattr(library_module, "load_index", lambda *args, **kwargs: scanned)
    lib = asyncio.run(first_load("promoted-since"))
    assert lib.index is scanned and lib.source == SCAN
    lib = asyncio.run(first_load(VERSION))
    assert lib.index is not None and lib.source == SNAPSHOT and len(lib.index) == 2
    assert lib.status()["source"] == SNAPSHOT
    metrics = samples(lib)  # type: ignore[arg-type]
    assert metrics['cadenza_gateway_catalogue_source{source="snapshot"}'] == 1
    assert metrics['cadenza_gateway_catalogue_source{source="scan"}'] == 0


# --- a gateway's library and feed on the real stack --------------------------------------------


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from kafka import TopicPartition as KafkaPartition

    from infra.kafka_clients import consumer

    c = consumer(settings, group_id=None)
    try:
        parts = [KafkaPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        assert parts, topic
        return {tp.partition: int(o) for tp, o in c.end_offsets(parts).items()}
    finally:
        c.close()


def send(settings: Settings, *messages: TrackEvent | TrackAssigned) -> None:
    from infra.kafka_clients import producer

    with contextlib.closing(producer(settings)) as p:
        for m in messages:
            topic = TRACKS_NEW if isinstance(m, TrackEvent) else TRACKS_ASSIGNED
            p.send(settings.topic(topic), key=encode_key(m.track_id), value=encode(m))
        p.flush()


@contextlib.asynccontextmanager
async def gateway(settings: Settings, db: Db) -> AsyncIterator[tuple[Library, Feed]]:
    """A library and a feed started as :mod:`gateway.app` starts them (the feed first)."""
    library = Library(settings)
    feed = Feed(settings, Hub(queue_size=8), library=library)
    tasks = [asyncio.create_task(feed.run()), asyncio.create_task(library.run(lambda: db))]
    try:
        yield library, feed
    finally:
        library.stop()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(library: Library, done: Callable[[TrackIndex], bool], timeout: float = 60.0) -> TrackIndex:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        index = library.index
        if index is not None and done(index):
            return index
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached in {timeout:.0f} s: {library.status()}")


def stack_settings(topics: Settings, tmp_path: Path) -> Settings:
    settings = topics.model_copy(update={"model_dir": tmp_path / "models"})
    promote(settings.models_path)
    return settings


@pytest.mark.stack
def test_a_gateway_starts_from_the_snapshot_and_reads_on_from_its_offsets(
    topics: Settings, db: Db, tmp_path: Path
) -> None:
    settings = stack_settings(topics, tmp_path)
    stored_docs = {d["_id"]: d for d in stored()}
    db.tracks.insert_many([stored_docs[7], stored_docs[3]])  # 12 is only in the snapshot
    send(settings, TrackEvent(track_id=50, title="Announced before the snapshot", features=features(50)))
    new, assigned = settings.topic(TRACKS_NEW), settings.topic(TRACKS_ASSIGNED)
    covered = {new: end_offsets(settings, new), assigned: end_offsets(settings, assigned)}
    write_snapshot(settings.models_path, [t for t in CATALOGUE if t[0] in (7, 3, 12)], covered)
    cluster_12 = stored_docs[12]["cluster"]
    moved = (cluster_12 + 1) % 3
    send(
        settings,
        TrackEvent(track_id=200, title="Announced after the snapshot", artist="Late", features=features(200)),
        TrackAssigned(track_id=12, cluster=moved, model_version=VERSION),
    )

    async def scenario() -> tuple[Library, TrackIndex]:
        async with gateway(settings, db) as (library, _):
            index = await until(library, lambda i: 200 in i and i.one(12)["cluster"] == moved)  # type: ignore[index]
            send(settings, TrackEvent(track_id=300, title="Announced live", features=features(300)))
            await until(library, lambda i: 300 in i)
            return library, index

    library, index = asyncio.run(scenario())
    assert library.status()["source"] == SNAPSHOT and library.loads == 1 and library.index is index
    assert index.one(12)["title"] == "Glove"  # type: ignore[index]  # from the file: MongoDB never held it
    assert index.one(200)["cluster"] is None  # type: ignore[index]  # placed, waiting for tracks.assigned
    assert [t["track_id"] for t in index.search("announced", None, None, page=1, per_page=10)["items"]] == [
        200,
        300,
    ]
    assert 50 not in index  # before the snapshot's offsets (and in neither): not read back
    assert index.placed() == 5 and library._backlog is None
    near = index.similar(12, 10)
    assert near is not None and near["cluster"] == moved


@pytest.mark.stack
def test_records_deleted_since_the_snapshot_make_the_first_load_scan(
    topics: Settings, db: Db, tmp_path: Path
) -> None:
    from kafka import TopicPartition as KafkaPartition

    from infra.kafka_clients import admin

    settings = stack_settings(topics, tmp_path)
    stored_docs = {d["_id"]: d for d in stored()}
    db.tracks.insert_many([stored_docs[7], stored_docs[3]])
    new, assigned = settings.topic(TRACKS_NEW), settings.topic(TRACKS_ASSIGNED)
    covered = {new: end_offsets(settings, new), assigned: end_offsets(settings, assigned)}
    write_snapshot(settings.models_path, [t for t in CATALOGUE if t[0] in (7, 3, 12)], covered)
    send(
        settings,
        *[TrackEvent(track_id=60 + i, title=f"Deleted {i}", features=features(60)) for i in range(6)],
    )
    ends = end_offsets(settings, new)
    client = admin(settings)
    try:
        client.delete_records({KafkaPartition(new, p): o for p, o in ends.items() if o > 0})
    finally:
        client.close()

    async def scenario() -> Library:
        async with gateway(settings, db) as (library, _):
            # (the snapshot's index may answer first, when its load ends before the feed's first seek)
            await until(library, lambda i: library.source == SCAN)
            send(settings, TrackEvent(track_id=300, title="Announced live", features=features(300)))
            await until(library, lambda i: 300 in i)
            return library

    library = asyncio.run(scenario())
    assert library.status()["source"] == SCAN and library._refused is not None
    assert library.index is not None and 12 not in library.index and 3 in library.index


@pytest.mark.stack
@pytest.mark.parametrize("snapshot", ["none", "without offsets"])
def test_without_a_usable_snapshot_the_first_load_scans_and_reads_a_minute_back(
    topics: Settings, db: Db, tmp_path: Path, snapshot: str
) -> None:
    settings = stack_settings(topics, tmp_path)
    stored_docs = {d["_id"]: d for d in stored()}
    db.tracks.insert_many([stored_docs[7], stored_docs[3]])
    if snapshot == "without offsets":
        write_snapshot(settings.models_path, [t for t in CATALOGUE if t[0] in (7, 3, 12)], None)
    send(settings, TrackEvent(track_id=50, title="Announced a moment ago", features=features(50)))

    async def scenario() -> Library:
        async with gateway(settings, db) as (library, _):
            await until(library, lambda i: 50 in i and 7 in i)
            return library

    library = asyncio.run(scenario())
    assert library.status()["source"] == SCAN and library.loads == 1
    assert library.index is not None and 12 not in library.index and len(library.index) == 3
