"""Track feature vectors for the model: MongoDB ``tracks`` -> a validated numpy table -> Spark.

Source: the ``tracks`` collection (``features``: 518 float32 values in
:data:`schemas.features.FEATURE_COLUMNS` order, written by ``etl``, packed or as a legacy
array, decoded by :mod:`schemas.vectors`; ``genre_top``) and
the ``plays`` history (for the popularity baseline). Destinations: a
:class:`FeatureTable` (ids, genres, float64 matrix, and every left-out track counted by
reason), and from it a Spark DataFrame ``(id, holdout, vector)`` for the training job.

Rows are never dropped silently: a track without features, with the wrong number of
values, with NaN/inf/null/non-numeric values or from another feature-set version is
left out and counted under that reason.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import compress, islice
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy as np
from numpy.typing import NDArray
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from infra.mongo import Doc
from schemas.features import FEATURE_SET_VERSION, N_FEATURES
from schemas.vectors import Kind, unpack_many
from streaming_jobs.errors import RegistryError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


#: Reasons a track is left out of training, in report order.
EXCLUSION_REASONS: Final = ("missing", "wrong_length", "not_finite", "other_feature_set")
#: :class:`schemas.vectors.VectorError` kinds -> the report's reasons (the report's names
#: predate the packed layout: another type or binary layout counts as a wrong length, and
#: nulls or text as not finite).
_REASON: Final[dict[Kind, str]] = {
    "missing": "missing",
    "wrong_type": "wrong_length",
    "wrong_length": "wrong_length",
    "not_numeric": "not_finite",
    "not_finite": "not_finite",
}
#: Documents decoded per :func:`schemas.vectors.unpack_many` call.
CHUNK: Final = 2000
_PROJECTION: Final = {"features": 1, "genre_top": 1, "feature_set_version": 1}
T = TypeVar("T")


@dataclass(frozen=True)
class FeatureTable:
    """Usable tracks (sorted by id) and the ids of those left out, by reason."""

    ids: NDArray[np.int64]
    genres: tuple[str | None, ...]
    matrix: NDArray[np.float64]
    excluded: dict[str, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ids.size)

    @property
    def excluded_counts(self) -> dict[str, int]:
        return {reason: len(self.excluded.get(reason, [])) for reason in EXCLUSION_REASONS}

    @property
    def excluded_ids(self) -> list[int]:
        return sorted(i for ids in self.excluded.values() for i in ids)

    def subset(self, mask: NDArray[np.bool_]) -> FeatureTable:
        return FeatureTable(
            self.ids[mask], tuple(g for g, m in zip(self.genres, mask, strict=True) if m), self.matrix[mask]
        )


def _chunks(docs: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    it = iter(docs)
    while chunk := list(islice(it, size)):
        yield chunk


def validate(docs: Iterable[Mapping[str, Any]], chunk: int = CHUNK) -> FeatureTable:
    """Turn ``tracks`` documents into a :class:`FeatureTable` (pure; no IO).

    Vectors are decoded ``chunk`` documents at a time by :func:`schemas.vectors.unpack_many`
    (packed or legacy arrays alike), so only float32 blocks are kept, never the documents.
    """
    ids: list[int] = []
    genres: list[str | None] = []
    blocks: list[NDArray[np.float32]] = []
    excluded: dict[str, list[int]] = {r: [] for r in EXCLUSION_REASONS}
    for batch in _chunks(docs, chunk):
        candidates: list[Mapping[str, Any]] = []
        for doc in batch:
            if doc.get("features") is None:
                excluded["missing"].append(int(doc["_id"]))
            elif doc.get("feature_set_version", FEATURE_SET_VERSION) != FEATURE_SET_VERSION:
                excluded["other_feature_set"].append(int(doc["_id"]))
            else:
                candidates.append(doc)
        vectors = unpack_many([doc["features"] for doc in candidates])
        for i, err in vectors.errors.items():
            excluded[_REASON[err.kind]].append(int(candidates[i]["_id"]))
        for doc in compress(candidates, vectors.ok.tolist()):
            ids.append(int(doc["_id"]))
            genre = doc.get("genre_top")
            genres.append(str(genre) if genre not in (None, "") else None)
        blocks.append(vectors.matrix)
    id_array = np.asarray(ids, dtype=np.int64)
    matrix = np.concatenate(blocks, dtype=np.float64) if blocks else np.empty((0, N_FEATURES))
    blocks.clear()
    if id_array.size > 1 and not bool((np.diff(id_array) > 0).all()):
        order = np.argsort(id_array, kind="stable")
        id_array, matrix, genres = id_array[order], matrix[order], [genres[i] for i in order]
    return FeatureTable(
        ids=id_array,
        genres=tuple(genres),
        matrix=matrix,
        excluded={r: sorted(v) for r, v in excluded.items()},
    )


def load_tracks(
    db: Database[Doc],
    *,
    batch_size: int = 2000,
    query: Mapping[str, Any] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> FeatureTable:
    """Read every track's vector (or those matching ``query``) in batches and validate them
    as they arrive (float32 blocks are kept, never the raw documents)."""

    def batches() -> Iterator[list[Mapping[str, Any]]]:
        with db["tracks"].find(dict(query or {}), _PROJECTION, batch_size=batch_size) as cursor:
            yield from _chunks(cursor, batch_size)

    def stream() -> Iterator[Mapping[str, Any]]:
        for batch in read_ahead(batches()):
            yield from batch
            if on_batch is not None:
                on_batch(len(batch))

    try:
        return validate(stream())
    except PyMongoError as err:
        raise RegistryError(
            f"reading tracks from database {db.name} failed ({err}); is MongoDB up (`cadenza stack up`)?"
        ) from None


def read_ahead(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``batches``, produced by a thread up to ``depth`` ahead of the caller.

    pymongo asks the server for a cursor's next batch only once the previous one is used
    up; reading ahead lets the server prepare it (FerretDB: ~14 s to scan 106,574 tracks)
    while this thread decodes the previous one (~3.5 s). A failure in the thread is raised
    here; stopping early stops the thread."""
    handoff: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: T | _End) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_End(None))
        except BaseException as err:  # handed to the caller, raised there
            put(_End(err))

    worker = threading.Thread(target=produce, name="cadenza-read-ahead", daemon=True)
    worker.start()
    try:
        while not isinstance(item := handoff.get(), _End):
            yield item
        if item.error is not None:
            raise item.error
    finally:
        stop.set()
        worker.join()


@dataclass(frozen=True)
class _End:
    error: BaseException | None


def count_tracks(db: Database[Doc]) -> int:
    """Documents in ``tracks``, from the collection's statistics (``collStats``: 0.6 s at
    106,574 tracks on FerretDB, where ``estimated_document_count`` scans them all, 16 s)."""
    try:
        try:
            count = db.command("collStats", "tracks").get("count")
        except OperationFailure:  # e.g. no such collection on some servers
            count = None
        return count if isinstance(count, int) else int(db["tracks"].estimated_document_count())
    except PyMongoError as err:
        raise RegistryError(f"counting tracks in database {db.name} failed ({err})") from None


def play_counts(db: Database[Doc], limit: int = 1000) -> list[tuple[int, int]]:
    """``(track_id, plays)`` of the most played tracks in the ``plays`` history, most first."""
    pipeline: list[Doc] = [
        {"$group": {"_id": "$track_id", "n": {"$sum": 1}}},
        {"$sort": {"n": -1, "_id": 1}},
        {"$limit": limit},
    ]
    try:
        return [(int(d["_id"]), int(d["n"])) for d in db["plays"].aggregate(pipeline) if d["_id"] is not None]
    except PyMongoError as err:
        raise RegistryError(f"reading play counts from database {db.name} failed ({err})") from None


def holdout_mask(ids: NDArray[np.int64], share: float, seed: int) -> NDArray[np.bool_]:
    """True for the held-out tracks: a seeded hash of each id, so a track's side of the
    split does not change when other tracks are added or removed."""
    with np.errstate(over="ignore"):
        x = ids.astype(np.uint64) + np.uint64(seed % 2**63) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    u = (x >> np.uint64(11)).astype(np.float64) / float(2**53)
    return np.asarray(u < share)


def to_spark(
    spark: SparkSession, ids: NDArray[np.int64], matrix: NDArray[np.float64], holdout: NDArray[np.bool_]
) -> DataFrame:
    """A DataFrame ``(id long, holdout boolean, vector VectorUDT)`` built through Arrow."""
    import pyarrow as pa
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql.functions import col

    n, d = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix, dtype=np.float64).ravel())
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32 if n * d < 2**31 else np.int64))
    list_type = pa.ListArray if offsets.type == pa.int32() else pa.LargeListArray
    table = pa.table(
        {
            "id": pa.array(ids, type=pa.int64()),
            "holdout": pa.array(holdout, type=pa.bool_()),
            "features": list_type.from_arrays(offsets, values),
        }
    )
    df = spark.createDataFrame(table)
    return df.select("id", "holdout", array_to_vector(col("features")).alias("vector"))


def genre_counts(genres: Iterable[str | None]) -> Counter[str]:
    return Counter(g for g in genres if g is not None)
