"""``POST /api/plays``: what the player reports, validated and published as a ``PlayEvent``.

Source: the browser's JSON body (``track_id``, ``kind``, ``position_s``, optionally
``event_id`` so a retried request is the same event) and the listener from the token,
never from the body. Destination: ``cadenza.plays`` (key = user), through one
idempotent ``acks=all`` producer per gateway process; the answer (202) is sent once
the broker has the event.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import BadRequestError
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind, TrackId


class PlayReport(BaseModel):
    """The body of ``POST /api/plays``; unknown fields are refused (e.g. ``user_id``)."""

    model_config = ConfigDict(extra="forbid")

    track_id: TrackId
    kind: PlayKind
    position_s: float = Field(0.0, ge=0, le=86_400, allow_inf_nan=False)
    event_id: uuid.UUID | None = None


def parse_report(body: Any) -> PlayReport:
    """The validated report; :class:`BadRequestError` naming the first bad field."""
    if not isinstance(body, dict):
        raise BadRequestError("body", "the body must be a JSON object")
    try:
        return PlayReport.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequestError(field, first["msg"]) from None


def play_event(user_id: str, report: PlayReport) -> PlayEvent:
    return PlayEvent(
        event_id=report.event_id or uuid.uuid4(),
        user_id=user_id,
        track_id=report.track_id,
        kind=report.kind,
        position_s=report.position_s,
    )


def record(event: PlayEvent) -> tuple[bytes, bytes]:
    """Kafka key and value of a play."""
    return encode_key(event.user_id), encode(event)
