"""Bytes <-> messages, for every Kafka producer and consumer in Cadenza.

``decode`` is the only place raw bytes become a message: any problem (not UTF-8,
not JSON, wrong shape, wrong types, out-of-range values) becomes one
:class:`schemas.errors.SchemaError` with a short reason, never another exception.
``dead_letter`` wraps a rejected record for ``cadenza.dlq``.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.errors import SchemaError
from schemas.events import DeadLetter

M = TypeVar("M", bound=BaseModel)

#: Upper bound on one message; larger payloads are refused before parsing.
MAX_MESSAGE_BYTES = 1 << 20
#: A dead letter keeps at most this much of the rejected value (base64 makes it 4/3 as
#: large), so a letter always fits in a Kafka record; ``value_bytes`` says how long the
#: original was, and topic/partition/offset where to find it whole.
MAX_KEPT_BYTES = 64 * 1024


def encode(message: BaseModel) -> bytes:
    """Serialise a message to compact UTF-8 JSON."""
    return message.model_dump_json().encode("utf-8")


def encode_key(key: str | int) -> bytes:
    """Kafka keys are the natural id as UTF-8 text."""
    return str(key).encode("utf-8")


def _reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        parts.append(f"{loc}: {e['msg']}")
    more = err.error_count() - len(parts)
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)


def validate(model: type[M], data: Any) -> M:
    """Validate an already-parsed mapping; raise :class:`SchemaError` on any problem."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SchemaError(_reason(err), model=model.__name__) from None
    except (TypeError, ValueError, RecursionError) as err:  # pragma: no cover - defensive
        raise SchemaError(f"{type(err).__name__}: {err}", model=model.__name__) from None


def decode(model: type[M], raw: bytes | bytearray | memoryview | str | None) -> M:
    """Parse bytes into ``model``; raise :class:`SchemaError` on any problem."""
    name = model.__name__
    if raw is None:
        raise SchemaError("empty message (tombstone)", model=name)
    if isinstance(raw, str):
        text = raw
    else:
        data = bytes(raw)
        if len(data) > MAX_MESSAGE_BYTES:
            raise SchemaError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}", model=name)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SchemaError(f"not UTF-8 at byte {err.start}", model=name) from None
    if len(text) > MAX_MESSAGE_BYTES:
        raise SchemaError(f"message of {len(text)} characters exceeds {MAX_MESSAGE_BYTES}", model=name)
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise SchemaError(f"not JSON: {err.msg} at position {err.pos}", model=name) from None
    except RecursionError:
        raise SchemaError("JSON nested too deeply", model=name) from None
    except ValueError as err:  # e.g. an integer literal longer than Python's 4300-digit limit
        raise SchemaError(f"not acceptable JSON: {err}", model=name) from None
    if not isinstance(parsed, dict):
        raise SchemaError(f"expected a JSON object, got {type(parsed).__name__}", model=name)
    return validate(model, parsed)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def dead_letter(
    *,
    topic: str,
    value: bytes | None,
    error: BaseException | str,
    stage: str,
    key: bytes | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> DeadLetter:
    """Build the ``cadenza.dlq`` record for a rejected Kafka record."""
    message = str(error) if not isinstance(error, str) else error
    error_class = type(error).__name__ if not isinstance(error, str) else "Rejected"
    size = None if value is None else len(value)
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key_b64=_b64(None if key is None else key[:MAX_KEPT_BYTES]),
        value_b64=_b64(None if value is None else value[:MAX_KEPT_BYTES]) or "",
        value_bytes=size,
        truncated=size is not None and size > MAX_KEPT_BYTES,
        error=message[:2000],
        error_class=error_class,
        stage=stage,
    )


class KafkaRecord(Protocol):
    """What every Kafka client's consumed record has (aiokafka, kafka-python, Cadenza's own)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def dead_letter_for(record: KafkaRecord, error: BaseException | str, stage: str) -> DeadLetter:
    """:func:`dead_letter` for a consumed record, keeping where it was read and its bytes."""
    return dead_letter(
        topic=record.topic,
        value=record.value,
        key=record.key,
        partition=record.partition,
        offset=record.offset,
        error=error,
        stage=stage,
    )


def original_value(letter: DeadLetter) -> bytes:
    """The bytes that were rejected, for replay after a fix (the first ``MAX_KEPT_BYTES``
    when ``letter.truncated``: read the rest from the original topic and offset)."""
    return base64.b64decode(letter.value_b64)
