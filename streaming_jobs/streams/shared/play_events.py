"""Parse ``cadenza.plays`` records into validated, cluster-labelled plays, or dead letters.

Source: raw Kafka records (pandas frames of :data:`streaming_jobs.streams.shared.kafka_records.RAW_COLUMNS`)
inside Spark's Python workers. Destination: a frame of :data:`PARSED_SCHEMA` that the
plays queries (:mod:`streaming_jobs.streams.plays`) split into good plays (``ok``) and
``cadenza.dlq`` records (``dlq`` holds the ``DeadLetter`` JSON).

Rules, in order: the bytes must decode to a :class:`schemas.events.PlayEvent`
(``SchemaError``); the event time must not be more than ``max_future_s`` ahead of the
clock (``FutureEventError``); the track must exist (``UnknownTrackError``). The cluster
comes from :class:`streaming_jobs.streams.shared.track_lookup.TrackClusters` (``-1`` while a stored
track has no cluster under the current model).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import pandas as pd

from schemas.codec import decode
from schemas.errors import SchemaError
from schemas.events import PlayEvent
from streaming_jobs.errors import FutureEventError, UnknownTrackError
from streaming_jobs.streams.shared.kafka_records import (
    RAW_COLUMNS,
    RAW_COLUMNS_DDL,
    dead_letter_json,
    strings_as_objects,
)
from streaming_jobs.streams.shared.track_lookup import UNKNOWN

STAGE: Final = "streaming_jobs.plays"
PARSED_SCHEMA: Final = (
    "ok boolean, error_class string, event_id string, user_id string, track_id long, "
    "kind string, position_s double, ts timestamp, cluster int, model_version string, "
    f"dlq string, {RAW_COLUMNS_DDL}"
)
OUTPUT_COLUMNS: Final = (
    "ok", "error_class", "event_id", "user_id", "track_id", "kind", "position_s", "ts",
    "cluster", "model_version", "dlq", *RAW_COLUMNS,
)  # fmt: skip
STRING_COLUMNS: Final = ("error_class", "event_id", "user_id", "kind", "model_version", "dlq", "topic")
#: A rejected row has every parsed column, null: a batch of only bad records must still
#: give typed columns (pandas makes a column that no row has into float NaN).
EMPTY_ROW: Final[dict[str, Any]] = dict.fromkeys(OUTPUT_COLUMNS)


def parse_plays(
    raw: pd.DataFrame,
    lookup: Callable[[np.ndarray], np.ndarray],
    *,
    now: datetime,
    max_future_s: float,
    model_version: str | None,
) -> pd.DataFrame:
    """Parsed frame for one batch of raw records (pure but for ``lookup``)."""
    limit = now + timedelta(seconds=max_future_s)
    rows: list[dict[str, Any]] = []
    events: list[PlayEvent | None] = []
    for raw_row in raw[list(RAW_COLUMNS)].to_dict("records"):
        event: PlayEvent | None = None
        try:
            event = decode(PlayEvent, raw_row["value"])
            if event.ts > limit:
                raise FutureEventError(
                    f"event time {event.ts.isoformat()} is more than {max_future_s:g} s ahead of "
                    f"the clock ({now.isoformat()}); fix the producer's clock"
                )
        except (SchemaError, FutureEventError) as err:
            rows.append(_rejected(raw_row, err))
            events.append(None)
            continue
        rows.append(raw_row)
        events.append(event)

    good = [i for i, e in enumerate(events) if e is not None]
    clusters = lookup(np.asarray([events[i].track_id for i in good], dtype=np.int64))  # type: ignore[union-attr]
    for i, cluster in zip(good, clusters, strict=True):
        event = events[i]
        assert event is not None
        if int(cluster) == UNKNOWN:
            rows[i] = _rejected(
                rows[i],
                UnknownTrackError(f"track {event.track_id} is not in the catalogue (tracks collection)"),
            )
            continue
        rows[i] = {
            **rows[i],
            "ok": True,
            "error_class": None,
            "event_id": str(event.event_id),
            "user_id": event.user_id,
            "track_id": event.track_id,
            "kind": event.kind.value,
            "position_s": event.position_s,
            "ts": event.ts,
            "cluster": int(cluster),
            "model_version": model_version,
            "dlq": None,
        }
    frame = pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["ok"] = frame["ok"].astype(bool)
    return strings_as_objects(frame, STRING_COLUMNS)


def _rejected(raw_row: dict[str, Any], err: Exception) -> dict[str, Any]:
    return {
        **EMPTY_ROW,
        **raw_row,
        "ok": False,
        "error_class": type(err).__name__,
        "dlq": dead_letter_json(raw_row, err, STAGE),
    }
