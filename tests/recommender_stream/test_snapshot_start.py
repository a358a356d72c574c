"""Cold start from the model's catalogue snapshot instead of a scan of ``tracks`` (issue 24).

The snapshot's catalogue equals the scan's on the same tracks; a worker with a usable
snapshot answers plays of its tracks and of a track announced on ``tracks.new`` since the
snapshot's offsets, without reading MongoDB; a snapshot without offsets, of another model
or whose offsets retention deleted is passed over for the scan.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from pymongo.database import Database

from infra.kafka_clients import end_offsets
from infra.prometheus import parse_metrics
from infra.settings import Settings
from recommender_stream.app import SCAN, SNAPSHOT, _catalogue
from recommender_stream.catalogue import Catalogue
from recommender_stream.catalogue_loader import catalogue_from_snapshot, load_catalogue, replay_from
from schemas.catalogue_snapshot import CatalogueSnapshot, SnapshotError, build_snapshot, snapshot_path
from schemas.cluster_model import CURRENT_FILE, ClusterModel, export_path
from schemas.codec import decode, encode, encode_key
from schemas.events import DeadLetter, Recommendation, TrackEvent
from schemas.topics import DLQ, PLAYS, RECOMMENDATIONS, TRACKS_NEW
from tests._vectors import model_518
from tests.recommender_stream.conftest import Reader, Worker, play
from tests.streaming_jobs._catalogue import make_catalogue
from tests.streaming_jobs._plays import publish

Db = Database[dict[str, Any]]
CREATED = "2026-12-05T00:00:00Z"


def _model(version: str = "v-snap") -> ClusterModel:
    return dataclasses.replace(model_518(seed=4, n_components=4, k=3), version=version)


def _tracks() -> tuple[list[dict[str, Any]], int]:
    """A few tracks as MongoDB holds them (the usable ones first) and how many are usable."""
    catalogue = make_catalogue(n_genres=3, per_genre=6, unlabelled=0)
    for i, doc in enumerate(catalogue.docs):  # some with audio, some imported rows without
        doc["audio_path"] = f"{doc['_id']}.mp3" if i % 3 else None
    return catalogue.docs, catalogue.n_valid


def _snapshot(
    model: ClusterModel, docs: list[dict[str, Any]], n_valid: int, offsets: dict[str, dict[int, int]] | None
) -> CatalogueSnapshot:
    """The snapshot the registry writes of ``docs``: features as stored (float32)."""
    features = np.asarray([np.float32(d["features"]) for d in docs[:n_valid]], dtype=np.float64)
    meta = [[d.get("title", ""), f"artist {d['_id']}", "", d.get("genre_top"), [], 30.0] for d in docs]
    placed = [i < n_valid for i in range(len(docs))]
    ids = [d["_id"] for d in docs]
    playable = [bool(d.get("audio_path")) for d in docs]
    return build_snapshot(
        model, ids, features, placed, meta, offsets=offsets, created=CREATED, playable=playable
    )


def _promote(settings: Settings, model: ClusterModel) -> None:
    model.save(export_path(settings.models_path, model.version))
    (settings.models_path / CURRENT_FILE).write_text(model.version + "\n", encoding="utf-8")


def _by_id(catalogue: Catalogue) -> dict[int, tuple[int, str, list[float], bool]]:
    coords = catalogue.coords(list(range(len(catalogue))))
    return {
        t: (catalogue.clusters[i], catalogue.titles[i], coords[i].tolist(), catalogue.playable[i])
        for i, t in enumerate(catalogue.ids)
    }


# --- the catalogue from the arrays --------------------------------------------------------


@pytest.mark.stack
def test_the_snapshots_catalogue_is_the_scans(db: Db) -> None:
    model = _model()
    docs, n_valid = _tracks()
    db.tracks.insert_many(docs)
    scanned = load_catalogue(db, model)
    loaded = catalogue_from_snapshot(_snapshot(model, docs, n_valid, None), model)
    assert (
        (loaded.tracks, loaded.left_out)
        == (scanned.tracks, scanned.left_out)
        == (n_valid, len(docs) - n_valid)
    )
    assert loaded.catalogue.version == model.version and loaded.catalogue.dims == 4
    want, got = _by_id(scanned.catalogue), _by_id(loaded.catalogue)
    assert sorted(got) == sorted(want)
    for track_id, (cluster, title, coords, playable) in want.items():
        assert got[track_id][:2] == (cluster, title) and got[track_id][3] == playable
        np.testing.assert_allclose(got[track_id][2], coords, atol=1e-5)
    assert 0 < loaded.catalogue.playable_count < len(loaded.catalogue)
    # Ranking works on it: a placed track has neighbours in its cluster.
    pos = loaded.catalogue.position(docs[0]["_id"])
    assert pos is not None and loaded.catalogue.nearest(pos, 3)


def test_a_snapshot_of_another_model_or_dimension_is_refused() -> None:
    model = _model()
    docs, n_valid = _tracks()
    snapshot = _snapshot(model, docs, n_valid, None)
    with pytest.raises(SnapshotError, match="current model is v-other"):
        catalogue_from_snapshot(snapshot, dataclasses.replace(model, version="v-other"))
    wider = dataclasses.replace(model_518(seed=4, n_components=5, k=3), version=model.version)
    with pytest.raises(SnapshotError, match="4 dimensions, the model has 5"):
        catalogue_from_snapshot(snapshot, wider)


def test_replay_starts_where_the_snapshot_stops_and_refuses_what_retention_deleted() -> None:
    model = _model()
    docs, n_valid = _tracks()
    topic = "p.cadenza.tracks.new"
    snapshot = _snapshot(model, docs, n_valid, {topic: {0: 5, 1: 9}})
    # Partition 2 is not in the snapshot (created since): read from its start.
    assert replay_from(snapshot, topic, {0: 0, 1: 3, 2: 0}, {0: 7, 1: 9, 2: 4}) == {0: 5, 1: 9, 2: 0}
    with pytest.raises(SnapshotError, match="records no offsets"):
        replay_from(snapshot, "other", {0: 0}, {0: 1})
    with pytest.raises(SnapshotError, match="retention deleted records up to 6"):
        replay_from(snapshot, topic, {0: 6, 1: 0}, {0: 10, 1: 10})
    with pytest.raises(SnapshotError, match="retention deleted records up to 2"):
        replay_from(snapshot, topic, {0: 0, 1: 0, 2: 2}, {0: 10, 1: 10, 2: 3})
    with pytest.raises(SnapshotError, match="past the log's end 4"):
        replay_from(snapshot, topic, {0: 0, 1: 0}, {0: 4, 1: 10})
    without = _snapshot(model, docs, n_valid, None)
    with pytest.raises(SnapshotError, match="records no offsets"):
        replay_from(without, topic, {0: 0}, {0: 1})


# --- which path the worker takes ----------------------------------------------------------


@pytest.mark.stack
@pytest.mark.parametrize("case", ["no offsets", "other version", "deleted by retention", "no file"])
def test_an_unusable_snapshot_falls_back_to_the_scan(settings: Settings, db: Db, case: str) -> None:
    model = _model()
    _promote(settings, model)
    docs, n_valid = _tracks()
    db.tracks.insert_many(docs[1:])  # the first track is in the snapshot only
    topic = settings.topic(TRACKS_NEW)
    snapshot = _snapshot(model, docs, n_valid, None if case == "no offsets" else {topic: {0: 3}})
    path = snapshot_path(settings.models_path, model.version)
    if case == "other version":
        other = _model("v-older")
        snapshot = _snapshot(other, docs, n_valid, {topic: {0: 3}})
    if case != "no file":
        snapshot.save(path)
    window = ({0: 4 if case == "deleted by retention" else 0}, {0: 10})
    initial = _catalogue(settings, window)
    assert (initial.source, initial.replay) == (SCAN, None)
    assert initial.detail.startswith("no usable snapshot")
    assert len(initial.catalogue) == n_valid - 1 and docs[0]["_id"] not in initial.catalogue
    assert initial.catalogue.version == model.version


@pytest.mark.stack
def test_a_usable_snapshot_is_loaded_without_reading_mongodb(settings: Settings) -> None:
    model = _model()
    _promote(settings, model)
    docs, n_valid = _tracks()
    topic = settings.topic(TRACKS_NEW)
    _snapshot(model, docs, n_valid, {topic: {0: 3}}).save(snapshot_path(settings.models_path, model.version))
    # MongoDB is not even reachable: the snapshot alone serves.
    unreachable = settings.model_copy(
        update={"mongodb_uri": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200"}
    )
    initial = _catalogue(unreachable, ({0: 0, 1: 0}, {0: 5, 1: 2}))
    assert (initial.source, initial.replay, initial.left_out) == (SNAPSHOT, {0: 3, 1: 0}, len(docs) - n_valid)
    assert len(initial.catalogue) == n_valid and initial.detail == str(
        snapshot_path(settings.models_path, "v-snap")
    )
    # On a model change (no offsets to check) the snapshot serves as well.
    assert _catalogue(unreachable, None).source == SNAPSHOT


# --- a worker ------------------------------------------------------------------------------


def _announce(settings: Settings, doc: dict[str, Any], title: str) -> None:
    event = TrackEvent(track_id=doc["_id"], title=title, features=doc["features"])
    publish(settings, settings.topic(TRACKS_NEW), [(encode_key(doc["_id"]), encode(event))])


@pytest.mark.stack
def test_a_worker_starts_from_the_snapshot_and_replays_tracks_new_since(
    topics: Settings, db: Db, worker: Worker
) -> None:
    settings = topics
    model = _model()
    _promote(settings, model)
    docs, n_valid = _tracks()
    usable = docs[:n_valid]
    in_snapshot, before, since, mongo_only = usable[:-3], usable[-3], usable[-2], usable[-1]
    # MongoDB holds one track the snapshot lacks, and none of the snapshot's: a scan would
    # know only that one.
    db.tracks.insert_one(mongo_only)
    # Announced before the snapshot's offsets (and left out of it, as if dropped later):
    # the worker must not read tracks.new from the beginning.
    _announce(settings, before, "Before")
    offsets = end_offsets(settings, [settings.topic(TRACKS_NEW)])
    _snapshot(model, in_snapshot, len(in_snapshot), offsets).save(
        snapshot_path(settings.models_path, model.version)
    )
    _announce(settings, since, "Since The Snapshot")  # after its offsets: replayed

    recs = Reader(settings, settings.topic(RECOMMENDATIONS))
    dlq = Reader(settings, settings.topic(DLQ))
    worker.start()
    # Sent at once: waiting on the worker's start, answered only once it is ready.
    publish(
        settings,
        settings.topic(PLAYS),
        [
            play("new", since["_id"]),
            play("old", in_snapshot[0]["_id"]),
            play("mongo", mongo_only["_id"]),
            play("before", before["_id"]),
        ],
    )
    answered = {
        r.user_id: r for r in (decode(Recommendation, v) for v in recs.until(lambda v: len(v) >= 2, 90))
    }
    assert set(answered) == {"new", "old"}
    assert all(r.model_version == model.version for r in answered.values())
    letters = [decode(DeadLetter, v) for v in dlq.until(lambda v: len(v) >= 2, 30)]
    assert sorted(d.error_class for d in letters) == ["UnknownTrackError", "UnknownTrackError"]

    text = worker.log.read_text(errors="replace")
    line = next(x for x in text.splitlines() if "catalogue: " in x and "from snapshot" in x)
    assert f"{len(in_snapshot)} tracks from snapshot" in line and "1 replayed from tracks.new" in line
    metrics = parse_metrics(worker.metrics())
    assert _by_source(metrics, "cadenza_recommender_catalogue_loads_total") == {"snapshot": 1, "scan": 0}
    seconds = _by_source(metrics, "cadenza_recommender_catalogue_load_seconds")
    assert 0 < seconds["snapshot"] < 5 and seconds["scan"] == -1


@pytest.mark.stack
def test_a_worker_with_a_snapshot_without_offsets_scans_mongodb(
    topics: Settings, db: Db, worker: Worker
) -> None:
    settings = topics
    model = _model()
    _promote(settings, model)
    docs, n_valid = _tracks()
    db.tracks.insert_many(docs[1:])
    _snapshot(model, docs, n_valid, None).save(snapshot_path(settings.models_path, model.version))
    _announce(settings, docs[0], "Announced")  # before the start: a scan does not replay it
    recs = Reader(settings, settings.topic(RECOMMENDATIONS))
    dlq = Reader(settings, settings.topic(DLQ))
    worker.start()
    publish(settings, settings.topic(PLAYS), [play("stored", docs[1]["_id"]), play("early", docs[0]["_id"])])
    assert [decode(Recommendation, v).user_id for v in recs.until(lambda v: len(v) >= 1, 90)] == ["stored"]
    assert [decode(DeadLetter, v).error_class for v in dlq.until(lambda v: len(v) >= 1, 30)] == [
        "UnknownTrackError"
    ]
    line = next(x for x in worker.log.read_text(errors="replace").splitlines() if "from a scan" in x)
    assert f"{n_valid - 1} tracks from a scan of MongoDB" in line and "records no offsets" in line
    metrics = parse_metrics(worker.metrics())
    assert _by_source(metrics, "cadenza_recommender_catalogue_loads_total") == {"snapshot": 0, "scan": 1}
    assert _by_source(metrics, "cadenza_recommender_catalogue_load_seconds")["scan"] > 0


def _by_source(metrics: dict[str, float], name: str) -> dict[str, float]:
    """A family's values by their ``source`` label."""
    return {
        key.split('source="')[1].split('"')[0]: value
        for key, value in metrics.items()
        if key.startswith(name + "{") and 'source="' in key
    }
