"""Plays as the player reports them: the report's shape, the ``PlayEvent`` it becomes, the rate.

Source: the browser's JSON report (``track_id``, ``kind``, ``position_s``, optionally
``event_id`` so a retried report is the same event, and ``source``: where the track was
started from, :class:`schemas.events.PlaySource`): the body of ``POST /api/plays`` or
the ``data`` of a ``play`` frame on ``/ws``; the listener comes from the token, never from
the report. Destination: :mod:`gateway.intake`, which publishes the event to
``cadenza.plays`` (key = user) through one idempotent ``acks=all`` producer per gateway
process and answers (202, or a ``play_ack``) once the broker has it. Each listener's
reports, by either path, pass one token bucket first (:class:`PlayRate`:
``CADENZA_PLAYS_RATE_PER_S`` sustained, ``CADENZA_PLAYS_BURST`` at once); over it, 429
(with ``Retry-After``, or ``retry_after_s`` in the ``play_error``).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import BadRequestError, RateLimitedError
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind, PlaySource, TrackId


class PlayReport(BaseModel):
    """The body of ``POST /api/plays`` (or a ``play`` frame's ``data``); unknown fields are
    refused (e.g. ``user_id``)."""

    model_config = ConfigDict(extra="forbid")

    track_id: TrackId
    kind: PlayKind
    position_s: float = Field(0.0, ge=0, le=86_400, allow_inf_nan=False)
    event_id: uuid.UUID | None = None
    source: PlaySource | None = None


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
        source=report.source,
    )


def record(event: PlayEvent) -> tuple[bytes, bytes]:
    """Kafka key and value of a play."""
    return encode_key(event.user_id), encode(event)


@dataclass
class PlayRate:
    """A token bucket per listener: ``burst`` plays at once, refilled at ``rate_per_s``.

    Buckets are kept for the ``kept`` listeners heard from most recently; a forgotten
    listener starts again with a full bucket (what a bucket idle for ``burst / rate_per_s``
    seconds holds anyway). Our own code: a few lines, no library needed.
    """

    rate_per_s: float
    burst: int
    kept: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)

    def take(self, user_id: str) -> None:
        """Take one play from ``user_id``'s bucket; :class:`RateLimitedError` (with the wait) if empty."""
        now = self.clock()
        tokens, then = self._buckets.pop(user_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - then) * self.rate_per_s)
        allowed = tokens >= 1.0
        self._buckets[user_id] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.kept:
            self._buckets.popitem(last=False)
        if not allowed:
            raise RateLimitedError("plays", (1.0 - tokens) / self.rate_per_s)
