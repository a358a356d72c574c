"""The decoders never crash: any bytes or JSON give a value or one SchemaError (fuzzed)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import DeadLetter, PlayEvent, SchemaError, TrackEvent, Trending, dead_letter, decode, encode
from schemas.codec import MAX_MESSAGE_BYTES, dead_letter_for, original_value
from schemas.topics import TOPICS

MODELS = [spec.value for spec in TOPICS]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
play_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.uuids().map(str) | st.text(max_size=40),
        "user_id": st.text(max_size=20) | st.integers(),
        "track_id": st.integers() | st.text(max_size=5) | st.floats(),
        "kind": st.sampled_from(["play", "skip", "complete", "like", "x", ""]),
        "position_s": st.floats() | st.integers(),
        "ts": st.datetimes().map(lambda d: d.isoformat()) | st.text(max_size=30),
    },
)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@given(raw=st.binary(max_size=2000))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_give_value_or_schema_error(model: type, raw: bytes) -> None:
    try:
        result = decode(model, raw)
    except SchemaError as err:
        assert err.reason
    else:
        assert isinstance(result, model)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@given(value=json_values)
@settings(max_examples=150)
def test_arbitrary_json_gives_value_or_schema_error(model: type, value: object) -> None:
    raw = json.dumps(value, allow_nan=True).encode()
    try:
        result = decode(model, raw)
    except SchemaError as err:
        assert err.reason
    else:
        assert isinstance(result, model)


@given(value=play_like)
@settings(max_examples=300)
def test_play_shaped_json_gives_value_or_schema_error(value: dict[str, object]) -> None:
    try:
        event = decode(PlayEvent, json.dumps(value, allow_nan=True))
    except SchemaError:
        return
    # Anything accepted is a fully valid event that survives a round trip.
    assert decode(PlayEvent, encode(event)) == event


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "tombstone"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "exceeds"),
    ],
)
def test_specific_bad_inputs_have_clear_reasons(raw: bytes | None, reason: str) -> None:
    with pytest.raises(SchemaError, match=reason):
        decode(Trending, raw)


def test_dead_letter_keeps_the_original_bytes() -> None:
    raw = b'{"user_id": "a b"}'
    try:
        decode(PlayEvent, raw)
    except SchemaError as err:
        letter = dead_letter(topic="cadenza.plays", value=raw, key=b"a b", partition=2, offset=7, error=err,
                             stage="recommender")  # fmt: skip
    assert original_value(letter) == raw
    assert letter.error_class == "SchemaError" and "user_id" in letter.error
    assert decode(DeadLetter, encode(letter)) == letter


def test_a_consumed_records_dead_letter_says_where_it_was_read_and_keeps_its_bytes() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Consumed:  # the attributes aiokafka's and kafka-python's records share
        topic: str
        partition: int
        offset: int
        key: bytes | None
        value: bytes | None

    letter = dead_letter_for(Consumed("cadenza.plays", 3, 41, b"u1", b"\xff not json"), "no", "gateway")
    assert (letter.topic, letter.partition, letter.offset, letter.stage) == (
        "cadenza.plays",
        3,
        41,
        "gateway",
    )
    assert original_value(letter) == b"\xff not json"
    assert letter.key_b64 == base64.b64encode(b"u1").decode() and letter.error == "no"
    assert letter.error_class == "Rejected"


def test_track_event_round_trip_is_exact_for_float32_values() -> None:
    import numpy as np

    vec = np.random.default_rng(0).normal(size=518).astype(np.float32)
    event = TrackEvent(track_id=9, features=[float(v) for v in vec])
    back = decode(TrackEvent, encode(event))
    assert np.array_equal(np.asarray(back.features, dtype=np.float32), vec)


def test_a_dead_letter_of_a_huge_value_keeps_its_start_and_fits_a_kafka_record() -> None:
    """A 2 MiB value's letter (base64 of it all: 2.7 MiB) would be refused by the broker,
    so the letter could never be written: it keeps the first MAX_KEPT_BYTES and says so."""
    from schemas.codec import MAX_KEPT_BYTES

    value = b"[" * (2 << 20)
    letter = dead_letter(topic="t", value=value, key=b"k" * (1 << 20), error="too big", stage="s")
    assert letter.truncated and letter.value_bytes == len(value)
    assert original_value(letter) == value[:MAX_KEPT_BYTES]
    assert len(encode(letter)) < 200 * 1024
    small = dead_letter(topic="t", value=b"abc", error="bad", stage="s")
    assert not small.truncated and small.value_bytes == 3 and original_value(small) == b"abc"
