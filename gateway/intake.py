"""Play intake: every play a listener reports, by ``POST /api/plays`` or as a ``play`` frame on
their ``/ws``, checked the same way and published to ``cadenza.plays``.

Sources: the listener (from their token, never from what they send) and the report
(``track_id``, ``kind``, ``position_s``, optionally ``event_id``): an HTTP body
(:mod:`gateway.routes.api`) or the ``data`` of a websocket frame (:mod:`gateway.routes.ws`).
Destinations: ``cadenza.plays`` (key = listener), through the gateway's one idempotent
``acks=all`` producer, within :data:`PUBLISH_TIMEOUT_S`; the counters of
:class:`gateway.metrics.GatewayMetrics` (accepted, refused by field, over the rate, failed
publishes); on a websocket, the answer to each frame, queued on the connection
(:meth:`gateway.hub.Hub.offer`) so the socket's one writer sends it.

Checks, in order: the listener's token bucket (:class:`gateway.plays.PlayRate`, shared by
both paths: 429), the report (:func:`gateway.plays.parse_report`: 422 naming the field),
the track (422 ``track_id`` if unknown), Kafka (503). A known track costs no thread hop:
the in-memory catalogue (:class:`gateway.track_index.TrackIndex`, when loaded) and the
audio-path cache (:meth:`gateway.catalogue.AudioPaths.probe`) answer on the event loop; only
a track neither holds is read from MongoDB, in a worker thread.

The websocket protocol (one text frame each way, JSON)::

    -> {"type": "play", "ref": <string of at most 64 characters, or number>,
        "data": {"track_id": 2, "kind": "play", "position_s": 0, "event_id"?: "<uuid>",
                 "source"?: "browse" | "up_next" | "radio" | "queue"}}
    <- {"type": "play_ack", "ref": <the same>, "event_id": "<uuid>"}
    <- {"type": "play_error", "ref": <the same>, "status": 400 | 422 | 429 | 503 | 500,
        "error": "<what to do>", "field"?: "<the bad field>", "retry_after_s"?: <seconds>}

Every ``play`` frame gets exactly one answer. The plays of one socket are checked and
published one after another (:class:`PlayLane`), so they reach Kafka, and are answered, in
the order they were sent; at most :data:`MAX_WAITING` may wait, a frame beyond that is
refused at once (429), the only answer that can overtake earlier ones. Anything else a
browser sends (pongs, other types, bytes, text that is not a JSON object, frames over
:data:`MAX_FRAME` characters) is never answered: it only shows the browser is alive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiokafka.errors import KafkaError

from gateway.errors import BadRequestError, NotFoundError, RateLimitedError, UnavailableError
from gateway.hub import Connection, Hub
from gateway.plays import parse_report, play_event, record
from gateway.state import Gateway
from schemas.events import PlayEvent
from schemas.topics import PLAYS

log = logging.getLogger("cadenza.gateway.intake")

#: Longest a play waits for Kafka's acknowledgement before the player is told to retry.
PUBLISH_TIMEOUT_S: Final = 5.0
#: Longest text frame read from a browser (a play frame is ~150 characters); longer ones are ignored.
MAX_FRAME: Final = 4096
#: Longest ``ref`` string; a number ref is an integer of at most 2**53 or a finite float.
MAX_REF: Final = 64
#: Play frames of one socket waiting to be published; one more is refused (429).
MAX_WAITING: Final = 64

Ref = str | int | float | None
#: A frame that is not a play: ``other`` a JSON object of another type (a pong), else ``ignored``.
NotPlay = Literal["other", "ignored"]


class PlayIntake:
    """Rate, validation, known-track check and publish of one gateway's plays (both paths)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.topic = gw.settings.topic(PLAYS)

    def admit(self, user_id: str) -> None:
        """Take one play from the listener's bucket; :class:`RateLimitedError` (counted) if empty."""
        try:
            self.gw.plays_limiter.take(user_id)
        except RateLimitedError:
            self.gw.metrics.refused["plays_rate"] += 1
            raise

    async def accept(self, user_id: str, body: Any) -> PlayEvent:
        """:meth:`admit`, then :meth:`publish`."""
        self.admit(user_id)
        return await self.publish(user_id, body)

    async def publish(self, user_id: str, body: Any) -> PlayEvent:
        """The play of ``body`` by ``user_id``, once the broker has it. Raises (each counted)
        :class:`BadRequestError` for a bad field or an unknown track, :class:`UnavailableError`
        when MongoDB (for a track not in memory) or Kafka cannot be reached."""
        metrics = self.gw.metrics
        try:
            report = parse_report(body)
        except BadRequestError as err:
            metrics.plays_refused[err.field] += 1
            raise
        if not await self.known(report.track_id):
            metrics.plays_refused["track_id"] += 1
            raise BadRequestError("track_id", f"no track {report.track_id} in the catalogue")
        producer = self.gw.producer
        if producer is None:
            raise UnavailableError("the gateway is not connected to Kafka")
        event = play_event(user_id, report)
        key, value = record(event)
        try:
            # A broker that just died holds a send until its partitions have a new leader; the
            # player retries instead (same event_id: downstream counts each event id once).
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await producer.send_and_wait(self.topic, key=key, value=value)
        except (KafkaError, TimeoutError) as err:
            metrics.errors["kafka_publish"] += 1
            raise UnavailableError(
                f"could not publish the play to Kafka ({type(err).__name__}); retry with the same event_id"
            ) from None
        metrics.played(event.kind, event.source)
        return event

    async def known(self, track_id: int) -> bool:
        """Whether the catalogue holds ``track_id``: from memory when it can say, else from
        MongoDB in a worker thread (:class:`UnavailableError` if unreachable)."""
        index = self.gw.library.index
        if index is not None and track_id in index:
            return True
        hit, _ = self.gw.audio_paths.probe(track_id)
        if hit:
            return True
        try:  # the cached lookup the audio route uses; it remembers a known track
            await self.gw.query(self.gw.audio_paths.get, self.gw.db, track_id)
        except NotFoundError:
            return False
        return True


# --- the websocket frames ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """A ``play`` frame as read: its ref and data, or the refusal it gets without being checked."""

    ref: Ref
    data: dict[str, Any] | None = None
    status: int = 0
    field: str | None = None
    error: str | None = None


def valid_ref(ref: Any) -> bool:
    if ref is None or isinstance(ref, str):
        return ref is None or len(ref) <= MAX_REF
    if isinstance(ref, bool):
        return False
    if isinstance(ref, int):
        return abs(ref) <= 2**53
    return isinstance(ref, float) and math.isfinite(ref)


def read_frame(text: str) -> Frame | NotPlay:
    """The play frame of a browser's text frame, or what kind of other frame it is (pure)."""
    if len(text) > MAX_FRAME:
        return "ignored"
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, a number over 4,300 digits, nested too deep
        return "ignored"
    if not isinstance(message, dict):
        return "ignored"
    if message.get("type") != "play":
        return "other"
    ref = message.get("ref")
    if not valid_ref(ref):
        why = f"ref is a string of at most {MAX_REF} characters or a number (at most 2**53)"
        return Frame(None, status=400, field="ref", error=why)
    data = message.get("data")
    if not isinstance(data, dict):
        why = "data must be a JSON object: {track_id, kind, position_s, event_id?}"
        return Frame(ref, status=422, field="data", error=why)
    return Frame(ref, data)


def ack_text(ref: Ref, event: PlayEvent) -> str:
    return json.dumps({"type": "play_ack", "ref": ref, "event_id": str(event.event_id)})


def error_text(
    ref: Ref, status: int, error: str, *, field: str | None = None, retry_after_s: float | None = None
) -> str:
    answer: dict[str, Any] = {"type": "play_error", "ref": ref, "status": status, "error": error}
    if field is not None:
        answer["field"] = field
    if retry_after_s is not None:
        answer["retry_after_s"] = round(retry_after_s, 3)
    return json.dumps(answer)


class PlayLane:
    """The play frames of one websocket, checked and published one after another by a task
    that runs while some wait (none for a socket that sends no plays), each answered on the
    connection's queue."""

    def __init__(self, intake: PlayIntake, hub: Hub, conn: Connection) -> None:
        self.intake, self.hub, self.conn = intake, hub, conn
        self.waiting: deque[Frame] = deque()
        self.task: asyncio.Task[None] | None = None

    def take(self, frame: Frame) -> None:
        """Queue ``frame`` (never waits); refused at once (429) if :data:`MAX_WAITING` wait."""
        if len(self.waiting) >= MAX_WAITING:
            self.intake.gw.metrics.refused["plays_rate"] += 1
            why = f"more than {MAX_WAITING} plays wait on this socket: wait for their answers"
            self.hub.offer(self.conn, error_text(frame.ref, 429, why, retry_after_s=1.0))
            return
        self.waiting.append(frame)
        if self.task is None:
            self.task = asyncio.create_task(self._drain(), name="plays")

    async def _drain(self) -> None:
        try:
            while self.waiting:
                frame = self.waiting.popleft()
                self.hub.offer(self.conn, await self.answer(frame))
        finally:
            self.task = None

    async def answer(self, frame: Frame) -> str:
        """The answer to one frame, once its play is published or refused."""
        if frame.error is not None:
            self.intake.gw.metrics.plays_refused[frame.field or "frame"] += 1
            return error_text(frame.ref, frame.status, frame.error, field=frame.field)
        try:
            event = await self.intake.accept(self.conn.user_id, frame.data)
        except RateLimitedError as err:
            return error_text(frame.ref, 429, str(err), retry_after_s=err.retry_after_s)
        except BadRequestError as err:
            return error_text(frame.ref, 422, err.message, field=err.field)
        except UnavailableError as err:
            return error_text(frame.ref, 503, str(err))
        except Exception:  # a bug: say so to this play, keep the socket and the next plays
            log.exception("play frame of %s", self.conn.user_id)
            self.intake.gw.metrics.errors["play_frame"] += 1
            return error_text(frame.ref, 500, "the gateway failed on this play; retry with the same event_id")
        return ack_text(frame.ref, event)

    async def finish(self, timeout_s: float) -> None:
        """Let the plays already received be published (their answers may find the socket
        gone), for at most ``timeout_s``; the rest are given up."""
        task = self.task
        if task is None:
            return
        try:
            await asyncio.wait({task}, timeout=timeout_s)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
