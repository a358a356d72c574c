"""Round trips and validation rules of every Kafka message (unit tier: no IO)."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas import (
    PlayEvent,
    PlayKind,
    Recommendation,
    RecommendedTrack,
    SchemaError,
    TrackAssigned,
    TrackEvent,
    Trending,
    decode,
    encode,
)
from schemas.events import DeadLetter, Message, TrackCount
from schemas.features import FEATURE_COLUMNS, FEATURE_TRIPLES, N_FEATURES


def _track(**kw: object) -> TrackEvent:
    base: dict[str, object] = {
        "track_id": 2,
        "title": "Food",
        "artist": "AWOL",
        "features": [float(i) / 7 for i in range(N_FEATURES)],
    }
    base.update(kw)
    return TrackEvent.model_validate(base)


MESSAGES = [
    PlayEvent(user_id="alice", track_id=2, kind=PlayKind.SKIP, position_s=12.5),
    _track(genres=[21, 45], genre_top="Hip-Hop", duration_s=168.0),
    TrackAssigned(track_id=2, cluster=3, model_version="abc123"),
    Recommendation(
        user_id="bob@example.org",
        items=[RecommendedTrack(track_id=5, score=0.93, reason="sounds like Food", cluster=3)],
        model_version="abc123",
        cause_event_id=uuid.uuid4(),
        cause_ts=datetime(2026, 1, 1, tzinfo=UTC),
    ),
    Trending(
        cluster=3,
        window_start=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
        window_end=datetime(2026, 1, 1, 12, 10, tzinfo=UTC),
        plays=42,
        top_tracks=[TrackCount(track_id=5, plays=30)],
    ),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_through_bytes(message: object) -> None:
    raw = encode(message)  # type: ignore[arg-type]
    assert decode(type(message), raw) == message  # type: ignore[arg-type]
    json.loads(raw)  # plain JSON on the wire


def test_feature_columns_follow_fma_header_order() -> None:
    assert N_FEATURES == 518
    assert len(set(FEATURE_COLUMNS)) == 518
    assert list(FEATURE_TRIPLES) == sorted(FEATURE_TRIPLES)
    assert FEATURE_COLUMNS[0] == "chroma_cens_kurtosis_01"
    assert "mfcc_mean_20" in FEATURE_COLUMNS and "rmse_std_01" in FEATURE_COLUMNS


def test_timestamps_are_normalised_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    event = PlayEvent(user_id="u", track_id=1, kind="play", ts=datetime(2026, 5, 1, 14, 0, tzinfo=plus2))
    assert event.ts == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert event.ts.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("user_id", "", "user_id"),
        ("user_id", "a b", "user_id"),
        ("user_id", {"$gt": ""}, "user_id"),
        ("track_id", 0, "track_id"),
        ("track_id", "12x", "track_id"),
        ("kind", "rewind", "kind"),
        ("position_s", -1, "position_s"),
        ("ts", "2026-01-01T00:00:00", "ts"),  # naive time: ambiguous, refused
    ],
)
def test_play_event_rejects_bad_fields(field: str, value: object, needle: str) -> None:
    data = {"user_id": "alice", "track_id": 3, "kind": "play", field: value}
    with pytest.raises(SchemaError) as info:
        decode(PlayEvent, json.dumps(data).encode())
    assert needle in info.value.reason
    assert info.value.model == "PlayEvent"


def test_track_event_needs_exactly_518_finite_features() -> None:
    with pytest.raises(SchemaError, match="features"):
        decode(TrackEvent, json.dumps({"track_id": 1, "features": [0.0] * 517}))
    raw = encode(_track()).replace(b"[0.0,", b"[NaN,", 1)
    with pytest.raises(SchemaError, match=r"not finite|features"):
        decode(TrackEvent, raw)
    assert math.isfinite(sum(_track().features))


def test_messages_are_immutable() -> None:
    event = MESSAGES[0]
    with pytest.raises(Exception, match="frozen"):
        event.user_id = "mallory"  # type: ignore[misc]


def _with_added_fields(raw: bytes) -> bytes:
    """``raw`` as a newer producer would write it: an extra field at the top and in every
    nested object."""

    def grow(value: object) -> object:
        if isinstance(value, dict):
            return {**{k: grow(v) for k, v in value.items()}, "added_in_v2": {"any": [1, "x"]}}
        if isinstance(value, list):
            return [grow(v) for v in value]
        return value

    return json.dumps(grow(json.loads(raw))).encode()


@pytest.mark.parametrize(
    "message",
    [
        PlayEvent(user_id="alice", track_id=3, kind="like"),
        _track(),
        TrackAssigned(track_id=3, cluster=1, model_version="v1"),
        Recommendation(
            user_id="alice",
            items=[RecommendedTrack(track_id=4, score=0.5, reason="because", cluster=1)],
            model_version="v1",
        ),
        Trending(
            cluster=1,
            window_start=datetime(2026, 1, 1, tzinfo=UTC),
            window_end=datetime(2026, 1, 1, 0, 10, tzinfo=UTC),
            plays=2,
            top_tracks=[TrackCount(track_id=4, plays=2)],
        ),
        DeadLetter(topic="t", value_b64="", error="e", stage="s"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_every_topic_message_with_added_fields_decodes_as_before(message: Message) -> None:
    """The topic-evolution rule: a field a newer producer adds is ignored by today's decoder."""
    raw = encode(message)
    assert decode(type(message), _with_added_fields(raw)) == message
