"""Unit tests of :func:`streaming_jobs.streams.shared.play_events.parse_plays`.

Pandas frames in, no Spark.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas.codec import decode, encode
from schemas.events import DeadLetter, PlayEvent, PlayKind
from streaming_jobs.streams.shared.play_events import OUTPUT_COLUMNS, PARSED_SCHEMA, STAGE, parse_plays
from streaming_jobs.streams.shared.track_lookup import UNASSIGNED, UNKNOWN
from tests.streaming_jobs._arrow import to_arrow

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TOPIC = "t.cadenza.plays"
MODEL = "20260301-000000-aaaaaa"
CLUSTERS = {1: 4, 2: 0, 3: UNASSIGNED}  # anything else is unknown


class Lookup:
    def __init__(self, clusters: dict[int, int]) -> None:
        self.clusters = clusters
        self.calls: list[list[int]] = []

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        self.calls.append(ids.tolist())
        return np.asarray([self.clusters.get(int(i), UNKNOWN) for i in ids], dtype=np.int64)


def event(
    track: int, *, user: str = "u1", kind: str = "play", ts: datetime = NOW, pos: float = 0.0
) -> PlayEvent:
    return PlayEvent(
        event_id=uuid.uuid4(), user_id=user, track_id=track, kind=PlayKind(kind), position_s=pos, ts=ts
    )


def raw_frame(values: Sequence[bytes | None], *, partition: int = 2, first_offset: int = 100) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": [f"k{i}".encode() for i in range(len(values))],
            "value": values,
            "topic": [TOPIC] * len(values),
            "partition": [partition] * len(values),
            "offset": [first_offset + i for i in range(len(values))],
        }
    )


def parse(values: Sequence[bytes | None], lookup: Lookup | None = None, **kw: Any) -> pd.DataFrame:
    options: dict[str, Any] = {"now": NOW, "max_future_s": 60.0, "model_version": MODEL, **kw}
    return parse_plays(raw_frame(values), lookup or Lookup(CLUSTERS), **options)


def letter(cell: Any) -> DeadLetter:
    assert isinstance(cell, str)
    return decode(DeadLetter, cell.encode("utf-8"))


def test_good_plays_come_out_with_fields_and_cluster() -> None:
    a = event(1, user="alice", kind="complete", ts=NOW - timedelta(minutes=5), pos=123.5)
    b = event(3, user="bob", kind="skip", ts=NOW)
    c = event(2, user="carol", kind="like", ts=NOW + timedelta(seconds=60))  # exactly at the limit
    lookup = Lookup(CLUSTERS)
    out = parse([encode(a), encode(b), encode(c)], lookup)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert out["ok"].tolist() == [True, True, True]
    assert out["ok"].dtype == bool
    assert out["error_class"].isna().all()
    assert out["dlq"].isna().all()
    assert out["event_id"].tolist() == [str(a.event_id), str(b.event_id), str(c.event_id)]
    assert out["user_id"].tolist() == ["alice", "bob", "carol"]
    assert out["track_id"].tolist() == [1, 3, 2]
    assert out["kind"].tolist() == ["complete", "skip", "like"]
    assert out["position_s"].tolist() == [123.5, 0.0, 0.0]
    assert out["cluster"].tolist() == [4, UNASSIGNED, 0]
    assert out["model_version"].tolist() == [MODEL] * 3
    assert list(out["ts"]) == [pd.Timestamp(a.ts), pd.Timestamp(b.ts), pd.Timestamp(c.ts)]
    assert str(out["ts"].dt.tz) == "UTC"
    # the raw columns are carried along unchanged
    assert out["value"].tolist() == [encode(a), encode(b), encode(c)]
    assert out["key"].tolist() == [b"k0", b"k1", b"k2"]
    assert out["offset"].tolist() == [100, 101, 102]
    assert out["partition"].tolist() == [2, 2, 2]
    assert out["topic"].tolist() == [TOPIC] * 3
    # one lookup for the whole batch
    assert lookup.calls == [[1, 3, 2]]


def test_event_times_are_normalised_to_utc() -> None:
    from datetime import timezone

    local = datetime(2026, 3, 2, 13, 30, tzinfo=timezone(timedelta(hours=2)))
    out = parse([encode(event(1, ts=local))])
    assert out["ok"].tolist() == [True]
    assert out["ts"].iloc[0] == pd.Timestamp("2026-03-02T11:30:00Z")


def assert_rejected(
    out: pd.DataFrame, row: int, error_class: str, original: bytes | None, offset: int
) -> DeadLetter:
    assert not out["ok"].iloc[row]
    assert out["error_class"].iloc[row] == error_class
    dl = letter(out["dlq"].iloc[row])
    assert dl.error_class == error_class
    assert dl.stage == STAGE
    assert dl.topic == TOPIC
    assert dl.partition == 2
    assert dl.offset == offset
    assert dl.key_b64 == base64.b64encode(f"k{row}".encode()).decode()
    assert base64.b64decode(dl.value_b64) == (original or b"")
    assert dl.error
    # nothing of a parsed play leaks into a rejected row
    for column in ("event_id", "user_id", "track_id", "kind", "cluster", "model_version"):
        assert pd.isna(out[column].iloc[row]), column
    assert pd.isna(out["ts"].iloc[row])
    return dl


def test_schema_errors_are_dead_lettered_with_the_original_bytes() -> None:
    good = encode(event(1))
    wrong_type = json.dumps(
        {"user_id": "u1", "track_id": "not a number", "kind": "play", "ts": NOW.isoformat()}
    ).encode()
    bad_kind = json.dumps({"user_id": "u1", "track_id": 1, "kind": "dance", "ts": NOW.isoformat()}).encode()
    naive_ts = json.dumps(
        {"user_id": "u1", "track_id": 1, "kind": "play", "ts": "2026-03-02T12:00:00"}
    ).encode()
    values: list[bytes | None] = [
        b"{not json",
        good,
        wrong_type,
        b"\xff\xfe\x00",
        bad_kind,
        b"[1, 2]",
        naive_ts,
    ]
    out = parse(values)
    assert len(out) == len(values)
    assert out["ok"].tolist() == [False, True, False, False, False, False, False]
    for row in (0, 2, 3, 4, 5, 6):
        assert_rejected(out, row, "SchemaError", values[row], 100 + row)
    assert out["track_id"].iloc[1] == 1
    assert out["cluster"].iloc[1] == 4


def test_a_tombstone_is_a_schema_error() -> None:
    out = parse([None, encode(event(2))])
    assert out["ok"].tolist() == [False, True]
    dl = assert_rejected(out, 0, "SchemaError", None, 100)
    assert dl.value_b64 == ""
    assert "tombstone" in dl.error


def test_unknown_tracks_are_dead_lettered() -> None:
    values = [encode(event(1)), encode(event(555)), encode(event(2))]
    out = parse(values)
    assert out["ok"].tolist() == [True, False, True]
    dl = assert_rejected(out, 1, "UnknownTrackError", values[1], 101)
    assert "555" in dl.error
    assert out["cluster"].tolist()[0::2] == [4, 0]


def test_events_too_far_in_the_future_are_dead_lettered_before_the_lookup() -> None:
    values = [
        encode(event(1, ts=NOW + timedelta(seconds=61))),
        encode(event(2, ts=NOW + timedelta(seconds=59))),
        encode(event(777, ts=NOW + timedelta(days=3))),  # unknown too: the clock rule comes first
    ]
    lookup = Lookup(CLUSTERS)
    out = parse(values, lookup)
    assert out["ok"].tolist() == [False, True, False]
    assert_rejected(out, 0, "FutureEventError", values[0], 100)
    assert_rejected(out, 2, "FutureEventError", values[2], 102)
    assert lookup.calls == [[2]]
    # a larger allowance accepts the first one
    relaxed = parse(values, max_future_s=120.0)
    assert relaxed["ok"].tolist() == [True, True, False]
    assert relaxed["error_class"].iloc[2] == "FutureEventError"


def test_row_order_is_preserved_in_a_mixed_batch() -> None:
    tracks = [1, 999, 2, 3, 888, 1, 2]
    values: list[bytes | None] = []
    for i, track in enumerate(tracks):
        values.append(encode(event(track, user=f"user{i}")))
        values.append(b"garbage %d" % i)
    out = parse(values)
    assert out["offset"].tolist() == [100 + i for i in range(len(values))]
    assert out["value"].tolist() == values
    expected_ok = []
    for track in tracks:
        expected_ok += [track in CLUSTERS, False]
    assert out["ok"].tolist() == expected_ok
    assert out["error_class"].tolist()[0::2] == [
        None if t in CLUSTERS else "UnknownTrackError" for t in tracks
    ]
    assert out["error_class"].tolist()[1::2] == ["SchemaError"] * len(tracks)
    good = out[out["ok"]]
    assert good["user_id"].tolist() == [f"user{i}" for i, t in enumerate(tracks) if t in CLUSTERS]
    assert good["cluster"].tolist() == [CLUSTERS[t] for t in tracks if t in CLUSTERS]


def test_an_empty_batch_gives_an_empty_frame() -> None:
    out = parse([])
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert len(out) == 0


def test_a_batch_of_only_bad_records_converts_to_arrow() -> None:
    """Regression: a partition's frame with no valid play gave float NaN columns for the
    string fields, which pyarrow 26 turned into a ChunkedArray and pyspark refused
    (``TypeError: Expected Array``), failing every retry of the plays job's micro-batch."""
    values = [b'{"event_id": "x', b"[" * 100, None, encode(event(999))]
    out = parse(values)
    assert not out["ok"].any()
    arrays = to_arrow(out, PARSED_SCHEMA)
    names = [c.strip().split()[0] for c in PARSED_SCHEMA.split(",")]
    assert arrays[names.index("user_id")].null_count == len(values)
    assert arrays[names.index("dlq")].null_count == 0


def check_one_row_per_record(values: Sequence[bytes | None]) -> None:
    """Whatever the bytes: no exception, one row each, in order, every reject dead-lettered,
    and a frame pyspark's Arrow serializer accepts."""
    out = parse(values)
    to_arrow(out, PARSED_SCHEMA)
    assert len(out) == len(values)
    assert out["offset"].tolist() == [100 + i for i in range(len(values))]
    for row, value in enumerate(values):
        if out["ok"].iloc[row]:
            assert out["cluster"].iloc[row] in (4, 0, UNASSIGNED)
        else:
            assert out["error_class"].iloc[row] in ("SchemaError", "UnknownTrackError", "FutureEventError")
            dl = letter(out["dlq"].iloc[row])
            assert base64.b64decode(dl.value_b64) == (value or b"")
            assert dl.offset == 100 + row


@given(values=st.lists(st.one_of(st.binary(max_size=300), st.none()), max_size=8))
@example(values=[b"1" * 4301])  # a JSON number Python refuses to convert (int_max_str_digits)
@example(values=[b'{"user_id": "u1", "track_id": ' + b"9" * 5000 + b', "kind": "play"}'])
@settings(max_examples=100, deadline=None)
def test_arbitrary_bytes_never_raise(values: list[bytes | None]) -> None:
    check_one_row_per_record(values)


play_dicts = st.fixed_dictionaries(
    {
        "user_id": st.sampled_from(["u1", "x.y@z", ""]),
        "track_id": st.sampled_from([1, 2, 3, 4, 0, -1]),
        "kind": st.sampled_from(["play", "skip", "complete", "like", "nope"]),
        "position_s": st.floats(min_value=-1, max_value=90_000, allow_nan=False),
        "ts": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    },
    optional={"event_id": st.uuids().map(str)},
)


@given(values=st.lists(play_dicts.map(lambda d: json.dumps(d).encode()), max_size=6))
@example(
    values=[
        json.dumps({"user_id": "u1", "track_id": 1, "kind": "play", "ts": "1500-01-01T00:00:00Z"}).encode()
    ]
)
@settings(max_examples=100, deadline=None)
def test_play_shaped_json_never_raises(values: list[bytes | None]) -> None:
    check_one_row_per_record(values)
