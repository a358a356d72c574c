"""The gateway's in-memory catalogue: loads (from MongoDB, and changes arriving meanwhile kept),
reloads on a model change, tracks heard of only by tracks.assigned read by ``_id``."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymongo.database import Database

from gateway import library as library_module
from gateway.library import Library, load_index
from gateway.track_index import TrackIndex
from gateway.track_json import Track
from infra.settings import Settings
from schemas.cluster_model import CURRENT_FILE, export_path
from schemas.documents import TrackDoc
from schemas.events import TrackAssigned, TrackEvent
from schemas.features import N_FEATURES
from tests._vectors import model_518

Db = Database[dict[str, Any]]


def promote(models: Path, version: str = "v-vectors", seed: int = 0) -> None:
    model = dataclasses.replace(model_518(seed), version=version)
    model.save(export_path(models, version))
    (models / CURRENT_FILE).write_text(version)


def features(seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(0, 50, N_FEATURES).astype(np.float32).astype(float).tolist()


def doc(track_id: int, title: str, cluster: int | None = 0, **fields: Any) -> dict[str, Any]:
    return TrackDoc(
        id=track_id, title=title, cluster=cluster, features=features(track_id), **fields
    ).to_mongo()


def test_changes_during_a_load_reach_the_new_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan runs in a thread; what the feed sends meanwhile goes to the old index and
    is applied to the new one before it replaces the old."""
    promote(tmp_path)
    settings = Settings(data_dir=tmp_path, model_dir=tmp_path)
    release = threading.Event()

    def slow_load(db: Any, models: Path, version: str | None, stop: threading.Event) -> TrackIndex:
        release.wait(10)
        index = TrackIndex(model_518(), version)
        index.add_many([Track(1, "Scanned", cluster=0)], None, [False])
        return index

    monkeypatch.setattr(library_module, "load_index", slow_load)

    async def scenario() -> Library:
        lib = Library(settings)
        lib.current = "v-vectors"
        load = asyncio.create_task(lib._load(None))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert lib.index is None and lib.for_similar() is None
        lib.apply(TrackEvent(track_id=2, title="Arrived", features=features(2)))
        lib.apply(TrackAssigned(track_id=1, cluster=3, model_version="v-vectors"))
        release.set()
        await load
        return lib

    lib = asyncio.run(scenario())
    assert lib.index is not None and len(lib.index) == 2
    assert lib.index.one(1)["cluster"] == 3  # type: ignore[index]
    assert lib.index.one(2)["title"] == "Arrived"  # type: ignore[index]
    assert lib.fallback_limiter() is lib.fallback and lib.status()["state"] == "ready"
    assert lib.for_similar() is lib.index
    lib.current = "another"  # promoted since: similar tracks from MongoDB until a load runs
    assert lib.for_similar() is None and lib._due()
    lib._backlog = []  # a load for it runs: the previous model answers meanwhile
    assert lib.for_similar() is lib.index


def test_a_full_backlog_makes_another_load_follow(tmp_path: Path) -> None:
    lib = Library(Settings(data_dir=tmp_path))
    lib.index, lib._backlog = TrackIndex(None), []
    for i in range(library_module.BACKLOG + 1):
        lib.apply(TrackAssigned(track_id=i + 1, cluster=0, model_version="v"))
    assert lib._overflowed and lib._due()


def test_a_gateway_without_the_memory_catalogue_never_limits_mongodb(tmp_path: Path) -> None:
    lib = Library(Settings(data_dir=tmp_path, gateway_catalogue_memory=False))
    assert lib.fallback_limiter() is None and lib.status()["state"] == "off"


@pytest.mark.stack
def test_a_load_reads_every_track_and_places_those_with_usable_features(db: Db, tmp_path: Path) -> None:
    promote(tmp_path)
    db.tracks.insert_many(
        [
            doc(1, "Love Song", 0, artist="Cure", genre_top="Rock"),
            doc(2, "Lovely", 1, genre_top="Soul"),
            {**doc(3, "No features", 1), "features": None},
            {**doc(4, "Legacy array", 0), "features": features(4)},
            {"_id": 5, "title": "Broken", "genres": ["x"]},  # no usable fields: left out
        ]
    )
    index = load_index(db, tmp_path, "v-vectors", threading.Event())
    assert len(index) == 4 and index.placed() == 3
    assert index.search("lov", None, None, page=1, per_page=10)["total"] == 2
    near = index.similar(1, 10)
    assert near is not None and [t["track_id"] for t in near["items"]] == [4]
    assert index.similar(3, 10) == {"items": []}  # unplaced, as MongoDB's path answers
    stopped = threading.Event()
    stopped.set()
    db.tracks.insert_many([doc(100 + i, f"t{i}") for i in range(library_module.BATCH)])
    with pytest.raises(library_module.LoadStoppedError):
        load_index(db, tmp_path, "v-vectors", stopped)


@pytest.mark.stack
def test_run_loads_then_reads_tracks_announced_only_by_tracks_assigned(
    db: Db, settings: Settings, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    promote(models)
    settings = settings.model_copy(update={"model_dir": models})
    db.tracks.insert_one(doc(1, "First", 0))

    async def scenario() -> Library:
        lib = Library(settings)
        task = asyncio.create_task(lib.run(lambda: db))
        try:
            while lib.index is None:
                await asyncio.sleep(0.05)
            db.tracks.insert_one(doc(2, "Stored before its event was read", 0))
            lib.apply(TrackAssigned(track_id=2, cluster=0, model_version="v-vectors"))
            lib.apply(TrackAssigned(track_id=3, cluster=0, model_version="v-vectors"))  # not stored
            for _ in range(200):
                if 2 in lib.index and not lib._missing:
                    break
                await asyncio.sleep(0.05)
            promote(models, "v-next", seed=1)
            for _ in range(200):
                if lib.index.version == "v-next":
                    break
                await asyncio.sleep(0.05)
            return lib
        finally:
            lib.stop()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    lib = asyncio.run(scenario())
    assert lib.index is not None and lib.index.version == "v-next" and lib.loads == 2
    assert [t["track_id"] for t in lib.index.similar(1, 5)["items"]] == [2]  # type: ignore[index]
    assert lib.unknown == 1 and lib.for_similar() is lib.index
