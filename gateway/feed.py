"""The gateway's one Kafka consumer: recommendations and trending windows, fanned out to websockets.

Source: every partition of ``cadenza.recommendations`` (key = user) and
``cadenza.trending`` (key = cluster), read without a consumer group, so each gateway
process sees every listener's messages and several gateways run side by side (a
listener may connect to any of them). At start-up the last ``CADENZA_GATEWAY_REPLAY_S``
seconds are read back only to fill the latest-list cache (so a listener who connects
right after a gateway restart still gets their list at once); then each new message
is pushed. Destinations: :class:`gateway.hub.Hub`; records that are not JSON objects
go to ``cadenza.dlq`` through ``dead_letter``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from gateway.hub import Hub
from infra.kafka_clients import aio_consumer
from infra.settings import Settings
from schemas.topics import RECOMMENDATIONS, TRENDING

log = logging.getLogger("cadenza.gateway.feed")
DeadLetter = Callable[[Any, str], None]  # (aiokafka record, reason)


def envelope(kind: str, value: bytes) -> tuple[dict[str, Any], str]:
    """The parsed message and the text sent to browsers: ``{"type": kind, "data": …}``.

    ValueError when ``value`` is not a JSON object."""
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError(f"a {kind} message must be a JSON object")
    return data, '{"type":"' + kind + '","data":' + value.decode("utf-8") + "}"


def window_of(data: dict[str, Any]) -> tuple[int, float]:
    """A trending message's cluster and window end (epoch seconds); ValueError if either is
    missing or malformed."""
    cluster, end = data.get("cluster"), data.get("window_end")
    if not isinstance(cluster, int) or isinstance(cluster, bool):
        raise ValueError("a trending window without cluster")
    if not isinstance(end, str):
        raise ValueError("a trending window without window_end")
    return cluster, epoch(end)


def epoch(text: str) -> float:
    """An ISO-8601 time (UTC when it names no zone) as epoch seconds; ValueError if malformed."""
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class Feed:
    """Reads both topics and hands every message to the hub; ``ready`` once caught up."""

    def __init__(self, settings: Settings, hub: Hub, dead_letter: DeadLetter | None = None) -> None:
        self.settings, self.hub, self.dead_letter = settings, hub, dead_letter
        self.ready = asyncio.Event()
        self.error: str | None = None
        self.names = {
            settings.topic(RECOMMENDATIONS): "recommendations",
            settings.topic(TRENDING): "trending",
        }

    async def run(self) -> None:
        """Follow the topics until cancelled, reconnecting after broker errors."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except KafkaError as err:
                self.error = f"Kafka: {err}"
                log.warning("gateway feed lost Kafka (%s); retrying in 2 s", err)
                await asyncio.sleep(2.0)

    async def _follow(self) -> None:
        consumer = aio_consumer(self.settings, group_id=None, fetch_max_wait_ms=100)
        await consumer.start()
        try:
            tps = []
            for topic in self.names:
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    await consumer._client.force_metadata_update()
                    parts = consumer.partitions_for_topic(topic) or {0}
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            since = int((time.time() - self.settings.gateway_replay_s) * 1000)
            starts = await consumer.offsets_for_times(dict.fromkeys(tps, since))
            ends = await consumer.end_offsets(tps)
            catching_up: dict[TopicPartition, int] = {}
            for tp in tps:
                found = starts.get(tp)
                start = int(found.offset) if found is not None else ends[tp]
                consumer.seek(tp, start)
                if start < ends[tp]:
                    catching_up[tp] = ends[tp]
            if not catching_up:
                self._caught_up()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, records in batches.items():
                    end = catching_up.get(tp)
                    for record in records:
                        self._handle(tp.topic, record, replay=end is not None and record.offset < end)
                    if end is not None and records and records[-1].offset >= end - 1:
                        del catching_up[tp]
                if not catching_up and not self.ready.is_set():
                    self._caught_up()
        finally:
            await consumer.stop()

    def _caught_up(self) -> None:
        self.error = None
        self.ready.set()
        log.info("gateway feed caught up: %d listeners' latest lists cached", self.hub.cached())

    def _observe_recommendation(self, data: dict[str, Any], produced_ms: int | None) -> None:
        """The recommender's share of a recommendation's latency: its play's ``cause_ts`` to
        its Kafka timestamp (skipped when either is missing or unreadable)."""
        cause = data.get("cause_ts")
        if not produced_ms or not isinstance(cause, str):
            return
        try:
            caused = epoch(cause)
        except ValueError:
            return
        self.hub.metrics.recommend_delay.observe(max(0.0, produced_ms / 1000 - caused))

    def _handle(self, topic: str, record: Any, *, replay: bool) -> None:
        kind = self.names[topic]
        self.hub.metrics.feed_messages[kind] += 1
        if not replay and record.timestamp:
            self.hub.metrics.feed_delay.observe(max(0.0, time.time() - record.timestamp / 1000))
        try:
            data, text = envelope(kind, record.value or b"")
            if kind == "recommendations":
                user = data.get("user_id")
                if not isinstance(user, str) or not user:
                    raise ValueError("a recommendation without user_id")
                if replay:
                    self.hub.remember(user, text)
                else:
                    self.hub.push(user, text)
                    self._observe_recommendation(data, record.timestamp)
            else:
                cluster, end = window_of(data)
                if replay:
                    self.hub.keep_trending(cluster, text, end)
                else:
                    self.hub.broadcast(cluster, text, end)
        except (ValueError, UnicodeDecodeError) as err:
            self.hub.metrics.errors["feed_bad_message"] += 1
            if self.dead_letter is not None:
                self.dead_letter(record, f"{type(err).__name__}: {err}")
