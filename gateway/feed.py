"""The gateway's one Kafka consumer: recommendations and trending windows, fanned out to websockets,
and the catalogue's new tracks and clusters.

Source: every partition of ``cadenza.recommendations`` (key = user),
``cadenza.trending`` (key = cluster), ``cadenza.dlq`` (counted for the ops page by
:class:`gateway.dead_letters.DeadLetterLog`) and, when the gateway keeps its catalogue in
memory, ``cadenza.tracks.new`` and ``cadenza.tracks.assigned`` (key = track), read without a
consumer group, so each gateway process sees every listener's messages and several
gateways run side by side (a listener may connect to any of them). At start-up the last
``CADENZA_GATEWAY_REPLAY_S`` seconds are read back only to fill the latest-list cache (so a
listener who connects right after a gateway restart still gets their list at once); then
each new message is pushed. At the first start the track topics are read back from the
offsets of the catalogue snapshot the library loads first
(:meth:`gateway.library.Library.snapshot_offsets`: every track announced since the
snapshot; a partition it does not name from offset 0), after checking that the broker
still holds every record from there (else :meth:`gateway.library.Library.refuse_snapshot`:
the library scans MongoDB instead); without a snapshot, :data:`TRACKS_REPLAY_S` seconds
(tracks announced while the scan may have read past them). Readiness does not wait for
them; after a reconnection they resume where they were.
Destinations: :class:`gateway.hub.Hub`, :class:`gateway.library.Library`; records that are
not a valid ``Recommendation``, ``Trending``, ``TrackEvent`` or ``TrackAssigned`` (decoded by
:func:`schemas.codec.decode`: any bytes, nesting, size or type) go to ``cadenza.dlq``
through ``dead_letter`` and the feed goes on. The feed never stops on a record: anything
unexpected while handling one is logged and dead-lettered too; a lost broker is retried
with backoff, and ``progress_at`` tells the gateway's watchdog (:mod:`gateway.app`) how
long it has gone without a fetch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client.core import GaugeMetricFamily, Metric

from gateway.dead_letters import DeadLetterLog
from gateway.hub import Hub
from gateway.library import Library
from infra.faust_internals import force_metadata_update
from infra.kafka_clients import aio_consumer
from infra.settings import Settings
from schemas.codec import decode
from schemas.errors import SchemaError
from schemas.events import Recommendation, TrackAssigned, TrackEvent, Trending
from schemas.topics import DLQ, RECOMMENDATIONS, TRACKS_ASSIGNED, TRACKS_NEW, TRENDING

log = logging.getLogger("cadenza.gateway.feed")
DeadLetter = Callable[[Any, BaseException], None]  # (aiokafka record, why it was rejected)


MODELS: dict[str, type[Recommendation] | type[Trending]] = {
    "recommendations": Recommendation,
    "trending": Trending,
}
#: The catalogue's topics (applied to :class:`gateway.library.Library`, never pushed).
TRACK_MODELS: dict[str, type[TrackEvent] | type[TrackAssigned]] = {
    "tracks.new": TrackEvent,
    "tracks.assigned": TrackAssigned,
}
RETRY_MAX_S = 30.0
#: Seconds of the track topics read back at the first start.
TRACKS_REPLAY_S: Final = 60.0


def envelope(kind: str, value: bytes | None) -> tuple[Recommendation | Trending, str]:
    """The decoded message and the text sent to browsers: ``{"type": kind, "data": …}``.

    :class:`schemas.errors.SchemaError` for anything that is not a valid message of the
    topic. The browsers get the record's own JSON (fields this gateway does not know
    included: the topic-evolution rule lets producers add fields)."""
    message = decode(MODELS[kind], value)
    assert value is not None  # decode refuses a tombstone
    return message, '{"type":"' + kind + '","data":' + value.decode("utf-8") + "}"


class Feed:
    """Reads both topics and hands every message to the hub; ``ready`` once caught up."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        dead_letter: DeadLetter | None = None,
        library: Library | None = None,
    ) -> None:
        self.settings, self.hub, self.dead_letter, self.library = settings, hub, dead_letter, library
        self.ready = asyncio.Event()
        self.error: str | None = None
        #: ``time.monotonic()`` of the last fetch that answered (with records or not).
        self.progress_at = time.monotonic()
        #: ``time.time()`` of the newest message read (any topic), for its age in ``/metrics``.
        self.message_at: float | None = None
        self.letters = DeadLetterLog(settings.topic_prefix)
        self.names = {
            settings.topic(RECOMMENDATIONS): "recommendations",
            settings.topic(TRENDING): "trending",
            settings.topic(DLQ): "dlq",
        }
        if library is not None:
            self.names[settings.topic(TRACKS_NEW)] = "tracks.new"
            self.names[settings.topic(TRACKS_ASSIGNED)] = "tracks.assigned"
        #: The next offset of each track topic partition (from its first seek on), to resume
        #: there after a reconnection.
        self.positions: dict[TopicPartition, int] = {}

    async def run(self) -> None:
        """Follow the topics until cancelled, reconnecting after any error with backoff
        (2 s doubling to 30 s); it never ends on its own."""
        delay = 2.0
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except KafkaError as err:
                self.error = f"Kafka: {err}"
                log.warning("gateway feed lost Kafka (%s); retrying in %.0f s", err, delay)
            except Exception as err:  # the feed must outlive anything; the watchdog judges stalls
                self.error = f"{type(err).__name__}: {err}"
                log.exception("gateway feed failed; retrying in %.0f s", delay)
            self.ready.clear()
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)

    async def _follow(self) -> None:
        consumer = aio_consumer(self.settings, group_id=None, fetch_max_wait_ms=100)
        await consumer.start()
        try:
            tps = []
            for topic in self.names:
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    await force_metadata_update(consumer)
                    parts = consumer.partitions_for_topic(topic) or {0}
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            replaying, catching_up = await self._seek(consumer, tps)
            if not catching_up:
                self._caught_up()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                self.progress_at = time.monotonic()
                for tp, records in batches.items():
                    end = replaying.get(tp)
                    for record in records:
                        self._handle(tp.topic, record, replay=end is not None and record.offset < end)
                    if not records:
                        continue
                    if self.names[tp.topic] in TRACK_MODELS:
                        self.positions[tp] = records[-1].offset + 1
                    if end is not None and records[-1].offset >= end - 1:
                        del replaying[tp]
                        catching_up.pop(tp, None)
                if not catching_up and not self.ready.is_set():
                    self._caught_up()
        finally:
            await consumer.stop()

    async def _seek(
        self, consumer: Any, tps: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Position every partition; returns the log ends of those read back from an earlier
        offset (their records before it are a replay), and of those readiness waits for
        (all but the track topics)."""
        now = time.time()
        since = int((now - self.settings.gateway_replay_s) * 1000)
        tracks_since = int((now - TRACKS_REPLAY_S) * 1000)
        is_tracks = {tp: self.names[tp.topic] in TRACK_MODELS for tp in tps}
        starts = await consumer.offsets_for_times(
            {tp: tracks_since if is_tracks[tp] else since for tp in tps}
        )
        ends = await consumer.end_offsets(tps)
        fresh = [tp for tp in tps if is_tracks[tp] and tp not in self.positions]
        from_snapshot = await self._snapshot_starts(consumer, fresh, ends)
        replaying: dict[TopicPartition, int] = {}
        catching_up: dict[TopicPartition, int] = {}
        for tp in tps:
            found = starts.get(tp)
            start = int(found.offset) if found is not None else ends[tp]
            if is_tracks[tp]:
                start = self.positions.setdefault(tp, from_snapshot.get(tp, start))
            consumer.seek(tp, start)
            if start < ends[tp]:
                replaying[tp] = ends[tp]
                if not is_tracks[tp]:
                    catching_up[tp] = ends[tp]
        return replaying, catching_up

    async def _snapshot_starts(
        self, consumer: Any, fresh: list[TopicPartition], ends: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Where the track topics' partitions without a position start: the offsets of the
        catalogue snapshot the library loads first (0 for a partition it does not name),
        when the broker holds every record from there to the log's end; else none (they read
        :data:`TRACKS_REPLAY_S` back, and the library is told to scan MongoDB)."""
        offsets = self.library.snapshot_offsets() if self.library is not None and fresh else None
        if offsets is None:
            return {}
        starts = {tp: offsets.get(tp.topic, {}).get(tp.partition, 0) for tp in fresh}
        firsts = await consumer.beginning_offsets(fresh)
        for tp in fresh:
            if not firsts[tp] <= starts[tp] <= ends[tp]:
                assert self.library is not None
                self.library.refuse_snapshot(
                    f"{tp.topic}[{tp.partition}] from offset {starts[tp]}, the broker holds "
                    f"{firsts[tp]} to {ends[tp]}: records deleted by retention, or the topic recreated"
                )
                return {}
        return starts

    def _caught_up(self) -> None:
        self.error = None
        self.ready.set()
        log.info("gateway feed caught up: %d listeners' latest lists cached", self.hub.cached())

    def _observe_recommendation(self, message: Recommendation, produced_ms: int | None) -> None:
        """The recommender's share of a recommendation's latency: its play's ``cause_ts`` to
        its Kafka timestamp (skipped when either is missing)."""
        if not produced_ms or message.cause_ts is None:
            return
        caused = message.cause_ts.timestamp()
        self.hub.metrics.recommend_delay.observe(max(0.0, produced_ms / 1000 - caused))

    def _handle(self, topic: str, record: Any, *, replay: bool) -> None:
        kind = self.names[topic]
        self.hub.metrics.feed_messages[kind] += 1
        self.message_at = time.time()
        if kind == "dlq":  # counted for ops; a bad record here is skipped, never dead-lettered
            self.letters.observe(record.value, count=not replay)
            return
        if not replay and record.timestamp:
            self.hub.metrics.feed_delay.observe(max(0.0, time.time() - record.timestamp / 1000))
        try:
            if kind in TRACK_MODELS:
                assert self.library is not None  # the track topics are read only for it
                self.library.apply(decode(TRACK_MODELS[kind], record.value))
            else:
                self._push(kind, record, replay=replay)
        except SchemaError as err:
            self._reject(record, err)
        except Exception as err:  # a bug must cost one record, never the feed
            log.exception("gateway feed could not handle %s@%s", topic, record.offset)
            self._reject(record, err)

    def _push(self, kind: str, record: Any, *, replay: bool) -> None:
        """A recommendation or trending window to the hub (replayed: only remembered)."""
        message, text = envelope(kind, record.value)
        if isinstance(message, Recommendation):
            if replay:
                self.hub.remember(message.user_id, text)
            else:
                self.hub.push(message.user_id, text)
                self._observe_recommendation(message, record.timestamp)
        else:
            cluster, end = message.cluster, message.window_end.timestamp()
            if replay:
                self.hub.keep_trending(cluster, text, end)
            else:
                self.hub.broadcast(cluster, text, end)

    def _reject(self, record: Any, err: BaseException) -> None:
        self.hub.metrics.errors["feed_bad_message"] += 1
        if self.dead_letter is not None:
            self.dead_letter(record, err)

    def collect(self) -> Iterator[Metric]:
        """The feed's families of ``/metrics``, read at scrape time: dead letters seen, and the
        newest message's age."""
        yield from self.letters.collect()
        age = -1.0 if self.message_at is None else max(0.0, time.time() - self.message_at)
        yield GaugeMetricFamily(
            "cadenza_gateway_feed_last_message_age_seconds",
            "Seconds since the feed read its newest message (-1: none yet). Grows while "
            "nothing arrives; alert when it is large while plays are accepted.",
            round(age, 3),
        )
        yield GaugeMetricFamily(
            "cadenza_gateway_feed_stalled_seconds",
            "Seconds since the feed's last fetch answered (Kafka unreachable or the feed stuck).",
            round(max(0.0, time.monotonic() - self.progress_at), 3),
        )
