"""Parse ``cadenza.tracks.new`` records for the assignment query, and shape what it stores.

Source: raw Kafka records (pandas frames of :data:`streaming_jobs.streams.shared.kafka_records.RAW_COLUMNS`)
inside Spark's Python workers. Destinations: a frame of :data:`PARSED_SCHEMA` (good
tracks with their feature vector for the PipelineModel, or a ``DeadLetter`` JSON in
``dlq``), then, once a cluster is known, the ``tracks`` document
(:func:`track_update`) and the ``TrackAssigned`` message (:func:`assigned_message`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import pandas as pd

from schemas.codec import decode, encode
from schemas.documents import TrackDoc
from schemas.errors import SchemaError
from schemas.events import TrackAssigned, TrackEvent
from streaming_jobs.streams.shared.kafka_records import (
    RAW_COLUMNS,
    RAW_COLUMNS_DDL,
    dead_letter_json,
    strings_as_objects,
)

STAGE: Final = "streaming_jobs.assign"
PARSED_SCHEMA: Final = (
    f"ok boolean, error_class string, track_id long, features array<double>, dlq string, {RAW_COLUMNS_DDL}"
)
SOURCE: Final = "stream"


def parse_tracks(raw: pd.DataFrame) -> pd.DataFrame:
    """Parsed frame for one batch of raw ``tracks.new`` records (pure)."""
    rows: list[dict[str, Any]] = []
    for raw_row in raw[list(RAW_COLUMNS)].to_dict("records"):
        try:
            event = decode(TrackEvent, raw_row["value"])
        except SchemaError as err:
            rows.append(
                {
                    **raw_row,
                    "ok": False,
                    "error_class": type(err).__name__,
                    "track_id": None,
                    "features": None,
                    "dlq": dead_letter_json(raw_row, err, STAGE),
                }
            )
            continue
        rows.append(
            {
                **raw_row,
                "ok": True,
                "error_class": None,
                "track_id": event.track_id,
                "features": event.features,
                "dlq": None,
            }
        )
    columns = ["ok", "error_class", "track_id", "features", "dlq", *RAW_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    frame["ok"] = frame["ok"].astype(bool)
    return strings_as_objects(frame, ("error_class", "dlq", "topic"))


def track_update(
    value: bytes, cluster: int | None, model_version: str | None, now: datetime
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """``(_id, $set, $setOnInsert)`` of the ``tracks`` upsert for one validated TrackEvent.

    Only what the event carries is set, so fields the ETL stored (``subset``,
    ``source``) survive; a track first seen here gets ``source: "stream"``. The
    event's JSON list of features is stored packed (float32 binary, :mod:`schemas.vectors`).
    """
    event = decode(TrackEvent, value)
    doc = TrackDoc(
        id=event.track_id,
        title=event.title,
        artist=event.artist,
        album=event.album,
        genres=event.genres,
        genre_top=event.genre_top,
        duration_s=event.duration_s,
        audio_path=event.audio_path,
        features=event.features,
        feature_set_version=event.feature_set_version,
        source=SOURCE,
        cluster=cluster,
        model_version=model_version,
        updated=now,
    ).to_mongo()
    on_insert = {name: doc.pop(name) for name in ("source", "subset")}
    return int(doc.pop("_id")), doc, on_insert


def assigned_message(track_id: int, cluster: int, model_version: str, now: datetime) -> bytes:
    return encode(TrackAssigned(track_id=track_id, cluster=cluster, model_version=model_version, ts=now))
