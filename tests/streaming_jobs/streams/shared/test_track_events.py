"""Unit tests of :func:`streaming_jobs.streams.shared.track_events.parse_tracks` and of
the ``tracks`` update it leads to (:func:`~streaming_jobs.streams.shared.track_events.track_update`).

Pandas frames in, no Spark.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
from bson.binary import Binary
from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas.codec import MAX_KEPT_BYTES, decode, encode
from schemas.events import DeadLetter, TrackEvent, utcnow
from schemas.features import N_FEATURES
from schemas.vectors import SUBTYPE, unpack
from streaming_jobs.streams.shared.track_events import (
    PARSED_SCHEMA,
    SOURCE,
    STAGE,
    parse_tracks,
    track_update,
)
from tests.streaming_jobs._arrow import to_arrow

TOPIC = "t.cadenza.tracks.new"


def raw_frame(values: list[bytes | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": [f"k{i}".encode() for i in range(len(values))],
            "value": values,
            "topic": [TOPIC] * len(values),
            "partition": [1] * len(values),
            "offset": list(range(len(values))),
        }
    )


@given(values=st.lists(st.one_of(st.binary(max_size=200), st.none()), max_size=6))
@example(values=[b"[" * 100_000, b"", None, b"\xff\xfe", b'{"track_id": 1e999}'])
@settings(max_examples=100, deadline=None)
def test_any_bytes_become_dead_letters_in_a_frame_arrow_accepts(values: list[bytes | None]) -> None:
    out = parse_tracks(raw_frame(values))
    assert len(out) == len(values)
    to_arrow(out, PARSED_SCHEMA)
    for row, value in enumerate(values):
        assert not out["ok"].iloc[row]
        letter = decode(DeadLetter, out["dlq"].iloc[row].encode("utf-8"))
        assert letter.stage == STAGE
        assert letter.offset == row
        # The letter keeps the value's first MAX_KEPT_BYTES and its whole length.
        assert base64.b64decode(letter.value_b64) == (value or b"")[:MAX_KEPT_BYTES]
        assert letter.value_bytes == (None if value is None else len(value))
        assert letter.truncated == (value is not None and len(value) > MAX_KEPT_BYTES)


def test_a_track_event_is_stored_with_its_features_packed() -> None:
    features = [i / 7 for i in range(N_FEATURES)]
    value = encode(TrackEvent(track_id=5, title="New", features=features))
    track_id, fields, on_insert = track_update(value, 2, "v1", utcnow())
    assert (track_id, fields["cluster"], fields["model_version"], on_insert["source"]) == (5, 2, "v1", SOURCE)
    assert isinstance(fields["features"], Binary) and fields["features"].subtype == SUBTYPE
    assert unpack(fields["features"]).tolist() == np.float32(features).tolist()


def test_features_float32_cannot_hold_become_a_dead_letter() -> None:
    value = json.dumps({"track_id": 5, "features": [1e39] * N_FEATURES}).encode()
    out = parse_tracks(raw_frame([value]))
    assert not out["ok"].iloc[0]
    assert "outside float32's range" in decode(DeadLetter, out["dlq"].iloc[0].encode("utf-8")).error
