"""Read what ``cadenza evaluate replay`` replays: a plays history and the current catalogue (IO).

Sources:

* MongoDB ``plays`` (one document per event, written by the ``plays-history`` stream:
  ``{_id: event_id, user_id, track_id, kind, position_s, ts, cluster}``), in one cursor
  sorted by ``ts`` then ``_id`` and read ``batch_size`` documents at a time, from
  ``since`` on and at most ``limit`` documents (:func:`mongo_history`);
* or a JSON-lines file of the same fields (``_id`` or ``event_id``; ``ts`` as ISO 8601 or
  seconds since the epoch; ``.gz`` read compressed), read whole and put in event-time
  order (:func:`file_history`);
* the current model (``<models_path>/current``) and its catalogue snapshot
  (``<models_path>/<version>/catalogue.npz``), else a scan of MongoDB ``tracks`` placed by
  the model, as a worker starts (:func:`load_replay_catalogue`).

Destination: :func:`recommender_stream.replay.replay`. Rows become events (or the reason
they cannot) through :func:`recommender_stream.replay.event_from_row`; nothing here
decides what is scored.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

from pymongo.database import Database
from pymongo.errors import PyMongoError

from infra.mongo import Doc
from infra.settings import duration_s
from recommender_stream.catalogue import Catalogue
from recommender_stream.catalogue_loader import catalogue_from_snapshot, load_catalogue, load_model
from recommender_stream.errors import CatalogueError, ReplayError
from recommender_stream.replay import BadRow, ReplayEvent, event_from_row
from schemas.catalogue_snapshot import SnapshotError, load_snapshot, snapshot_path

BATCH: Final = 2000
FIELDS: Final = {"user_id": 1, "track_id": 1, "kind": 1, "ts": 1}
HOW_TO_MAKE_HISTORY: Final = (
    "make one by playing music: `cadenza demo` starts the whole system (then play in the "
    "player, or run `cadenza simulate --duration 300` for simulated listeners; the "
    "plays-history stream stores every event in plays), or replay a JSON-lines file with --file"
)
NO_MODEL: Final = "no current model under {path}: run `cadenza model train --promote` first"


@dataclass(frozen=True)
class History:
    """History rows to replay, in event-time order, with where they come from."""

    rows: Iterable[ReplayEvent | BadRow]
    #: How many rows :attr:`rows` yields, when known before reading.
    total: int | None
    where: str


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A ``--since`` value: an ISO 8601 date or time (naive = UTC), or a duration before ``now``
    such as ``"7 days"`` or ``"3 hours"``; :class:`ValueError` saying what is accepted."""
    try:
        return (now or datetime.now(UTC)) - timedelta(seconds=duration_s(text))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(text.strip()), datetime.min.time())
        except ValueError:
            raise ValueError(
                f"{text!r} is neither an ISO 8601 time (2024-05-01, 2024-05-01T12:00Z) nor a "
                "duration before now ('7 days', '3 hours')"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def mongo_history(
    db: Database[Doc], *, since: datetime | None = None, limit: int | None = None, batch_size: int = BATCH
) -> History:
    """``plays`` of ``db`` in event-time order (``ts``, then ``_id``); :class:`ReplayError` when
    MongoDB cannot be read or holds no plays in the range (saying how to make some)."""
    query: dict[str, Any] = {} if since is None else {"ts": {"$gte": since}}
    where = f"MongoDB {db.name}.plays" + ("" if since is None else f" since {since.isoformat()}")
    try:
        total = db.plays.count_documents(query)
    except PyMongoError as err:
        raise ReplayError(f"reading {where} failed ({err}); is MongoDB up? (`cadenza stack up`)") from None
    if limit is not None:
        total = min(total, limit)
    if total == 0:
        raise ReplayError(f"no plays to replay in {where}: {HOW_TO_MAKE_HISTORY}")

    def rows() -> Iterator[ReplayEvent | BadRow]:
        cursor = (
            db.plays.find(query, FIELDS, batch_size=batch_size)
            .sort([("ts", 1), ("_id", 1)])
            .limit(limit or 0)
            .allow_disk_use(True)
        )
        try:
            for doc in cursor:
                yield event_from_row(doc)
        except PyMongoError as err:
            raise ReplayError(f"reading {where} failed ({err}); is MongoDB up?") from None
        finally:
            cursor.close()

    return History(rows(), total, where)


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def file_history(path: Path, *, since: datetime | None = None, limit: int | None = None) -> History:
    """The JSON-lines history at ``path`` in event-time order (a stable sort: events of the same
    time keep the file's order), from ``since`` on and at most ``limit`` events; lines that
    are not JSON objects or not events are kept as :class:`BadRow` (blank lines are skipped).
    :class:`ReplayError` when the file cannot be read or holds no rows."""
    events: list[ReplayEvent] = []
    bad: list[BadRow] = []
    try:
        with _open(path) as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    bad.append(BadRow("not JSON", line.strip()[:160]))
                    continue
                item = event_from_row(row)
                if isinstance(item, BadRow):
                    bad.append(item)
                else:
                    events.append(item)
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ReplayError(f"cannot read the history {path}: {err}") from None
    if not events and not bad:
        raise ReplayError(f"{path} holds no plays: {HOW_TO_MAKE_HISTORY}")
    if since is not None:
        start = since.timestamp()
        events = [e for e in events if e.ts >= start]
    events.sort(key=lambda e: e.ts)
    if limit is not None:
        events = events[:limit]
    rows: list[ReplayEvent | BadRow] = [*bad, *events]
    return History(rows, len(rows), str(path))


@dataclass(frozen=True)
class ReplayCatalogue:
    catalogue: Catalogue
    #: ``snapshot`` or ``scan``.
    source: str
    #: The snapshot's path, or why none was used.
    detail: str
    left_out: int


def load_replay_catalogue(models_path: Path, db: Callable[[], Database[Doc]]) -> ReplayCatalogue:
    """The current model's catalogue: its snapshot when usable, else a scan of ``tracks`` in
    ``db()`` (called only then). :class:`CatalogueError` saying what to do when there is no
    current model, MongoDB cannot be read, or the catalogue is empty."""
    model = load_model(models_path)
    if model is None:
        raise CatalogueError(NO_MODEL.format(path=models_path))
    path = snapshot_path(models_path, model.version)
    try:
        loaded = catalogue_from_snapshot(load_snapshot(path, model.version), model)
        found = ReplayCatalogue(loaded.catalogue, "snapshot", str(path), loaded.left_out)
    except SnapshotError as err:
        try:
            loaded = load_catalogue(db(), model)
        except PyMongoError as mongo_err:
            raise CatalogueError(
                f"no usable snapshot ({err}) and MongoDB failed ({mongo_err}); is it up? (`cadenza stack up`)"
            ) from None
        found = ReplayCatalogue(loaded.catalogue, "scan", f"no usable snapshot: {err}", loaded.left_out)
    if not len(found.catalogue):
        raise CatalogueError(
            f"the catalogue of model {model.version} is empty ({found.detail}): import tracks "
            "(`cadenza etl run`) and run `cadenza model train --promote` first"
        )
    return found
