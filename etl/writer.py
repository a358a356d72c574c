"""What the ETL writes, and how: track documents, error records, events and their outbox.

Sources: feature vectors and metadata from the batch job's executors
(:mod:`etl.partition`), its driver (:mod:`etl.job`) and the feature import
(:mod:`etl.import_features`). Destinations: MongoDB ``tracks`` (:class:`TrackDoc`
shape), ``etl_errors`` (:class:`EtlErrorDoc`), ``etl_outbox`` (track ids whose
``TrackEvent`` may not be on Kafka yet) and the ``tracks.new`` topic (key = track id).

Shaped by what the storage does fast (FerretDB's SQLite backend; equally right on
MongoDB): ``insert_many`` is several times faster than per-document updates, and only
``_id`` equality is an index lookup. So new tracks are inserted unordered and a
duplicate key (11000) means "already stored"; ``replace_one`` is used only for tracks
stored under an older feature-set version; stored ids are read once per run.

Events are published after the insert succeeded, through a small outbox: an id is
marked in ``etl_outbox`` before its track is written and unmarked once its event is
flushed, so a run killed in between leaves a marker that the next run replays
(:func:`replay_outbox`) instead of a stored track that was never announced.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Final

import numpy as np
from kafka import KafkaProducer
from pymongo.collection import Collection as MongoCollection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from etl.errors import EtlError
from infra.mongo import Doc
from schemas.codec import encode, encode_key
from schemas.documents import EtlErrorDoc, TrackDoc
from schemas.events import TrackEvent
from schemas.vectors import VectorError, pack, unpack

TRACKS: Final = "tracks"
ERRORS: Final = "etl_errors"
OUTBOX: Final = "etl_outbox"
DUPLICATE_KEY: Final = 11000
#: A full scan decodes every document (~500/s on FerretDB for tracks whose vector was an
#: array of 518 doubles); an ``_id`` lookup costs about as much as decoding 1.7 such
#: documents. Scan below this ratio.
SCAN_RATIO: Final = 1.5
FLUSH_TIMEOUT_S: Final = 60.0


class StorageError(EtlError):
    """MongoDB refused a write for a reason other than "already stored"."""


# --- documents and events (pure) -------------------------------------------------------


def track_document(fields: Mapping[str, Any], features: np.ndarray | Sequence[float], source: str) -> Doc:
    """A validated ``tracks`` document: metadata fields + 518 features, packed float32."""
    doc = TrackDoc(**fields, source=source).to_mongo()
    doc["features"] = pack(features)
    return doc


def track_event(doc: Mapping[str, Any]) -> TrackEvent:
    """The ``tracks.new`` message announcing a stored track (text cut to the message limits)."""
    if doc.get("features") is None:
        raise EtlError(f"track {doc['_id']} has no features; it cannot be announced")
    try:
        features = unpack(doc["features"]).tolist()
    except VectorError as err:
        raise EtlError(f"track {doc['_id']}: {err}; it cannot be announced") from None
    return TrackEvent(
        track_id=int(doc["_id"]),
        title=str(doc.get("title") or "")[:1000],
        artist=str(doc.get("artist") or "")[:1000],
        album=str(doc.get("album") or "")[:1000],
        genres=list(doc.get("genres") or [])[:64],
        genre_top=None if doc.get("genre_top") is None else str(doc["genre_top"])[:200],
        duration_s=float(doc.get("duration_s") or 0.0),
        audio_path=doc.get("audio_path"),
        features=features,
        feature_set_version=str(doc["feature_set_version"]),
    )


# --- MongoDB ---------------------------------------------------------------------------


def insert_new(coll: MongoCollection[Doc], docs: Sequence[Doc]) -> set[int]:
    """Insert unordered; return the ``_id`` s inserted now (duplicates were already there).

    Raises :class:`StorageError` if any document failed for another reason.
    """
    if not docs:
        return set()
    try:
        coll.insert_many(list(docs), ordered=False)
    except BulkWriteError as err:
        problems = err.details.get("writeErrors", [])
        other = [p for p in problems if p.get("code") != DUPLICATE_KEY]
        if other:
            raise StorageError(
                f"MongoDB refused {len(other)} document(s) of {coll.name}: {other[0].get('errmsg', '?')}"
            ) from None
        duplicate = {int(p["index"]) for p in problems}
        return {int(d["_id"]) for i, d in enumerate(docs) if i not in duplicate}
    return {int(d["_id"]) for d in docs}


def replace_all(coll: MongoCollection[Doc], docs: Iterable[Doc]) -> set[int]:
    """Replace (or create) each document by ``_id``; for tracks of an older feature-set version."""
    done: set[int] = set()
    for doc in docs:
        coll.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        done.add(int(doc["_id"]))
    return done


def count(coll: MongoCollection[Doc]) -> int | None:
    """Documents in a collection from its statistics (no scan); ``None`` if unknown."""
    try:
        return int(coll.database.command("collStats", coll.name).get("count", 0))
    except PyMongoError:
        return None


def stored_versions(coll: MongoCollection[Doc], ids: Collection[int]) -> dict[int, str]:
    """``{track id: feature_set_version}`` of the given ids that are stored.

    One projected scan when the collection is not much larger than ``ids``, else one
    ``_id`` lookup per id (index lookups; a scan would decode every stored track).
    """
    if not ids:
        return {}
    size = count(coll)
    if size == 0:
        return {}
    wanted = set(ids)
    projection = {"_id": 1, "feature_set_version": 1}
    found: Iterable[Doc]
    if size is not None and size <= SCAN_RATIO * len(wanted):
        found = coll.find({}, projection)
    else:
        found = (d for d in (coll.find_one({"_id": i}, projection) for i in sorted(wanted)) if d is not None)
    return {int(d["_id"]): str(d.get("feature_set_version")) for d in found if d["_id"] in wanted}


def error_classes(coll: MongoCollection[Doc]) -> dict[int, str]:
    """``{track id: error_class}`` of every recorded ETL error (a small collection)."""
    return {int(d["_id"]): str(d.get("error_class")) for d in coll.find({}, {"_id": 1, "error_class": 1})}


def record_error(coll: MongoCollection[Doc], error: EtlErrorDoc) -> None:
    """Upsert an error record; re-recording the same failure changes nothing (``ts`` = first seen)."""
    doc = error.to_mongo()
    ts = doc.pop("ts")
    doc.pop("_id")
    coll.update_one({"_id": error.id}, {"$set": doc, "$setOnInsert": {"ts": ts}}, upsert=True)


def record_errors(coll: MongoCollection[Doc], errors: Sequence[EtlErrorDoc], known: Mapping[int, str]) -> int:
    """Record many errors: new ones with one insert, changed ones one by one; return the count written.

    ``known`` maps already-recorded track ids to their error class; a record whose
    class is unchanged is left as it is.
    """
    new = [e.to_mongo() for e in errors if e.id not in known]
    changed = [e for e in errors if e.id in known and known[e.id] != e.error_class]
    written = len(insert_new(coll, new))
    for error in changed:
        record_error(coll, error)
    return written + len(changed)


def forget_errors(coll: MongoCollection[Doc], ids: Iterable[int]) -> None:
    """Delete the error records of tracks that are now stored."""
    for track_id in ids:
        coll.delete_one({"_id": track_id})


def outbox_add(db: Database[Doc], ids: Iterable[int]) -> set[int]:
    """Mark ids as "event pending"; return those not marked before."""
    return insert_new(db[OUTBOX], [{"_id": int(i)} for i in ids])


def outbox_clear(db: Database[Doc], ids: Collection[int]) -> None:
    if ids:
        db[OUTBOX].delete_many({"_id": {"$in": sorted(int(i) for i in ids)}})


# --- Kafka -----------------------------------------------------------------------------


def publish(producer: KafkaProducer, topic: str, events: Sequence[TrackEvent]) -> int:
    """Send events keyed by track id and wait until the broker acknowledged all of them."""
    futures = [producer.send(topic, key=encode_key(e.track_id), value=encode(e)) for e in events]
    if futures:
        producer.flush(timeout=FLUSH_TIMEOUT_S)
        for future in futures:
            future.get(timeout=FLUSH_TIMEOUT_S)  # raises the send's error, if any
    return len(futures)


def replay_outbox(db: Database[Doc], producer: KafkaProducer, topic: str) -> int:
    """Publish the events an interrupted run left pending; return how many were sent.

    Marked tracks that are stored are announced from their stored document; marks of
    tracks that never got stored are dropped (the next run extracts them again).
    """
    pending = sorted(int(d["_id"]) for d in db[OUTBOX].find({}, {"_id": 1}))
    if not pending:
        return 0
    docs = [d for d in (db[TRACKS].find_one({"_id": i}) for i in pending) if d and d.get("features")]
    sent = publish(producer, topic, [track_event(d) for d in docs])
    outbox_clear(db, pending)
    return sent
