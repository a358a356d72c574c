"""``cadenza db migrate``: legacy feature vectors in ``tracks`` -> the packed float32 layout.

Source: the ``tracks`` documents whose ``features`` is still a BSON array (queried by
BSON type, ``{"$type": "array"}``), read with one cursor in ``_id`` order, ``batch_size``
at a time. Destination: the same documents, ``features`` set to
:func:`schemas.vectors.packed_from_legacy`'s value by one unordered ``bulk_write`` of
``UpdateOne`` per batch. Each update is filtered on its ``_id`` *and* on ``features``
still being an array, so a packed value that a (new) writer stored meanwhile is never
overwritten; such documents are counted as changed meanwhile.

Idempotent and resumable: only arrays are selected, so a second run converts nothing
and says so, and a run stopped midway (killed, or ``limit``) is finished by the next.
A vector that cannot be converted (wrong length, non-numeric or non-finite values, not
an array of numbers) is left exactly as it is and reported with its reason; the command
never deletes or rewrites anything else.

Run it once every writer is on the packed layout: a writer of an older Cadenza that
stores an array between this job's read and its write would have its array replaced by
the packed form of the one read. One server-side pass counts the layouts first (the
progress bar's total, the "already packed" figure). On the local FerretDB every pass
decodes every document and the ``_id`` sort is done in memory, so the first batch
arrives once the server has read all the arrays; its updates find their document by
``_id`` only with the local stack's build of FerretDB (``infra/stack/ferretdb.py``,
``PATCHES``: upstream v1.24 scans the whole collection for a filter holding more than
``_id``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from infra.errors import UnreachableError
from infra.mongo import Doc
from schemas.vectors import VectorError, packed_from_legacy

Progress = Callable[[int, int], None]

TRACKS: Final = "tracks"
FIELD: Final = "features"
BATCH: Final = 500
#: The filter of every read and write: the vector is still a legacy array.
LEGACY: Final = {FIELD: {"$type": "array"}}


@dataclass
class VectorMigration:
    """What one ``cadenza db migrate`` run found and did."""

    legacy: int = 0  # arrays found when the run started
    already_packed: int = 0  # packed vectors found when the run started
    without_vector: int = 0  # documents with no vector (missing, null, or another type)
    converted: int = 0
    changed_meanwhile: int = 0  # arrays another writer changed between this run's read and write
    failed: dict[int, str] = field(default_factory=dict)  # track id -> why it was left as is
    elapsed_s: float = 0.0

    @property
    def remaining(self) -> int:
        """Arrays this run did not reach (stopped by ``limit``); failures stay arrays too."""
        return max(0, self.legacy - self.converted - self.changed_meanwhile - len(self.failed))

    def failure_kinds(self) -> Counter[str]:
        return Counter(reason.split(":", 1)[0] for reason in self.failed.values())

    def line(self) -> str:
        """The one-line summary the command prints."""
        kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.failure_kinds().items()))
        parts = [
            f"converted {self.converted:,}",
            f"already packed {self.already_packed:,}",
            f"failed {len(self.failed):,}" + (f" ({kinds})" if kinds else ""),
        ]
        if self.changed_meanwhile:
            parts.append(f"changed meanwhile {self.changed_meanwhile:,}")
        if self.remaining:
            parts.append(f"not reached {self.remaining:,} (run again)")
        if self.without_vector:
            parts.append(f"without a vector {self.without_vector:,}")
        verdict = "nothing changed: " if self.converted == 0 else ""
        return f"{verdict}{' · '.join(parts)} in {self.elapsed_s:.1f} s"


# --- one batch (pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """The updates converting a batch of legacy documents (``ids[i]`` is ``ops[i]``'s
    document), and the ids left as they are, with ``kind: reason``."""

    ids: list[int]
    ops: list[UpdateOne]
    failed: dict[int, str]


def plan(docs: Iterable[Mapping[str, Any]]) -> Batch:
    """Convert each document's legacy vector; the write is filtered on its ``_id`` and on
    the vector still being an array."""
    batch = Batch([], [], {})
    for doc in docs:
        try:
            packed = packed_from_legacy(doc.get(FIELD))
        except VectorError as err:
            batch.failed[int(doc["_id"])] = f"{err.kind}: {err.reason}"
            continue
        batch.ids.append(int(doc["_id"]))
        batch.ops.append(UpdateOne({"_id": doc["_id"], **LEGACY}, {"$set": {FIELD: packed}}))
    return batch


# --- IO ----------------------------------------------------------------------------------


def layouts(coll: Collection[Doc]) -> Counter[str]:
    """Documents per BSON type of their vector (``array``, ``binData``, ``missing``, …)."""
    rows = coll.aggregate([{"$group": {"_id": {"$type": f"${FIELD}"}, "n": {"$sum": 1}}}])
    return Counter({str(r["_id"]): int(r["n"]) for r in rows})


def write(coll: Collection[Doc], batch: Batch) -> tuple[int, dict[int, str]]:
    """Apply a batch: ``(converted, {id: reason} of updates the server refused)``."""
    if not batch.ops:
        return 0, {}
    try:
        return coll.bulk_write(batch.ops, ordered=False).matched_count, {}
    except BulkWriteError as err:
        refused = {
            batch.ids[e["index"]]: f"refused: {e.get('errmsg', '?')}"
            for e in err.details.get("writeErrors", [])
        }
        return int(err.details.get("nMatched", 0)), refused


def migrate_vectors(
    db: Database[Doc],
    *,
    batch_size: int = BATCH,
    limit: int | None = None,
    progress: Progress | None = None,
) -> VectorMigration:
    """Convert the legacy vectors of ``tracks`` (at most ``limit`` documents) in ``_id`` order."""
    started = time.perf_counter()
    coll = db[TRACKS]
    result = VectorMigration()
    try:
        found = layouts(coll)
        result.legacy, result.already_packed = found["array"], found["binData"]
        result.without_vector = sum(found.values()) - result.legacy - result.already_packed
        total = result.legacy if limit is None else min(limit, result.legacy)
        done = 0
        if progress:
            progress(0, total)
        if total:
            cursor = coll.find(LEGACY, {FIELD: 1}).sort("_id", 1).batch_size(batch_size)
            if limit is not None:
                cursor = cursor.limit(limit)
            batch: list[Doc] = []
            for doc in cursor:
                batch.append(doc)
                if len(batch) >= batch_size:
                    done += _run(coll, batch, result)
                    if progress:
                        progress(done, total)
            done += _run(coll, batch, result)
            if progress:
                progress(done, total)
    except PyMongoError as err:
        raise UnreachableError(
            f"migrating {db.name}.{TRACKS} failed ({type(err).__name__}: {err}); what was written so "
            "far stays: fix the cause, then run `cadenza db migrate` again to finish"
        ) from None
    result.elapsed_s = time.perf_counter() - started
    return result


def _run(coll: Collection[Doc], docs: list[Doc], result: VectorMigration) -> int:
    """Convert and write one batch into ``result``; return its size (and empty ``docs``)."""
    batch = plan(docs)
    converted, refused = write(coll, batch)
    result.converted += converted
    result.changed_meanwhile += len(batch.ops) - converted - len(refused)
    result.failed.update(batch.failed)
    result.failed.update(refused)
    size = len(docs)
    docs.clear()
    return size
