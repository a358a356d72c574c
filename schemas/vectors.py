"""Feature vectors as MongoDB stores them (``tracks.features``), and back to numpy.

Pure: numpy and ``bson`` (pymongo's), no IO. Every writer of a track stores
:func:`pack`'s value; every reader decodes with :func:`unpack` (one value) or
:func:`unpack_many` (a batch of documents, into one ``(n, 518)`` float32 matrix).

**Layout** (packed, written since issue 24): a BSON binary of subtype 9 ("vector"),
built by pymongo's :meth:`bson.binary.Binary.from_vector` with
``BinaryVectorDtype.FLOAT32``: two header bytes (dtype ``0x27``, padding ``0``), then
518 little-endian IEEE float32 values in :data:`schemas.features.FEATURE_COLUMNS`
order: 2,079 bytes in the document, where a BSON array of 518 doubles takes 6,629.

**Legacy layout**: a BSON array of 518 numbers (documents written before the packed
layout). Readers accept both while ``cadenza db migrate`` (:mod:`infra.migrations`)
rewrites the arrays; :func:`packed_from_legacy` is its conversion of one value. Both
layouts decode to the same float32 values (the ETL always stored float32 values).

Anything else is refused with :class:`VectorError` (a :class:`~schemas.errors.SchemaError`)
whose ``kind`` says why: ``missing``, ``wrong_type`` (neither an array nor a float32
vector binary: another type, binary subtype or vector dtype), ``wrong_length``,
``not_numeric`` (null, text, booleans …) or ``not_finite`` (NaN, ±inf, or beyond
float32's range).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from bson.binary import VECTOR_SUBTYPE, Binary, BinaryVectorDtype
from numpy.typing import ArrayLike, NDArray

from schemas.errors import SchemaError
from schemas.features import N_FEATURES

Kind = Literal["missing", "wrong_type", "wrong_length", "not_numeric", "not_finite"]

#: BSON binary subtype of the packed layout (9: vector).
SUBTYPE: Final = VECTOR_SUBTYPE
#: Header byte 0 of a float32 vector (``BinaryVectorDtype.FLOAT32``), byte 1 is the padding (0).
FLOAT32_TAG: Final = BinaryVectorDtype.FLOAT32.value[0]
#: Bytes of one packed vector: the two header bytes and 518 float32 values.
PACKED_BYTES: Final = 2 + 4 * N_FEATURES
#: One packed vector read in place by :func:`unpack_many` (the layout above, decoded with
#: ``np.frombuffer`` over many joined values at once; pymongo's ``Binary.as_vector`` decodes
#: one at a time, and the tests check that both agree).
_RECORD: Final = np.dtype([("tag", "u1"), ("padding", "u1"), ("values", "<f4", (N_FEATURES,))])


class VectorError(SchemaError):
    """A stored value that is not a usable feature vector; ``kind`` says why."""

    def __init__(self, reason: str, kind: Kind) -> None:
        super().__init__(reason, model="feature vector")
        self.kind: Kind = kind


@dataclass(frozen=True)
class Unpacked:
    """Vectors of a batch: ``matrix`` holds the usable ones, in input order."""

    matrix: NDArray[np.float32]  # (ok.sum(), 518)
    ok: NDArray[np.bool_]  # (n,): which inputs are rows of ``matrix``
    errors: dict[int, VectorError]  # input index -> why it is not

    def __len__(self) -> int:
        return int(self.matrix.shape[0])


# --- numbers -> float32 (pure) -----------------------------------------------------------


def _float32(values: ArrayLike) -> NDArray[np.float32]:
    """A ``(518,)`` float32 array of finite numbers, or :class:`VectorError`."""
    if values is None:
        raise VectorError("no feature vector", "missing")
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise VectorError(f"a {type(values).__name__}, not an array of numbers", "wrong_type")
    shape = values.shape if isinstance(values, np.ndarray) else (len(values),)
    if shape != (N_FEATURES,):
        raise VectorError(
            f"{'x'.join(map(str, shape)) or 'no'} values, expected {N_FEATURES}", "wrong_length"
        )
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        arr = np.asarray(values, dtype=object)
    if arr.ndim != 1 or arr.dtype.kind not in "fiu":
        bad = next((i for i, v in enumerate(values) if not _is_number(v)), 0)
        raise VectorError(f"value {bad} is not a number ({type(values[bad]).__name__})", "not_numeric")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    _check_finite(out, arr)
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _check_finite(row: NDArray[np.float32], source: NDArray[np.generic] | None = None) -> None:
    finite = np.isfinite(row)
    if finite.all():
        return
    i = int(np.flatnonzero(~finite)[0])
    if source is not None and np.isfinite(source[i]):
        raise VectorError(f"value {i} ({float(source[i]):g}) is outside float32's range", "not_finite")
    raise VectorError(f"value {i} is not finite ({row[i]})", "not_finite")


# --- pack ---------------------------------------------------------------------------------


def pack(vector: ArrayLike) -> Binary:
    """518 finite numbers -> the packed value stored in ``tracks.features``."""
    return Binary.from_vector(_float32(vector).astype("<f4", copy=False), BinaryVectorDtype.FLOAT32)


def pack_many(matrix: ArrayLike) -> list[Binary]:
    """The packed value of each row of an ``(n, 518)`` matrix (checked once, as a whole)."""
    arr = np.asarray(matrix)
    if arr.ndim != 2 or arr.shape[1] != N_FEATURES or arr.dtype.kind not in "fiu":
        raise VectorError(
            f"expected an (n, {N_FEATURES}) numeric matrix, got {arr.shape} {arr.dtype}", "wrong_type"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        rows = arr.astype("<f4")
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if bad.size:
        try:
            _check_finite(rows[bad[0]], arr[bad[0]])
        except VectorError as err:
            raise VectorError(f"row {int(bad[0])}: {err.reason}", err.kind) from None
    return [Binary.from_vector(row, BinaryVectorDtype.FLOAT32) for row in rows]


def packed_from_legacy(value: object) -> Binary:
    """The migration of one stored legacy value: an array of 518 numbers -> its packed value.

    Raises :class:`VectorError` for anything that is not such an array (the caller
    leaves that document as it is and reports the reason).
    """
    if not isinstance(value, list):
        raise VectorError(f"a {type(value).__name__}, not a legacy array", "wrong_type")
    return pack(value)


# --- unpack -------------------------------------------------------------------------------


def _is_packed_candidate(value: object) -> bool:
    """A vector binary of the right size (its header is checked with the batch)."""
    return isinstance(value, Binary) and value.subtype == SUBTYPE and len(value) == PACKED_BYTES


def _not_packed(value: object) -> NDArray[np.float32]:
    """Decode a value that is not a well-sized vector binary: a legacy array, or an error."""
    if isinstance(value, Binary) and value.subtype == SUBTYPE:
        raise VectorError(
            f"{len(value)} bytes, expected {PACKED_BYTES} (a float32 vector of {N_FEATURES})", "wrong_length"
        )
    if isinstance(value, bytes):  # pymongo decodes subtype 0 as bytes, others as Binary
        subtype = value.subtype if isinstance(value, Binary) else 0
        raise VectorError(f"binary subtype {subtype}, expected {SUBTYPE} (a float32 vector)", "wrong_type")
    return _float32(value)  # type: ignore[arg-type]


def unpack_many(values: Sequence[object]) -> Unpacked:
    """Decode many stored values at once into one float32 matrix (both layouts).

    Packed values are joined and read with a single ``np.frombuffer`` (no Python object
    per value); legacy arrays are converted one by one. Unusable values are reported
    in ``errors`` by input index, never raised.
    """
    n = len(values)
    out = np.empty((n, N_FEATURES), dtype=np.float32)
    errors: dict[int, VectorError] = {}
    packed_at: list[int] = []
    packed: list[bytes] = []
    for i, value in enumerate(values):
        if _is_packed_candidate(value):
            packed_at.append(i)
            packed.append(value)  # type: ignore[arg-type]
            continue
        try:
            out[i] = _not_packed(value)
        except VectorError as err:
            errors[i] = err
    if packed:
        records = np.frombuffer(b"".join(packed), dtype=_RECORD)
        out[packed_at] = records["values"]
        for j in np.flatnonzero((records["tag"] != FLOAT32_TAG) | (records["padding"] != 0)).tolist():
            tag, padding = int(records["tag"][j]), int(records["padding"][j])
            errors[packed_at[j]] = VectorError(
                f"vector dtype 0x{tag:02x} with padding {padding}; "
                f"expected float32 (0x{FLOAT32_TAG:02x}) without padding",
                "wrong_type",
            )
    for i in np.flatnonzero(~np.isfinite(out).all(axis=1)).tolist():
        if i not in errors:
            try:
                _check_finite(out[i])
            except VectorError as err:
                errors[i] = err
    ok = np.ones(n, dtype=bool)
    if errors:
        ok[list(errors)] = False
        out = out[ok]
    return Unpacked(matrix=out, ok=ok, errors=errors)


def unpack(value: object) -> NDArray[np.float32]:
    """One stored value (packed or legacy) -> a ``(518,)`` float32 array, or :class:`VectorError`."""
    one = unpack_many([value])
    if one.errors:
        raise one.errors[0]
    return one.matrix[0]
