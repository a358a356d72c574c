"""Write a model's catalogue snapshot: ``tracks`` + the model -> ``<version>/catalogue.npz``.

Sources: the broker (log-end offsets of ``cadenza.tracks.new`` and
``cadenza.tracks.assigned``, taken first), then every document of MongoDB ``tracks``
(public fields and features, decoded :data:`BATCH` at a time by
:func:`schemas.vectors.unpack_many`), placed by the model's numpy twin (the export).
Destination: :func:`schemas.catalogue_snapshot.snapshot_path` of the version, the file the
recommender worker and the gateway load at start-up instead of scanning ``tracks``.

Called by :func:`streaming_jobs.model.registry.promote` once the clusters are written
(before ``current`` flips, so a worker that sees the new pointer finds the file), and by
``cadenza model snapshot`` (to refresh it after a large import without retraining: the
older the snapshot, the more of ``tracks.new`` a cold start replays). When the broker
cannot be asked, the snapshot records no offsets and readers scan ``tracks`` instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from pymongo.database import Database
from pymongo.errors import PyMongoError

from infra.errors import UnreachableError
from infra.kafka_clients import end_offsets
from infra.mongo import Doc
from infra.settings import Settings
from schemas.catalogue_snapshot import CatalogueSnapshot, Offsets, assemble, place, snapshot_path
from schemas.cluster_model import ClusterModel
from schemas.features import FEATURE_SET_VERSION
from schemas.topics import TRACKS_ASSIGNED, TRACKS_NEW
from schemas.vectors import unpack_many
from streaming_jobs.errors import RegistryError

log = logging.getLogger(__name__)

#: What the snapshot keeps of a track, and the features that place it.
PROJECTION: Final = {
    "title": 1,
    "artist": 1,
    "album": 1,
    "genre_top": 1,
    "genres": 1,
    "duration_s": 1,
    "audio_path": 1,
    "features": 1,
    "feature_set_version": 1,
    "model_version": 1,
}
BATCH: Final = 2000


@dataclass(frozen=True)
class Written:
    path: Path
    tracks: int
    placed: int
    offsets: bool  # False: the broker could not be asked (readers will scan)
    seconds: float
    #: Tracks whose stored ``model_version`` is not the model's, and their clusters under it
    #: (-1: no usable features): what promotion writes after the training's assignments.
    stale: tuple[NDArray[np.int64], NDArray[np.int64]]


def covered_offsets(settings: Settings) -> Offsets | None:
    """The track topics' log-end offsets (a topic not created yet: ``{}``, i.e. replay all of
    it); None when the broker does not answer."""
    topics = [settings.topic(TRACKS_NEW), settings.topic(TRACKS_ASSIGNED)]
    try:
        found = end_offsets(settings, topics, timeout_ms=5000)
    except UnreachableError as err:
        log.warning("catalogue snapshot without offsets (%s): cold starts will scan tracks", err)
        return None
    return {topic: found.get(topic, {}) for topic in topics}


def _track_id(doc: Doc) -> int | None:
    try:
        return int(doc["_id"])
    except (KeyError, TypeError, ValueError):
        return None


def _meta(doc: Doc) -> list[Any]:
    genre_top = doc.get("genre_top")
    genres = doc.get("genres")
    try:
        genre_ids = [int(g) for g in genres] if isinstance(genres, list) else []
        duration = float(doc.get("duration_s") or 0.0)
    except (TypeError, ValueError):
        genre_ids, duration = [], 0.0
    return [
        str(doc.get("title") or ""),
        str(doc.get("artist") or ""),
        str(doc.get("album") or ""),
        genre_top if isinstance(genre_top, str) else None,
        genre_ids,
        duration if np.isfinite(duration) else 0.0,
    ]


def read_snapshot(
    db: Database[Doc],
    model: ClusterModel,
    offsets: Offsets | None,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[CatalogueSnapshot, NDArray[np.int64]]:
    """Every track of ``tracks`` placed by ``model`` (tracks whose features are missing,
    unusable or of another feature set are kept with cluster -1), and the ids of the tracks
    whose stored ``model_version`` is not the model's."""
    ids: list[int] = []
    stale: list[int] = []
    meta: list[list[Any]] = []
    playable: list[bool] = []
    clusters: list[NDArray[np.int32]] = []
    coords: list[NDArray[np.float32]] = []
    batch: list[Doc] = []

    def flush() -> None:
        docs = [(tid, d) for d in batch if (tid := _track_id(d)) is not None]
        vectors = unpack_many(
            [
                d.get("features")
                if d.get("feature_set_version", FEATURE_SET_VERSION) == FEATURE_SET_VERSION
                else None
                for _, d in docs
            ]
        )
        ids.extend(tid for tid, _ in docs)
        stale.extend(tid for tid, d in docs if d.get("model_version") != model.version)
        meta.extend(_meta(doc) for _, doc in docs)
        playable.extend(bool(doc.get("audio_path")) for _, doc in docs)
        batch_clusters, batch_coords = place(model, vectors.matrix, vectors.ok)
        clusters.append(batch_clusters)
        coords.append(batch_coords)
        if on_batch is not None:
            on_batch(len(batch))
        batch.clear()

    try:
        for doc in db.tracks.find({}, PROJECTION, batch_size=BATCH):
            batch.append(doc)
            if len(batch) >= BATCH:
                flush()
        flush()
    except PyMongoError as err:
        raise RegistryError(
            f"reading tracks from {db.name} for the catalogue snapshot failed ({err})"
        ) from None
    snapshot = assemble(
        model,
        ids,
        np.concatenate(clusters),
        np.concatenate(coords),
        meta,
        offsets=offsets,
        created=datetime.now(UTC).isoformat(),
        playable=playable,
    )
    return snapshot, np.asarray(stale, dtype=np.int64)


def write_snapshot(
    db: Database[Doc],
    settings: Settings,
    model: ClusterModel,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> Written:
    """Take the offsets, read ``tracks``, write ``<models_path>/<model.version>/catalogue.npz``."""
    started = time.monotonic()
    offsets = covered_offsets(settings)
    snapshot, stale = read_snapshot(db, model, offsets, on_batch=on_batch)
    at = np.isin(snapshot.ids, stale)
    try:
        path = snapshot.save(snapshot_path(settings.models_path, model.version))
    except OSError as err:
        raise RegistryError(f"writing the catalogue snapshot of {model.version} failed ({err})") from None
    written = Written(
        path,
        len(snapshot),
        int(snapshot.placed.sum()),
        offsets is not None,
        time.monotonic() - started,
        (snapshot.ids[at], snapshot.clusters[at].astype(np.int64)),
    )
    log.info(
        "catalogue snapshot of %s: %d tracks (%d placed) in %.1f s -> %s",
        model.version,
        written.tracks,
        written.placed,
        written.seconds,
        path,
    )
    return written
