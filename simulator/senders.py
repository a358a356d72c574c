"""The simulated listeners' plays, sent through the gateway or straight to Kafka.

Source: the scheduled events of :mod:`simulator.plays`, handed over one by one by the
runner (:mod:`simulator.run`) with a fresh event id each. Destinations (``--via gateway``)
the gateway: as ``play`` frames on each listener's own open ``/ws`` (:class:`SocketSender`,
``--plays-via ws``, the default; answered by ``play_ack``/``play_error``, see
:mod:`gateway.intake`) or by ``POST /api/plays`` with each listener's signed token
(:class:`GatewaySender`, ``--plays-via http``); or (``--via kafka``) ``cadenza.plays``
itself (:class:`KafkaSender`: an idempotent aiokafka producer, key = the listener, as an
upstream service publishes). Send times, acceptances and refusals go to the run's
:class:`simulator.report.Tally`, the same way for all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any, Final

from infra.settings import Settings
from schemas.events import PlayEvent, PlaySource
from simulator import plays
from simulator.errors import SimulationError, SocketClosedError
from simulator.keepalive import KeepAlivePool
from simulator.report import Tally
from simulator.sockets import Sockets

HTTP_TIMEOUT_S: Final = 15.0


def report(event: plays.Scheduled, event_id: str) -> dict[str, Any]:
    """The play report of ``event`` as the gateway takes it (POST body or frame ``data``)."""
    body: dict[str, Any] = {
        "track_id": event.track_id,
        "kind": event.kind.value,
        "position_s": event.position_s,
        "event_id": event_id,
    }
    if event.source is not None:
        body["source"] = event.source
    return body


class GatewaySender:
    """``POST /api/plays`` with each listener's token; one request at a time per listener,
    over at most ``concurrency`` keep-alive connections (:mod:`simulator.keepalive`)."""

    def __init__(self, base: str, tokens_of: dict[str, str], tally: Tally, concurrency: int) -> None:
        self.tokens_of, self.tally = tokens_of, tally
        self.client = KeepAlivePool(base, concurrency, HTTP_TIMEOUT_S)
        self.locks: dict[str, asyncio.Lock] = {u: asyncio.Lock() for u in tokens_of}

    async def start(self) -> None:
        return None

    async def send(self, user: str, event: plays.Scheduled, event_id: str) -> None:
        body = report(event, event_id)
        headers = {"Authorization": f"Bearer {self.tokens_of[user]}"}
        payload = json.dumps(body).encode()
        async with self.locks[user]:
            self.tally.sent_at[event_id] = time.time()
            try:
                status, answer = await self.client.post("/api/plays", payload, headers)
            except OSError as err:  # refused, reset, timed out, or not an HTTP answer
                self.tally.failed[type(err).__name__] += 1
                return
        if status == 202:
            self.tally.accepted.append(event_id)
            self.tally.accepted_of[user] += 1
        else:
            self.tally.failed[refusal(status, answer)] += 1

    async def stop(self) -> None:
        await self.client.close()


class SocketSender:
    """``play`` frames on each listener's own open websocket (:class:`simulator.sockets.Sockets`),
    the event id as the frame's ``ref``. Frames go out in schedule order (:meth:`send`); the
    gateway publishes a socket's plays in that order and answers each, awaited by :meth:`acked`."""

    def __init__(self, sockets: Sockets, tally: Tally, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        self.sockets, self.tally, self.timeout_s = sockets, tally, timeout_s

    async def start(self) -> None:
        return None

    async def send(self, user: str, event: plays.Scheduled, event_id: str) -> asyncio.Future[Any]:
        """Send the event's frame; the future of the gateway's answer (SocketClosedError if the
        listener has no open socket)."""
        data = report(event, event_id)
        frame = json.dumps({"type": "play", "ref": event_id, "data": data})
        self.tally.sent_at[event_id] = time.time()
        return await self.sockets.send_play(user, event_id, frame)

    async def acked(self, user: str, event_id: str, answer: asyncio.Future[Any]) -> None:
        try:
            message = await asyncio.wait_for(answer, self.timeout_s)
        except (TimeoutError, SocketClosedError) as err:
            self.sockets.forget(event_id)
            self.tally.failed[type(err).__name__] += 1
            return
        if message.get("type") == "play_ack":
            self.tally.accepted.append(event_id)
            self.tally.accepted_of[user] += 1
        else:
            self.tally.failed[frame_refusal(message)] += 1

    async def stop(self) -> None:
        return None


def frame_refusal(message: dict[str, Any]) -> str:
    """``"play_error 422 track_id"``: the status and, when the gateway names one, the field."""
    where = message.get("field")
    return f"play_error {message.get('status')}" + (f" {where}" if isinstance(where, str) else "")


def refusal(status: int, answer: bytes) -> str:
    """``"HTTP 422 track_id"``: the status and, when the gateway names one, the field."""
    try:
        body = json.loads(answer)
    except ValueError:
        body = None
    where = body.get("field") if isinstance(body, dict) else None
    return f"HTTP {status}" + (f" {where}" if isinstance(where, str) else "")


class KafkaSender:
    """``PlayEvent``s to ``cadenza.plays`` (key = listener) through one idempotent producer."""

    def __init__(self, settings: Settings, tally: Tally) -> None:
        from infra.kafka_clients import aio_producer

        self.settings, self.tally = settings, tally
        self.producer = aio_producer(settings, linger_ms=2, client_id="cadenza-simulator")

    async def start(self) -> None:
        from aiokafka.errors import KafkaError

        try:
            await self.producer.start()
        except KafkaError as err:
            with contextlib.suppress(Exception):
                await self.producer.stop()
            raise SimulationError(
                f"Kafka at {self.settings.bootstrap_servers} did not answer ({type(err).__name__}); "
                "start the local stack with `cadenza stack up` or set CADENZA_KAFKA_BOOTSTRAP"
            ) from None

    async def send(self, user: str, event: plays.Scheduled, event_id: str) -> asyncio.Future[Any]:
        """Hand the event to the producer in schedule order; the returned future is its ack."""
        from schemas.codec import encode, encode_key
        from schemas.topics import PLAYS

        message = PlayEvent(
            event_id=uuid.UUID(event_id),
            user_id=user,
            track_id=event.track_id,
            kind=event.kind,
            position_s=event.position_s,
            source=PlaySource(event.source) if event.source else None,
        )
        self.tally.sent_at[event_id] = time.time()
        result: asyncio.Future[Any] = await self.producer.send(
            self.settings.topic(PLAYS), key=encode_key(user), value=encode(message)
        )
        return result

    async def acked(self, user: str, event_id: str, ack: asyncio.Future[Any]) -> None:
        from aiokafka.errors import KafkaError

        try:
            await ack
        except KafkaError as err:
            self.tally.failed[type(err).__name__] += 1
            return
        self.tally.accepted.append(event_id)
        self.tally.accepted_of[user] += 1

    async def stop(self) -> None:
        await self.producer.stop()
