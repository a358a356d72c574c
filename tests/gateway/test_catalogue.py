"""The catalogue API on the real stack: similar tracks read packed and legacy vectors alike; the
in-memory catalogue answers as MongoDB's path did; new tracks and clusters from Kafka reach it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr
from pymongo.database import Database

from gateway.catalogue import Similar
from infra.kafka_clients import producer
from infra.settings import Settings
from schemas.cluster_model import CURRENT_FILE, export_path
from schemas.codec import decode, encode, encode_key
from schemas.events import DeadLetter, TrackAssigned, TrackEvent
from schemas.features import N_FEATURES
from schemas.topics import DLQ, TRACKS_ASSIGNED, TRACKS_NEW
from schemas.vectors import pack
from tests._vectors import half_packed, model_518
from tests.gateway.conftest import token_for
from tests.gateway.test_api import read_all, started
from tests.streaming_jobs._catalogue import make_catalogue

pytestmark = pytest.mark.stack
Db = Database[dict[str, Any]]


def test_similar_tracks_of_a_half_migrated_cluster_are_those_of_the_legacy_one(
    db: Db, tmp_path: Path
) -> None:
    model = model_518()
    model.save(export_path(tmp_path, model.version))
    (tmp_path / CURRENT_FILE).write_text(model.version)
    catalogue = make_catalogue(n_genres=2, per_genre=8, unlabelled=0)
    # one cluster, unusable vectors included (the gateway reads no feature-set version)
    docs = [{**d, "cluster": 0} for d in catalogue.docs if d.get("feature_set_version") != "old-1"]
    seed = docs[1]["_id"]
    db.tracks.insert_many(docs)
    legacy = Similar(tmp_path).of(db, seed, limit=100)
    db.tracks.delete_many({})
    db.tracks.insert_many(half_packed(docs))
    mixed = Similar(tmp_path).of(db, seed, limit=100)
    assert len(legacy["items"]) == catalogue.n_valid - 1
    assert mixed == legacy


ARTISTS = ["Band A", "Band B", "The Cure", "Sigur Ros", "Blur"]
GENRES = ["Rock", "Jazz", "Pop", None]


def usable_in(cluster: int) -> int:
    """Tracks of :func:`catalogue_docs` in ``cluster`` with usable features."""
    return sum(
        1
        for d in catalogue_docs()
        if d["cluster"] == cluster and isinstance(d["features"], bytes | list) and len(d["features"]) > 2
    )


def catalogue_docs(n: int = 40) -> list[dict[str, Any]]:
    """Tracks in three clusters, packed and legacy vectors, a few without usable ones."""
    rng = np.random.default_rng(3)
    docs = []
    for i in range(n):
        features = rng.normal(0, 50, N_FEATURES).astype(np.float32)
        doc: dict[str, Any] = {
            "_id": 1000 + 7 * i,
            "title": f"Song {i}" if i % 3 else f"Lovely song {i}",
            "artist": ARTISTS[i % len(ARTISTS)],
            "album": f"Album {i % 4}",
            "genre_top": GENRES[i % len(GENRES)],
            "genres": [i % 5, 100 + i % 3],
            "duration_s": 100.0 + i,
            "audio_path": f"{i}.mp3",
            "cluster": i % 3 if i != 5 else None,
            "model_version": "v-vectors",
            "features": pack(features) if i % 2 else features.astype(float).tolist(),
        }
        if i in (8, 9):
            doc["features"] = None if i == 8 else [1.0, 2.0]
        docs.append(doc)
    return docs


@pytest.fixture
def catalogue_settings(topics: Settings, db: Db) -> Settings:
    model = model_518()
    model.save(export_path(topics.models_path, model.version))
    (topics.models_path / CURRENT_FILE).write_text(model.version)
    db.tracks.insert_many(catalogue_docs())
    return topics.model_copy(update={"token_secret": SecretStr("catalogue-secret")})


REQUESTS = [
    "/api/tracks",
    "/api/tracks?per_page=7&page=2",
    "/api/tracks?per_page=7&page=99",
    "/api/tracks?q=song",
    "/api/tracks?q=Song&per_page=5&page=3",
    "/api/tracks?q=lovely",
    "/api/tracks?q=lovely&genre=Rock",
    "/api/tracks?genre=Jazz",
    "/api/tracks?genre=Jazz&artist=band%20b",
    "/api/tracks?artist=THE%20CURE&q=song",
    "/api/tracks?q=zzz",
    "/api/tracks?page=0&per_page=1000",
    "/api/genres",
    "/api/tracks/1007",
    "/api/tracks/999",
    "/api/tracks/1000/similar",
    "/api/tracks/1000/similar?limit=3",
    "/api/tracks/1007/similar?limit=100",
    "/api/tracks/1035/similar",  # no cluster
    "/api/tracks/1056/similar",  # no features
    "/api/tracks/1063/similar",  # unusable features
    "/api/tracks/999/similar",
]


def test_the_api_answers_from_memory_as_it_did_from_mongodb(catalogue_settings: Settings) -> None:
    headers = {"Authorization": f"Bearer {token_for('ana', catalogue_settings)}"}
    mongodb = catalogue_settings.model_copy(update={"gateway_catalogue_memory": False})
    with started(mongodb) as before, started(catalogue_settings) as after:
        assert after.get("/readyz").json()["catalogue"]["tracks"] == 40
        assert before.get("/readyz").json()["catalogue"]["state"] == "off"
        for url in REQUESTS:
            old, new = before.get(url, headers=headers), after.get(url, headers=headers)
            assert (new.status_code, new.json()) == (old.status_code, old.json()), url
        similar = after.get("/api/tracks/1000/similar?limit=100", headers=headers).json()
        assert len(similar["items"]) == usable_in(0) - 1


def test_new_tracks_and_clusters_from_kafka_reach_the_catalogue(catalogue_settings: Settings) -> None:
    settings = catalogue_settings
    headers = {"Authorization": f"Bearer {token_for('ana', settings)}"}
    features = np.random.default_rng(9).normal(0, 50, N_FEATURES).astype(np.float32).astype(float).tolist()
    new = TrackEvent(track_id=5000, title="Hyperballad", artist="Björk", genre_top="Pop", features=features)
    with started(settings) as client, producer(settings) as p:

        def poll(url: str, done: Any) -> Any:
            deadline = time.monotonic() + 20
            while not done(answer := client.get(url, headers=headers).json()):
                assert time.monotonic() < deadline, answer
                time.sleep(0.1)
            return answer

        pop = next(
            g["tracks"]
            for g in client.get("/api/genres", headers=headers).json()["items"]
            if g["genre"] == "Pop"
        )
        p.send(settings.topic(TRACKS_NEW), key=encode_key("5000"), value=encode(new))
        p.send(settings.topic(TRACKS_ASSIGNED), key=b"5000", value=b'{"track_id": "five thousand"}')
        p.flush()
        found = poll("/api/tracks?q=bjork", lambda a: a["total"] == 1)
        assert found["items"][0]["cluster"] is None  # announced, not assigned yet
        genres = client.get("/api/genres", headers=headers).json()["items"]
        assert {"genre": "Pop", "tracks": pop + 1} in genres
        assigned = TrackAssigned(track_id=5000, cluster=1, model_version="v-vectors")
        p.send(settings.topic(TRACKS_ASSIGNED), key=b"5000", value=encode(assigned))
        p.flush()
        near = poll("/api/tracks/5000/similar?limit=100", lambda a: a["items"])
        assert near["cluster"] == 1 and len(near["items"]) == usable_in(1)
        assert client.get("/api/tracks/5000", headers=headers).json()["title"] == "Hyperballad"
    letters = [decode(DeadLetter, r.value) for r in read_all(settings, settings.topic(DLQ), expect=1)]
    assert [(x.topic, x.stage, x.error_class) for x in letters] == [
        (settings.topic(TRACKS_ASSIGNED), "gateway", "SchemaError")
    ]
