"""The catalogue API's queries: search, one track, similar tracks, genres (MongoDB ``tracks``).

Source: the ``tracks`` collection (written by the ETL and the streaming assign job)
and, for similar tracks, the current model's ``export.json`` (the numpy twin of the
Spark pipeline: the same reduced space the recommender ranks in) and the cluster's
feature vectors (packed or legacy, decoded by :func:`schemas.vectors.unpack_many`).
Destination: the JSON of ``/api/tracks…`` and ``/api/genres``. Request values are only
ever used as plain values: text is matched through an escaped regular expression, never
passed as a query document, so ``{"$ne": …}``-style operators cannot reach MongoDB.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from pymongo.database import Database

from gateway.errors import NotFoundError
from gateway.track_json import MAX_TEXT, PUBLIC, nearest, page_bounds, track_json, with_distance
from schemas.cluster_model import ClusterModel, current_version, load_current
from schemas.vectors import unpack_many

#: Seconds a cluster's coordinates (for similar tracks) stay cached.
CLUSTER_CACHE_S: Final = 300.0

Db = Database[dict[str, Any]]


def _contains(text: str) -> dict[str, Any]:
    return {"$regex": re.escape(text), "$options": "i"}


def search_filter(q: str | None, genre: str | None, artist: str | None) -> dict[str, Any]:
    """The MongoDB filter for a search (pure): every value is text inside ``$regex``/equality."""
    clauses: list[dict[str, Any]] = []
    if q:
        text = q[:MAX_TEXT]
        clauses.append(
            {"$or": [{"title": _contains(text)}, {"artist": _contains(text)}, {"album": _contains(text)}]}
        )
    if genre:
        clauses.append({"genre_top": genre[:MAX_TEXT]})
    if artist:
        clauses.append({"artist": {"$regex": f"^{re.escape(artist[:MAX_TEXT])}$", "$options": "i"}})
    return {"$and": clauses} if clauses else {}


def search(
    db: Db, q: str | None, genre: str | None, artist: str | None, *, page: int, per_page: int
) -> dict[str, Any]:
    page, per_page = page_bounds(page, per_page)
    where = search_filter(q, genre, artist)
    total = db.tracks.count_documents(where)
    docs = db.tracks.find(where, PUBLIC).sort("_id", 1).skip((page - 1) * per_page).limit(per_page)
    return {"items": [track_json(d) for d in docs], "total": total, "page": page, "per_page": per_page}


def one(db: Db, track_id: int) -> dict[str, Any]:
    doc = db.tracks.find_one({"_id": track_id}, PUBLIC)
    if doc is None:
        raise NotFoundError(f"no track {track_id}")
    return track_json(doc)


def genres(db: Db) -> dict[str, Any]:
    rows = db.tracks.aggregate(
        [{"$match": {"genre_top": {"$type": "string"}}}, {"$group": {"_id": "$genre_top", "n": {"$sum": 1}}}]
    )
    items = sorted(
        ({"genre": r["_id"], "tracks": int(r["n"])} for r in rows), key=lambda g: (-g["tracks"], g["genre"])
    )
    return {"items": items}


def audio_path(db: Db, track_id: int) -> str | None:
    """The stored audio path of a track (relative to the audio root); NotFoundError if unknown."""
    doc = db.tracks.find_one({"_id": track_id}, {"audio_path": 1})
    if doc is None:
        raise NotFoundError(f"no track {track_id}")
    path = doc.get("audio_path")
    return path if isinstance(path, str) else None


@dataclass
class AudioPaths:
    """:func:`audio_path` with a small time-bounded cache: a player asks for many ranges
    of the same track, and a track's file rarely moves. Also how the play intake
    (:mod:`gateway.intake`) checks that a track exists (unknown ids raise and are not
    cached). :meth:`probe` answers from the cache alone, without blocking, so the event
    loop can use it; only :meth:`get` may read MongoDB (in a worker thread)."""

    ttl_s: float = 60.0
    size: int = 10_000
    _cache: OrderedDict[int, tuple[float, str | None]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def probe(self, track_id: int) -> tuple[bool, str | None]:
        """``(True, path)`` when the cache holds a fresh entry for ``track_id``, else
        ``(False, None)``; never reads MongoDB nor waits for the lock (a worker thread
        holding it makes this a miss)."""
        if not self._lock.acquire(blocking=False):
            return False, None
        try:
            hit = self._cache.get(track_id)
        finally:
            self._lock.release()
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return True, hit[1]
        return False, None

    def get(self, db: Db, track_id: int) -> str | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(track_id)
            if hit is not None and now - hit[0] < self.ttl_s:
                return hit[1]
        path = audio_path(db, track_id)
        with self._lock:
            self._cache[track_id] = (now, path)
            self._cache.move_to_end(track_id)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return path


@dataclass
class Similar:
    """Nearest tracks of the same cluster in the current model's space, cached per cluster."""

    models_path: Path
    _model: ClusterModel | None = None
    _clusters: dict[int, tuple[float, NDArray[np.int64], NDArray[np.float64]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def model(self) -> ClusterModel | None:
        version = current_version(self.models_path)
        with self._lock:
            if version is None:
                self._model = None
            elif self._model is None or self._model.version != version:
                self._model = load_current(self.models_path)
                self._clusters.clear()
            return self._model

    def _cluster(
        self, db: Db, model: ClusterModel, cluster: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        with self._lock:
            cached = self._clusters.get(cluster)
        if cached is not None and time.monotonic() - cached[0] < CLUSTER_CACHE_S:
            return cached[1], cached[2]
        docs = list(db.tracks.find({"cluster": cluster, "features": {"$ne": None}}, {"features": 1}))
        vectors = unpack_many([d["features"] for d in docs])
        ids = np.asarray([int(d["_id"]) for d in docs], dtype=np.int64)[vectors.ok]
        coords = (
            model.transform(vectors.matrix.astype(np.float64))
            if len(vectors)
            else np.zeros((0, model.n_components))
        )
        with self._lock:
            self._clusters[cluster] = (time.monotonic(), ids, coords)
        return ids, coords

    def of(self, db: Db, track_id: int, limit: int) -> dict[str, Any]:
        seed = db.tracks.find_one({"_id": track_id}, {"cluster": 1})
        if seed is None:
            raise NotFoundError(f"no track {track_id}")
        model = self.model()
        cluster = seed.get("cluster")
        if model is None or not isinstance(cluster, int):
            return {"items": []}
        ids, coords = self._cluster(db, model, cluster)
        where = np.flatnonzero(ids == track_id)
        if where.size == 0:
            return {"items": []}
        order, d = nearest(ids, coords, int(where[0]), limit)
        docs = {
            int(doc["_id"]): doc
            for doc in db.tracks.find({"_id": {"$in": [int(ids[i]) for i in order]}}, PUBLIC)
        }
        items = [with_distance(track_json(docs[int(ids[i])]), d[i]) for i in order if int(ids[i]) in docs]
        return {"items": items, "cluster": cluster, "model_version": model.version}
