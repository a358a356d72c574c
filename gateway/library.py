"""The gateway's catalogue in memory: loaded from MongoDB in the background, kept current by the feed.

Sources: MongoDB ``tracks`` (every track at start, again when the registry's current model
changes and every ``CADENZA_GATEWAY_CATALOGUE_RELOAD_S``; single tracks heard of only
through ``tracks.assigned``, read by ``_id``), the registry's ``current`` pointer and
``export.json``, and the ``TrackEvent``/``TrackAssigned`` messages :mod:`gateway.feed` reads.
Destinations: the :class:`gateway.track_index.TrackIndex` the catalogue routes answer from
(:mod:`gateway.routes.api`, which use MongoDB's path, :mod:`gateway.catalogue`, until the
first load is done, for tracks it does not hold, and for similar tracks when the current
model changed and no load for it runs; while one runs, the previous model answers),
``/readyz``'s ``catalogue`` and the ``cadenza_gateway_catalogue_*`` families of ``/metrics``.

A load scans ``tracks`` once in a worker thread (:func:`load_index`: a projection of the
public fields and the features, decoded :data:`BATCH` documents at a time by
:func:`schemas.vectors.unpack_many` and placed by the model), into a new index; changes
arriving meanwhile are kept (at most :data:`BACKLOG`; past that, another load follows)
and applied to the new index just before it replaces the old one, on the event loop, so
none is lost. ``/readyz`` never waits for a load: at the FMA's full size a scan of FerretDB
takes longer than a gateway may take to start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pymongo.database import Database

from gateway.errors import LoadStoppedError
from gateway.track_index import Change, TrackIndex
from gateway.track_json import PUBLIC, Track
from infra.settings import Settings
from schemas.cluster_model import ClusterModel, ClusterModelError, current_version, export_path
from schemas.events import TrackAssigned, TrackEvent
from schemas.vectors import unpack_many

log = logging.getLogger("cadenza.gateway.library")
Db = Database[dict[str, Any]]

#: What a load reads of each track: what the API shows, and the features.
PROJECTION: Final = {**PUBLIC, "features": 1}
#: Documents decoded and placed at a time.
BATCH: Final = 2000
#: Seconds between looks at the model pointer, the reload timer and tracks to read.
CHECK_S: Final = 1.0
#: Changes kept while a load runs (a new track's ~2 KiB each); past that, another load follows.
BACKLOG: Final = 20_000
#: Tracks waiting to be read by ``_id`` (``tracks.assigned`` of tracks not in memory), and per round.
MISSING: Final = 10_000
MISSING_PER_ROUND: Final = 200
#: MongoDB catalogue queries in flight at once while the catalogue is in memory (before the
#: first load is done; each may scan ``tracks``, more would only slow the load that ends them).
FALLBACK_SLOTS: Final = 2
RETRY_MAX_S: Final = 60.0


def read_model(models_path: Path, version: str | None) -> ClusterModel | None:
    """The model ``version`` of the registry; None without one, or when it cannot be read
    (logged; similar tracks are then empty until a reload reads it)."""
    if version is None:
        return None
    try:
        return ClusterModel.load(export_path(models_path, version))
    except ClusterModelError as err:
        log.warning("catalogue: model %s cannot be read (%s); no similar tracks", version, err)
        return None


def changes(docs: Sequence[dict[str, Any]]) -> tuple[list[Track], list[Any]]:
    """The tracks of stored documents and their stored features; documents without usable
    fields are left out (logged)."""
    tracks, features = [], []
    for doc in docs:
        try:
            tracks.append(Track.from_doc(doc))
        except (KeyError, TypeError, ValueError) as err:
            log.warning("catalogue: track %r left out: %s", doc.get("_id"), err)
            continue
        features.append(doc.get("features"))
    return tracks, features


def add_docs(index: TrackIndex, docs: Sequence[dict[str, Any]]) -> None:
    """Stored documents into ``index``, their features decoded and placed as one batch."""
    tracks, features = changes(docs)
    vectors = unpack_many(features)
    coords = index.coords(vectors.matrix) if len(vectors) else None
    index.add_many(tracks, coords, vectors.ok.tolist())


def doc_changes(docs: Sequence[dict[str, Any]]) -> list[Change]:
    """Stored documents as changes of the index, one by one (features decoded as one batch)."""
    tracks, features = changes(docs)
    vectors = unpack_many(features)
    at = np.cumsum(vectors.ok) - 1
    return [Change(t, vectors.matrix[at[i]] if vectors.ok[i] else None) for i, t in enumerate(tracks)]


def load_index(db: Db, models_path: Path, version: str | None, stop: threading.Event) -> TrackIndex:
    """Every track of ``tracks``, placed by model ``version`` (blocking: a worker thread's job)."""
    index = TrackIndex(read_model(models_path, version), version)
    batch: list[dict[str, Any]] = []
    for doc in db.tracks.find({}, PROJECTION, batch_size=BATCH):
        batch.append(doc)
        if len(batch) >= BATCH:
            add_docs(index, batch)
            batch.clear()
            if stop.is_set():
                raise LoadStoppedError
    add_docs(index, batch)
    index.settle()
    return index


def read_tracks(db: Db, ids: Sequence[int]) -> list[dict[str, Any]]:
    """The stored documents of ``ids``, one ``_id`` look-up each (FerretDB scans the whole
    collection for an ``$in``)."""
    found = (db.tracks.find_one({"_id": tid}, PROJECTION) for tid in ids)
    return [doc for doc in found if doc is not None]


class Library:
    """The live index (None until the first load), the load in progress, and what the feed sends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.gateway_catalogue_memory
        self.index: TrackIndex | None = None
        #: The registry's current model version, as last read.
        self.current: str | None = None
        self.error: str | None = None
        self.loads = 0
        self.load_s: float | None = None
        self.loaded_at = 0.0
        #: ``tracks.assigned`` tracks MongoDB did not hold when read.
        self.unknown = 0
        #: Limits MongoDB catalogue queries while the first load runs.
        self.fallback = anyio.CapacityLimiter(FALLBACK_SLOTS)
        self._backlog: list[Change | TrackAssigned] | None = None
        self._overflowed = False
        self._missing: dict[int, None] = {}
        self._stop = threading.Event()

    # --- the feed's changes (event loop) -----------------------------------------------------

    def apply(self, message: TrackEvent | TrackAssigned | Change) -> None:
        """A ``tracks.new`` or ``tracks.assigned`` message (or a track read by ``_id``), to the
        live index and to the backlog of a load in progress."""
        change = Change.arrival(message) if isinstance(message, TrackEvent) else message
        if self.index is not None:
            self._apply(self.index, change)
        if self._backlog is not None:
            if len(self._backlog) < BACKLOG:
                self._backlog.append(change)
            else:
                self._overflowed = True

    def _apply(self, index: TrackIndex, change: Change | TrackAssigned) -> None:
        if not index.apply(change) and isinstance(change, TrackAssigned) and len(self._missing) < MISSING:
            self._missing[change.track_id] = None  # stored before it was announced: read it

    # --- what the routes use (event loop) ----------------------------------------------------

    def for_similar(self) -> TrackIndex | None:
        """The live index if it was built for the current model, or while the load for a new
        one runs (its previous model answers meanwhile, and says so); else None (MongoDB's path)."""
        index = self.index
        if index is None or (index.version != self.current and self._backlog is None):
            return None
        return index

    def fallback_limiter(self) -> anyio.CapacityLimiter | None:
        """The limiter of MongoDB catalogue queries (searches, similar tracks, genres) of a
        gateway that keeps its catalogue in memory: they run only until the first load is done
        (or for a track it does not hold), and may each scan ``tracks``."""
        return self.fallback if self.enabled else None

    def status(self) -> dict[str, Any]:
        index = self.index
        return {
            "state": "off" if not self.enabled else "loading" if index is None else "ready",
            "tracks": len(index) if index is not None else 0,
            "model_version": index.version if index is not None else None,
            "load_s": None if self.load_s is None else round(self.load_s, 3),
            "error": self.error,
        }

    # --- the background task ---------------------------------------------------------------

    async def run(self, db: Callable[[], Db]) -> None:
        """Load, then keep the index current (model changes, reloads, tracks to read) until
        cancelled; MongoDB errors are retried with backoff (1 s doubling to 60 s)."""
        delay = 1.0
        while True:
            try:
                self.current = current_version(self.settings.models_path)
                if self._due():
                    await self._load(db())
                if self._missing and self.index is not None:
                    await self._read_missing(db())
                self.error, delay = None, 1.0
            except asyncio.CancelledError:
                raise
            except Exception as err:  # MongoDB down, a model file being written …: try again
                self.error = f"{type(err).__name__}: {err}"[:300]
                log.warning("catalogue: %s; trying again in %.0f s", self.error, delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
                continue
            await asyncio.sleep(CHECK_S)

    def stop(self) -> None:
        """Make a load in progress give up at its next batch (the gateway is stopping)."""
        self._stop.set()

    def _due(self) -> bool:
        if self.index is None or self._overflowed or self.index.version != self.current:
            return True
        every = self.settings.gateway_catalogue_reload_s
        return every > 0 and time.monotonic() - self.loaded_at >= every

    async def _load(self, db: Db) -> None:
        version, started = self.current, time.monotonic()
        self._backlog, self._overflowed = [], False
        try:
            index = await anyio.to_thread.run_sync(
                load_index, db, self.settings.models_path, version, self._stop, abandon_on_cancel=True
            )
            for change in self._backlog:
                self._apply(index, change)
        finally:
            self._backlog = None
        self.index, self.loads = index, self.loads + 1
        self.load_s, self.loaded_at = time.monotonic() - started, time.monotonic()
        log.info(
            "catalogue: %d tracks in memory (%d placed by model %s) in %.1f s",
            len(index),
            index.placed(),
            version,
            self.load_s,
        )

    async def _read_missing(self, db: Db) -> None:
        ids = list(self._missing)[:MISSING_PER_ROUND]
        docs = await anyio.to_thread.run_sync(read_tracks, db, ids, abandon_on_cancel=True)
        for tid in ids:
            self._missing.pop(tid, None)
        self.unknown += len(ids) - len(docs)
        for change in doc_changes(docs):
            self.apply(change)

    # --- /metrics -------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The catalogue's families of ``/metrics``."""
        index = self.index
        yield GaugeMetricFamily(
            "cadenza_gateway_catalogue_tracks",
            "Tracks in this gateway's in-memory catalogue (0 until its first load is done).",
            len(index) if index is not None else 0,
        )
        yield GaugeMetricFamily(
            "cadenza_gateway_catalogue_ready",
            "1 when catalogue requests are answered from memory, 0 while they read MongoDB.",
            1 if index is not None else 0,
        )
        yield GaugeMetricFamily(
            "cadenza_gateway_catalogue_load_seconds",
            "How long the last full load of the catalogue from MongoDB took (-1: none yet).",
            -1.0 if self.load_s is None else round(self.load_s, 3),
        )
        yield CounterMetricFamily(
            "cadenza_gateway_catalogue_loads", "Full loads of the catalogue from MongoDB.", self.loads
        )
