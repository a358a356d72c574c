"""The gateway's catalogue in memory: loaded in the background, at start from the model's
catalogue snapshot when it can be, and kept current by the feed.

Sources: the registry's ``current`` pointer, ``export.json`` and catalogue snapshot
(``<models>/<version>/catalogue.npz``, :mod:`schemas.catalogue_snapshot`: the first load,
when the snapshot of the current model exists and covers both track topics), MongoDB
``tracks`` (the first load otherwise, every load after it: when the registry's current
model changes and every ``CADENZA_GATEWAY_CATALOGUE_RELOAD_S``; single tracks heard of only
through ``tracks.assigned``, read by ``_id``), and the ``TrackEvent``/``TrackAssigned``
messages :mod:`gateway.feed` reads. Destinations: the
:class:`gateway.track_index.TrackIndex` the catalogue routes answer from
(:mod:`gateway.routes.api`, which use MongoDB's path, :mod:`gateway.catalogue`, until the
first load is done, for tracks it does not hold, and for similar tracks when the current
model changed and no load for it runs; while one runs, the previous model answers),
``/readyz``'s ``catalogue`` and the ``cadenza_gateway_catalogue_*`` families of ``/metrics``.

A load runs in a worker thread into a new index: either a scan of ``tracks``
(:func:`load_index`: a projection of the public fields and the features, decoded
:data:`BATCH` documents at a time by :func:`schemas.vectors.unpack_many` and placed by the
model; ~33 s at the FMA's 106,574 tracks on FerretDB) or, for the first load only, the
snapshot (:func:`load_index_from_snapshot`: its coordinates and clusters as they are, ~3 s
of CPU at that size). Changes arriving meanwhile are kept (at most :data:`BACKLOG`; past
that, another load follows) and applied to the new index just before it replaces the old
one, on the event loop, so none is lost. ``/readyz`` never waits for a load.

**The first load and the feed** start together (:mod:`gateway.app`). Whichever asks first
decides, once, from the snapshot's ``info`` alone (:meth:`Library.snapshot_offsets`, a
millisecond): the first load reads the snapshot, and the feed reads ``tracks.new`` and
``tracks.assigned`` back from the offsets it covers (a partition it does not name: from
offset 0), so every record since the snapshot reaches the backlog, which the load applies
after the snapshot's tracks, in the topics' order. When the broker no longer holds those
records (retention deleted some, or a topic was recreated), the feed says so
(:meth:`Library.refuse_snapshot`) and reads the last ``TRACKS_REPLAY_S`` seconds instead:
the first load scans MongoDB, or, when the snapshot's index is live already (the broker
was unreachable at start), a scan replaces it. A snapshot that cannot be read, or of a
model promoted since, makes the first load scan (logged). Later loads always scan: the
live index holds changes a snapshot written since would lack.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

import anyio
import anyio.to_thread
import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pymongo.database import Database

from gateway.errors import LoadStoppedError
from gateway.track_index import Change, TrackIndex
from gateway.track_json import PUBLIC, Track
from infra.settings import Settings
from schemas.catalogue_snapshot import (
    CatalogueSnapshot,
    Offsets,
    SnapshotError,
    load_snapshot,
    read_info,
    snapshot_path,
)
from schemas.cluster_model import ClusterModel, ClusterModelError, current_version, export_path
from schemas.events import TrackAssigned, TrackEvent
from schemas.topics import TRACKS_ASSIGNED, TRACKS_NEW
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
#: Where a load came from (``status()["source"]``, ``cadenza_gateway_catalogue_source``).
SNAPSHOT: Final = "snapshot"
SCAN: Final = "scan"


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


def covered_offsets(path: Path, version: str, topics: Sequence[str]) -> Offsets:
    """The offsets of ``topics`` that the snapshot at ``path`` covers, from its ``info`` alone
    (:func:`schemas.catalogue_snapshot.read_info`); :class:`SnapshotError` when there is none,
    it is of another format or model, or it does not cover every one of ``topics``."""
    offsets = read_info(path, version).offsets
    if offsets is None or any(t not in offsets for t in topics):
        raise SnapshotError(f"{path}: the snapshot does not cover {', '.join(topics)}")
    return {t: offsets[t] for t in topics}


def index_from_snapshot(snapshot: CatalogueSnapshot, model: ClusterModel | None, version: str) -> TrackIndex:
    """The tracks of ``snapshot`` placed by ``model`` (its coordinates and clusters as the
    snapshot has them; none placed without a model, as :func:`load_index` does);
    :class:`SnapshotError` for a snapshot of another model, or a bad row."""
    if model is not None and (
        snapshot.model_version != model.version
        or snapshot.feature_set_version != model.feature_set_version
        or snapshot.dims != model.n_components
    ):
        raise SnapshotError(
            f"snapshot of {snapshot.model_version} ({snapshot.dims} dimensions) for model "
            f"{model.version} ({model.n_components})"
        )
    index = TrackIndex(model, version)
    placed = snapshot.placed
    coords = snapshot.coords[placed].astype(np.float64) if model is not None else None
    try:
        # SnapshotRow: Track's fields in its order up to ``cluster`` (tests/gateway/test_library_snapshot.py);
        # the snapshot does not say whether a track has audio: Track's default (playable).
        index.fill(list(snapshot.rows()), coords, placed)
    except ValueError as err:
        raise SnapshotError(f"snapshot of {snapshot.model_version}: {err}") from None
    index.settle()
    return index


def load_index_from_snapshot(
    models_path: Path, version: str, replayed_from: Offsets | None = None
) -> TrackIndex:
    """Every track of model ``version``'s catalogue snapshot, placed by that model (blocking: a
    worker thread's job); :class:`SnapshotError` when there is none or it cannot be used, or
    (``replayed_from``: where the feed reads the track topics from) when it does not cover
    every partition there up to that offset at least (re-written since it was looked at)."""
    with _collection_paused():
        snapshot = load_snapshot(snapshot_path(models_path, version), version)
        for topic, parts in (replayed_from or {}).items():
            covered = snapshot.covers(topic) or {}
            short = [p for p, offset in parts.items() if covered.get(p, 0) < offset]
            if short:
                raise SnapshotError(
                    f"snapshot of {version}: {topic} partitions {short} not covered from {parts}"
                )
        return index_from_snapshot(snapshot, read_model(models_path, version), version)


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """No automatic garbage collection meanwhile (the whole process's, for the ~2 s of a
    snapshot's load: the collections its 10⁵ new tracks would trigger cost a third of it)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class FirstLoad(NamedTuple):
    """The snapshot the first load reads: its model, and the track topics' offsets it covers."""

    version: str
    offsets: Offsets


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
        #: Where the live index came from (:data:`SNAPSHOT` or :data:`SCAN`; None before a load).
        self.source: str | None = None
        #: ``tracks.assigned`` tracks MongoDB did not hold when read.
        self.unknown = 0
        #: Limits MongoDB catalogue queries while the first load runs.
        self.fallback = anyio.CapacityLimiter(FALLBACK_SLOTS)
        self._backlog: list[Change | TrackAssigned] | None = None
        self._overflowed = False
        self._missing: dict[int, None] = {}
        self._stop = threading.Event()
        #: The snapshot the first load reads (None: it scans), once decided.
        self._first: FirstLoad | None = None
        self._decided = False
        #: Why the snapshot is not (or no longer) used: the feed cannot read on from its
        #: offsets, or the first load could not use it (then a scan it is).
        self._refused: str | None = None

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

    # --- the first load's hand-off with the feed (event loop) ----------------------------------

    def snapshot_offsets(self) -> Offsets | None:
        """Where the feed reads ``tracks.new`` and ``tracks.assigned`` from at its first start
        (and for a partition it has no position in): the offsets the current model's
        snapshot covers when the first load reads it; None when that load scans MongoDB (the
        feed then reads ``TRACKS_REPLAY_S`` back). Decided at the first call of this or of the
        first load, from the snapshot's ``info``. From this call on, until the first load is
        done, what the feed sends is kept for that load."""
        self._keep_changes()
        first = self._first_load()
        return None if first is None or self._refused is not None else first.offsets

    def refuse_snapshot(self, why: str) -> None:
        """The feed cannot read the track topics on from the snapshot's offsets (``why``: the
        broker no longer holds those records): the first load scans MongoDB, and a live index
        that came from the snapshot is replaced by a scan (:meth:`_due`)."""
        if self._refused is None:
            log.warning(
                "catalogue: the snapshot's offsets cannot be read on from (%s); scanning MongoDB", why
            )
        self._refused = why

    def _first_load(self) -> FirstLoad | None:
        if not self._decided:
            self._first, self._decided = self._read_first(), True
        return self._first

    def _read_first(self) -> FirstLoad | None:
        models = self.settings.models_path
        topics = [self.settings.topic(TRACKS_NEW), self.settings.topic(TRACKS_ASSIGNED)]
        try:
            version = current_version(models)
            if version is None:
                return None
            return FirstLoad(version, covered_offsets(snapshot_path(models, version), version, topics))
        except (SnapshotError, OSError) as err:
            log.info("catalogue: the first load scans MongoDB (%s)", err)
            return None

    def _keep_changes(self) -> None:
        """Keep what the feed sends for the first load (from the feed's first seek or the
        library's start, whichever comes first)."""
        if self.index is None and self._backlog is None:
            self._backlog, self._overflowed = [], False

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
            "source": self.source,
            "error": self.error,
        }

    # --- the background task ---------------------------------------------------------------

    async def run(self, db: Callable[[], Db]) -> None:
        """Load, then keep the index current (model changes, reloads, tracks to read) until
        cancelled; MongoDB errors are retried with backoff (1 s doubling to 60 s)."""
        delay = 1.0
        self._keep_changes()
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
        if self.source == SNAPSHOT and self._refused is not None:
            return True  # the feed could not read on from the snapshot's offsets
        every = self.settings.gateway_catalogue_reload_s
        return every > 0 and time.monotonic() - self.loaded_at >= every

    async def _load(self, db: Db) -> None:
        version, started = self.current, time.monotonic()
        if self._backlog is None:  # (the first load's began with run() or the feed's first seek)
            self._backlog, self._overflowed = [], False
        try:
            index = await self._from_snapshot(version) if self.index is None else None
            source = SCAN if index is None else SNAPSHOT
            if index is None:
                index = await anyio.to_thread.run_sync(
                    load_index, db, self.settings.models_path, version, self._stop, abandon_on_cancel=True
                )
            for change in self._backlog:
                self._apply(index, change)
        except BaseException:
            if self.index is not None:  # (else the first load's changes are kept for its next try)
                self._backlog = None
            raise
        self._backlog = None
        self.index, self.loads, self.source = index, self.loads + 1, source
        self.load_s, self.loaded_at = time.monotonic() - started, time.monotonic()
        log.info(
            "catalogue: %d tracks in memory (%d placed by model %s) from a %s in %.1f s",
            len(index),
            index.placed(),
            version,
            source,
            self.load_s,
        )

    async def _from_snapshot(self, version: str | None) -> TrackIndex | None:
        """The first load's index from the snapshot the feed reads on from; None (logged) when
        there is none, the feed refused it, the model changed since, or it cannot be used."""
        first = self._first_load()
        if first is None or self._refused is not None:
            return None
        if first.version != version:
            self._refused = f"model {version} promoted since the snapshot of {first.version} was chosen"
            log.info("catalogue: %s; scanning MongoDB", self._refused)
            return None
        try:
            index = await anyio.to_thread.run_sync(
                load_index_from_snapshot,
                self.settings.models_path,
                version,
                first.offsets,
                abandon_on_cancel=True,
            )
        except Exception as err:  # a snapshot never stops the load: MongoDB is scanned instead
            self._refused = f"{type(err).__name__}: {err}"[:300]  # (not tried again on a retry)
            log.warning("catalogue: snapshot of %s not used (%s); scanning MongoDB", version, self._refused)
            return None
        return None if self._refused is not None else index  # (refused meanwhile: scan)

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
            "How long the last full load of the catalogue (snapshot or MongoDB scan) took (-1: none yet).",
            -1.0 if self.load_s is None else round(self.load_s, 3),
        )
        yield CounterMetricFamily(
            "cadenza_gateway_catalogue_loads",
            "Full loads of the catalogue (the model's snapshot at start, or a scan of MongoDB).",
            self.loads,
        )
        source = GaugeMetricFamily(
            "cadenza_gateway_catalogue_source",
            "1 for where the last full load of the catalogue came from: the model's catalogue "
            "snapshot (at start) or a scan of MongoDB; 0 for the other (both 0 before a load).",
            labels=["source"],
        )
        for name in (SNAPSHOT, SCAN):
            source.add_metric([name], 1 if self.source == name else 0)
        yield source
