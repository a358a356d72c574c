"""A listener's recently played tracks: their latest ``play`` of each track, newest first.

Source: MongoDB ``plays`` (:class:`schemas.documents.PlayDoc`, written by Spark's history
query a micro-batch after the play reached ``cadenza.plays``, so a play shows up within a
few seconds), read by ``(user_id, ts)`` (its index) at most ``limit * READ_FACTOR``
documents, only their ``track_id`` and ``ts``; the tracks' public fields come from the
in-memory catalogue (:class:`gateway.track_index.TrackIndex`) or, for tracks it does not
hold or before it is loaded, MongoDB ``tracks`` (:func:`read_tracks`).
Destination: the JSON of ``GET /api/me/recent`` (:mod:`gateway.routes.api`): each track as
``/api/tracks`` shows it (:mod:`gateway.track_json`) with ``played_at`` (ISO 8601, UTC);
a track played several times appears once, at its latest play; tracks no longer in the
catalogue are left out. The functions taking ``db`` block (worker threads); the others are pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from pymongo.database import Database

from gateway.track_json import PUBLIC, track_json

Db = Database[dict[str, Any]]

#: Entries answered when the request names no (usable) ``limit``, and at most.
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200
#: Documents read per entry asked for: repeats of a track and tracks gone from the catalogue
#: are dropped, so a few more than ``limit`` are read (never the listener's whole history).
READ_FACTOR: Final = 4


class Played(NamedTuple):
    """One track of the history, at its latest play."""

    track_id: int
    played_at: datetime


def bounded_limit(limit: int) -> int:
    """``limit`` (a parsed query number) within 1 … :data:`MAX_LIMIT`; 0 is no limit given:
    :data:`DEFAULT_LIMIT`."""
    return DEFAULT_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)


def latest_plays(docs: Iterable[Mapping[str, Any]]) -> list[Played]:
    """The first (newest, ``docs`` being newest first) play of each track of ``docs``, in
    their order; documents without an integer ``track_id`` or a datetime ``ts`` are left out."""
    seen: set[int] = set()
    found: list[Played] = []
    for doc in docs:
        tid, ts = doc.get("track_id"), doc.get("ts")
        if not isinstance(tid, int) or isinstance(tid, bool) or not isinstance(ts, datetime):
            continue
        if tid not in seen:
            seen.add(tid)
            found.append(Played(tid, ts))
    return found


def read_plays(db: Db, user_id: str, limit: int) -> list[Played]:
    """``user_id``'s latest ``play`` of each track among their newest ``limit * READ_FACTOR``
    plays, newest first (blocking)."""
    docs = (
        db["plays"]
        .find({"user_id": user_id, "kind": "play"}, {"_id": 0, "track_id": 1, "ts": 1})
        .sort("ts", -1)
        .limit(limit * READ_FACTOR)
    )
    return latest_plays(docs)


def read_tracks(db: Db, track_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The API JSON of those of ``track_ids`` that ``tracks`` holds, by id (blocking)."""
    if not track_ids:
        return {}
    docs = db.tracks.find({"_id": {"$in": track_ids}}, PUBLIC)
    return {int(doc["_id"]): track_json(doc) for doc in docs}


def iso_utc(ts: datetime) -> str:
    """``ts`` in ISO 8601, UTC (a naive datetime is UTC, as MongoDB stores it)."""
    return (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)).isoformat()


def answer(played: list[Played], tracks: Mapping[int, dict[str, Any]], limit: int) -> dict[str, Any]:
    """``{"items": [track + played_at], "total", "limit"}``: the first ``limit`` of ``played``
    that ``tracks`` holds (``total``: how many items there are)."""
    items = [
        {**tracks[p.track_id], "played_at": iso_utc(p.played_at)} for p in played if p.track_id in tracks
    ][:limit]
    return {"items": items, "total": len(items), "limit": limit}
