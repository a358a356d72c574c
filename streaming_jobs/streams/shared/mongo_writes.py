"""MongoDB writes of the streaming queries, idempotent so that a replayed micro-batch is harmless.

Sources: parsed plays and tracks (inside Spark's Python workers, through
``mapInPandas``) and the collected outputs of the stateful stages (on the driver).
Destinations: ``tracks`` (cluster + model version of new tracks), ``plays`` (history,
one document per ``event_id``, inserted once), ``sessions``, ``users`` and
``trending`` (absolute values keyed by natural ids, replaced on replay).

A transient MongoDB failure is retried with backoff for up to ``RETRY_S`` seconds;
after that the error propagates, the micro-batch fails, and the query (restarted from
its checkpoint) writes it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import pandas as pd
from pymongo import MongoClient, ReplaceOne
from pymongo.database import Database
from pymongo.errors import AutoReconnect, BulkWriteError, ConnectionFailure, ServerSelectionTimeoutError

from infra.mongo import Doc
from infra.mongo import client as mongo_client
from infra.settings import Settings
from streaming_jobs.streams.shared.track_lookup import Fetch

log = logging.getLogger(__name__)

DUPLICATE_KEY: Final = 11000
RETRY_S: Final = 30.0
CHUNK: Final = 1000
TRANSIENT = (AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError)
T = TypeVar("T")

_clients: dict[str, MongoClient[Doc]] = {}
_lock = threading.Lock()


def process_db(settings: Settings) -> Database[Doc]:
    """This process's database handle (one pymongo client per process and URI)."""
    with _lock:
        client = _clients.get(settings.mongo_uri)
        if client is None:
            client = _clients[settings.mongo_uri] = mongo_client(settings)
    return client[settings.mongodb_db]


def retrying(action: Callable[[], T], what: str) -> T:
    """Run ``action``, retrying transient MongoDB errors with backoff for up to RETRY_S."""
    deadline = time.monotonic() + RETRY_S
    delay = 0.2
    while True:
        try:
            return action()
        except TRANSIENT as err:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("MongoDB unavailable while %s (%s); retrying in %.1f s", what, err, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def bulk(db: Database[Doc], collection: str, ops: Sequence[Any], what: str) -> None:
    for part in chunks(ops):

        def attempt(part: Sequence[Any] = part) -> None:
            db[collection].bulk_write(list(part), ordered=False)

        retrying(attempt, what)


# --- lookups -----------------------------------------------------------------------------


def cluster_fetcher(settings: Settings) -> Fetch:
    """``tracks`` lookups by ``_id`` for :class:`streaming_jobs.streams.shared.track_lookup.TrackClusters`."""

    def fetch(ids: list[int]) -> dict[int, tuple[int | None, str | None]]:
        db = process_db(settings)
        found: dict[int, tuple[int | None, str | None]] = {}

        for track_id in ids:  # one indexed lookup each: `$in` is a scan on some servers

            def find(t: int = track_id) -> Doc | None:
                return db.tracks.find_one({"_id": t}, {"cluster": 1, "model_version": 1})

            doc = retrying(find, "looking up a track")
            if doc is not None:
                found[track_id] = (doc.get("cluster"), doc.get("model_version"))
        return found

    return fetch


# --- history -----------------------------------------------------------------------------


def utc_datetime(value: Any) -> datetime:
    """A timestamp cell from Spark (pandas Timestamp or datetime, naive = UTC) as an aware datetime."""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def play_documents(frame: pd.DataFrame) -> list[Doc]:
    """``plays`` documents of good parsed plays (``_id`` = event id)."""
    docs = []
    for row in frame[["event_id", "user_id", "track_id", "kind", "position_s", "ts", "cluster"]].itertuples(
        index=False
    ):
        docs.append(
            {
                "_id": row.event_id,
                "user_id": row.user_id,
                "track_id": int(row.track_id),
                "kind": row.kind,
                "position_s": float(row.position_s),
                "ts": utc_datetime(row.ts),
                "cluster": None if int(row.cluster) < 0 else int(row.cluster),
            }
        )
    return docs


def insert_once(db: Database[Doc], collection: str, docs: Sequence[Doc]) -> tuple[int, int]:
    """Insert documents whose ``_id`` is new; ``(inserted, already there)``."""
    inserted = duplicates = 0
    for part in chunks(docs):

        def attempt(part: Sequence[Doc] = part) -> tuple[int, int]:
            try:
                result = db[collection].insert_many(list(part), ordered=False)
                return len(result.inserted_ids), 0
            except BulkWriteError as err:
                errors = err.details.get("writeErrors", [])
                other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
                if other:
                    raise
                return int(err.details.get("nInserted", len(part) - len(errors))), len(errors)

        ins, dup = retrying(attempt, f"writing {collection}")
        inserted += ins
        duplicates += dup
    return inserted, duplicates


FrameWriter = Callable[[Iterable[pd.DataFrame]], Iterator[pd.DataFrame]]


def counting_writer(
    write_frame: Callable[[pd.DataFrame], dict[str, int]], columns: Sequence[str]
) -> FrameWriter:
    """A ``mapInPandas`` function that writes each non-empty frame and yields one row of totals."""

    def run(frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        totals = dict.fromkeys(columns, 0)
        for frame in frames:
            if len(frame):
                for name, amount in write_frame(frame).items():
                    totals[name] += amount
        yield pd.DataFrame({name: [amount] for name, amount in totals.items()})

    return run


def history_writer(settings: Settings) -> FrameWriter:
    """Store good plays once; counts ``inserted`` and ``duplicates``."""

    def write(frame: pd.DataFrame) -> dict[str, int]:
        inserted, duplicates = insert_once(process_db(settings), "plays", play_documents(frame))
        return {"inserted": inserted, "duplicates": duplicates}

    return counting_writer(write, ("inserted", "duplicates"))


# --- driver-side writes ------------------------------------------------------------------


def replace_all(db: Database[Doc], collection: str, docs: Sequence[Doc]) -> int:
    """Upsert whole documents by ``_id`` (absolute values: a replay rewrites the same)."""
    bulk(
        db, collection, [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], f"writing {collection}"
    )
    return len(docs)


def now_utc() -> datetime:
    return datetime.now(UTC)
