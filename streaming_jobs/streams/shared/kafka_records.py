"""Raw Kafka records as Spark's Kafka source hands them over, and their dead letters.

Source: the ``key``, ``value``, ``topic``, ``partition`` and ``offset`` columns of a
micro-batch read by Spark's Kafka connector (a pandas frame inside a Python worker).
Destination: the ``dlq`` column of the parsed frames (:mod:`streaming_jobs.streams.shared.play_events`,
:mod:`streaming_jobs.streams.shared.track_events`), which the queries write to ``cadenza.dlq``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import pandas as pd

from schemas.codec import dead_letter, encode

#: Spark SQL DDL of the Kafka columns every parsed frame carries along.
RAW_COLUMNS_DDL: Final = "key binary, value binary, topic string, partition int, offset long"
RAW_COLUMNS: Final = ("key", "value", "topic", "partition", "offset")


def as_bytes(value: Any) -> bytes | None:
    """Kafka key/value cell (bytes, bytearray or None; pandas may give a memoryview)."""
    if value is None:
        return None
    if isinstance(value, float):  # pandas NaN for a null binary cell
        return None
    return bytes(value)


def dead_letter_json(raw: dict[str, Any], error: BaseException | str, stage: str) -> str:
    """The ``DeadLetter`` JSON for one raw record, keeping its original bytes."""
    letter = dead_letter(
        topic=str(raw["topic"]),
        value=as_bytes(raw["value"]),
        key=as_bytes(raw["key"]),
        partition=int(raw["partition"]),
        offset=int(raw["offset"]),
        error=error,
        stage=stage,
    )
    return encode(letter).decode("utf-8")


def strings_as_objects(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``frame`` with each of ``columns`` (Spark ``string``) as Python objects, nulls as ``None``.

    A column with no value in a batch is float NaN to pandas, and pyarrow 26 converts a
    float column to ``string`` as a ``ChunkedArray``, which pyspark's Arrow serializer
    refuses (``TypeError: Expected Array``): the query's micro-batch then fails on every
    retry. Object columns of ``str``/``None`` convert to a plain ``StringArray``.
    """
    for name in columns:
        column = frame[name]
        if column.dtype != object:
            frame[name] = column.astype(object).where(column.notna(), None)
    return frame
