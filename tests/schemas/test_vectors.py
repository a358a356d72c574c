"""Feature vectors as stored: packed float32 (BSON binary subtype 9) and legacy arrays, both decoded."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from bson.binary import Binary, BinaryVectorDtype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from schemas.codec import decode
from schemas.documents import TrackDoc
from schemas.errors import SchemaError
from schemas.events import TrackEvent
from schemas.features import N_FEATURES
from schemas.vectors import (
    PACKED_BYTES,
    SUBTYPE,
    VectorError,
    pack,
    pack_many,
    packed_from_legacy,
    unpack,
    unpack_many,
)

FLOAT32_MAX = float(np.finfo(np.float32).max)
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
vectors32 = arrays(np.float32, N_FEATURES, elements=finite32)
#: Legacy arrays: any finite double float32 can hold (what old writers stored), or small ints.
legacy_numbers = st.one_of(
    st.floats(min_value=-FLOAT32_MAX, max_value=FLOAT32_MAX, allow_nan=False),
    st.integers(min_value=-(2**24), max_value=2**24),  # exact in float32
)


def vec(value: float = 0.5) -> list[float]:
    return [value] * N_FEATURES


@given(vectors32)
@settings(max_examples=150)
def test_pack_then_unpack_gives_back_the_same_float32_bits(v: np.ndarray) -> None:
    packed = pack(v)
    assert isinstance(packed, Binary) and packed.subtype == SUBTYPE == 9 and len(packed) == PACKED_BYTES
    assert bytes(packed[:2]) == b"\x27\x00"  # float32, no padding
    back = unpack(packed)
    assert back.dtype == np.float32 and back.tobytes() == v.astype("<f4").tobytes()
    # pymongo's own decoder reads the same values (the vectorised decoder agrees with the library)
    assert np.asarray(packed.as_vector(return_numpy=True).data).tobytes() == back.tobytes()


@given(st.lists(legacy_numbers, min_size=N_FEATURES, max_size=N_FEATURES))
@settings(max_examples=100, suppress_health_check=[HealthCheck.large_base_example])
def test_a_legacy_array_decodes_to_what_its_packed_form_decodes_to(values: list[float]) -> None:
    legacy = unpack(values)
    assert legacy.dtype == np.float32 and legacy.shape == (N_FEATURES,)
    assert legacy.tobytes() == np.asarray(values, dtype=np.float64).astype(np.float32).tobytes()
    assert unpack(packed_from_legacy(values)).tobytes() == legacy.tobytes()
    assert unpack(tuple(values)).tobytes() == legacy.tobytes()


@given(vectors32)
@settings(max_examples=50)
def test_float32_values_stored_as_doubles_survive_the_migration_exactly(v: np.ndarray) -> None:
    legacy = v.astype(np.float64).tolist()  # how the ETL stored vectors before
    assert unpack(packed_from_legacy(legacy)).tobytes() == v.tobytes()


@given(st.integers(min_value=0, max_value=2 * N_FEATURES).filter(lambda n: n != N_FEATURES))
@settings(max_examples=30)
def test_another_length_is_refused(n: int) -> None:
    with pytest.raises(VectorError, match=f"{n} values") as err:
        unpack([0.5] * n)
    assert err.value.kind == "wrong_length"
    with pytest.raises(VectorError):
        pack(np.zeros(n))


@given(
    st.integers(min_value=0, max_value=N_FEATURES - 1),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e39, -3.5e38]),
)
@settings(max_examples=50)
def test_non_finite_values_and_values_beyond_float32_are_refused(at: int, bad: float) -> None:
    values = vec()
    values[at] = bad
    with pytest.raises(VectorError, match=f"value {at} ") as err:
        unpack(values)
    assert err.value.kind == "not_finite"
    with pytest.raises(VectorError, match=f"value {at} "):
        pack(values)
    with pytest.raises(VectorError):
        pack_many(np.asarray([vec(), values]))


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        (None, "missing", "no feature vector"),
        ("0.5", "wrong_type", "a str"),
        ({"0": 0.5}, "wrong_type", "a dict"),
        (0.5, "wrong_type", "a float"),
        ([*vec()[:-1], None], "not_numeric", f"value {N_FEATURES - 1} is not a number"),
        ([*vec()[:-1], "0.5"], "not_numeric", "is not a number \\(str\\)"),
        ([True] * N_FEATURES, "not_numeric", "value 0 is not a number \\(bool\\)"),
        ([[0.5]] * N_FEATURES, "not_numeric", "is not a number \\(list\\)"),
        (np.zeros((2, N_FEATURES)), "wrong_length", "2x518 values"),
        (bytes(4 * N_FEATURES), "wrong_type", "binary subtype 0, expected 9"),
        (Binary(bytes(PACKED_BYTES), 5), "wrong_type", "binary subtype 5"),
        (Binary(b"\x27\x00" + bytes(4 * 517), SUBTYPE), "wrong_length", "2070 bytes, expected 2074"),
        (Binary.from_vector([1] * 2072, BinaryVectorDtype.INT8), "wrong_type", "dtype 0x03"),
        (Binary(b"\x27\x03" + bytes(4 * N_FEATURES), SUBTYPE), "wrong_type", "with padding 3"),
        (pack(vec())[:-4] + b"\x00\x00\xc0\x7f", "wrong_type", "binary subtype 0"),  # bytes, not Binary
        (
            Binary(bytes(pack(vec())[:-4]) + b"\x00\x00\xc0\x7f", SUBTYPE),
            "not_finite",
            "value 517 is not finite",
        ),
    ],
)
def test_anything_else_is_refused_with_its_kind(value: Any, kind: str, message: str) -> None:
    with pytest.raises(VectorError, match=message) as err:
        unpack(value)
    assert err.value.kind == kind and isinstance(err.value, SchemaError)
    assert str(err.value).startswith("invalid feature vector: ")


def test_unpack_many_decodes_a_mixed_batch_in_order_and_reports_the_rest() -> None:
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((6, N_FEATURES)).astype(np.float32)
    values: list[object] = [
        pack(rows[0]),
        rows[1].astype(float).tolist(),
        None,
        pack(rows[2]),
        [1.0, 2.0],
        rows[3].astype(float).tolist(),
        Binary.from_vector([0] * 2072, BinaryVectorDtype.INT8),
        pack(rows[4]),
    ]
    out = unpack_many(values)
    assert out.matrix.dtype == np.float32 and len(out) == 5
    assert out.ok.tolist() == [True, True, False, True, False, True, False, True]
    assert out.matrix.tobytes() == rows[[0, 1, 2, 3, 4]].tobytes()
    assert {i: e.kind for i, e in out.errors.items()} == {2: "missing", 4: "wrong_length", 6: "wrong_type"}
    for i, value in enumerate(values):
        if out.ok[i]:
            assert unpack(value).tobytes() == out.matrix[int(out.ok[:i].sum())].tobytes()


def test_unpack_many_of_nothing_and_of_only_packed() -> None:
    empty = unpack_many([])
    assert empty.matrix.shape == (0, N_FEATURES) and not empty.errors
    matrix = np.arange(3 * N_FEATURES, dtype=np.float32).reshape(3, N_FEATURES)
    assert unpack_many(pack_many(matrix)).matrix.tobytes() == matrix.tobytes()


def test_pack_many_checks_its_matrix_and_packs_each_row_like_pack() -> None:
    matrix = np.random.default_rng(1).standard_normal((4, N_FEATURES))
    assert [bytes(b) for b in pack_many(matrix)] == [bytes(pack(row)) for row in matrix]
    for bad in (np.zeros(N_FEATURES), np.zeros((2, 3)), np.full((2, N_FEATURES), "x")):
        with pytest.raises(VectorError, match="matrix"):
            pack_many(bad)


def test_only_a_legacy_array_is_migrated() -> None:
    assert unpack(packed_from_legacy(vec(0.25))).tolist() == vec(0.25)
    for value in (pack(vec()), None, "x"):
        with pytest.raises(VectorError):
            packed_from_legacy(value)


def test_a_track_document_is_stored_packed_and_read_back_in_either_layout() -> None:
    doc = TrackDoc(id=2, title="Food", features=vec(0.5)).to_mongo()
    assert isinstance(doc["features"], Binary) and doc["features"].subtype == SUBTYPE
    assert TrackDoc.model_validate(doc).features == vec(0.5)
    assert TrackDoc.model_validate({**doc, "features": vec(0.5)}).features == vec(0.5)
    assert TrackDoc(id=3).to_mongo()["features"] is None
    with pytest.raises(VectorError):
        TrackDoc(id=4, features=[math.nan] * N_FEATURES).to_mongo()


def test_a_track_event_refuses_features_float32_cannot_hold() -> None:
    with pytest.raises(SchemaError, match="outside float32's range"):
        decode(TrackEvent, '{"track_id": 1, "features": [' + ", ".join(["1e39"] * N_FEATURES) + "]}")
    event = TrackEvent(track_id=1, features=[FLOAT32_MAX] * N_FEATURES)
    assert np.isfinite(unpack(pack(event.features))).all()
