"""Produce and consume through the real local broker with kafka-python and aiokafka."""

from __future__ import annotations

import asyncio

import pytest

from infra.errors import UnreachableError
from infra.kafka_clients import (
    admin,
    aio_consumer,
    aio_producer,
    consumer,
    describe_topics,
    ensure_topics,
    partition_states,
    producer,
)
from infra.settings import Settings
from infra.stack.process import free_port
from schemas import PlayEvent, decode, encode, encode_key
from schemas.topics import PLAYS, TOPICS

pytestmark = pytest.mark.stack


def _plays(n: int, users: int = 7) -> list[PlayEvent]:
    return [PlayEvent(user_id=f"user{i % users}", track_id=i + 1, kind="play") for i in range(n)]


def _drain(c: object, want: int, timeout_ms: int = 20000) -> list[object]:
    import time

    got: list[object] = []
    deadline = time.monotonic() + timeout_ms / 1000
    while len(got) < want and time.monotonic() < deadline:
        for records in c.poll(timeout_ms=500).values():  # type: ignore[attr-defined]
            got.extend(records)
    return got


def test_registry_topics_exist_with_their_partition_counts(topics: Settings) -> None:
    states = {t.name: t for t in describe_topics(topics)}
    for spec in TOPICS:
        assert states[topics.topic(spec)].partitions == spec.partitions
    # the recommender's changelog exists before any worker starts (workers would race for it)
    changelog = partition_states(topics, topics.recommender_changelog)
    assert len(changelog) == PLAYS.partitions
    assert ensure_topics(topics) == []  # idempotent


def test_kafka_python_round_trip_keeps_per_user_order(topics: Settings) -> None:
    events = _plays(120)
    p = producer(topics)
    for e in events:
        p.send(topics.topic(PLAYS), key=encode_key(e.user_id), value=encode(e))
    p.flush(30)
    p.close()
    c = consumer(topics, topics.topic(PLAYS), group_id="t-roundtrip")
    records = _drain(c, len(events))
    c.close()
    decoded = [decode(PlayEvent, r.value) for r in records]  # type: ignore[attr-defined]
    assert sorted(e.event_id for e in decoded) == sorted(e.event_id for e in events)
    # Keyed by user: one user's events share a partition and keep their order.
    by_user: dict[str, set[int]] = {}
    for r in records:
        by_user.setdefault(r.key.decode(), set()).add(r.partition)  # type: ignore[attr-defined]
    assert all(len(parts) == 1 for parts in by_user.values())
    for user in by_user:
        sent = [e.track_id for e in events if e.user_id == user]
        got = [e.track_id for e in decoded if e.user_id == user]
        assert got == sent


def test_consumer_group_resumes_from_committed_offset(topics: Settings) -> None:
    topic = topics.topic(PLAYS)
    events = _plays(60, users=1)  # one key -> one partition -> total order
    p = producer(topics)
    for e in events:
        p.send(topic, key=b"user0", value=encode(e))
    p.flush(30)
    p.close()

    first = consumer(topics, topic, group_id="t-resume", max_poll_records=25)
    batch = _drain(first, 25)[:25]
    assert len(batch) == 25
    last = batch[-1]
    from kafka.structs import OffsetAndMetadata, TopicPartition

    first.commit({TopicPartition(topic, last.partition): OffsetAndMetadata(last.offset + 1, "", -1)})  # type: ignore[attr-defined]
    first.close()

    second = consumer(topics, topic, group_id="t-resume")
    rest = _drain(second, 35)
    second.close()
    ids = [decode(PlayEvent, r.value).event_id for r in batch + rest]  # type: ignore[attr-defined]
    assert ids == [e.event_id for e in events]  # nothing lost, nothing twice


def test_aiokafka_round_trip_and_resume(topics: Settings) -> None:
    topic = topics.topic(PLAYS)
    events = _plays(40, users=1)

    async def run() -> tuple[list[PlayEvent], list[PlayEvent]]:
        p = aio_producer(topics)
        await p.start()
        try:
            for e in events:
                await p.send(topic, key=b"user0", value=encode(e))
            await p.flush()
        finally:
            await p.stop()
        c = aio_consumer(topics, topic, group_id="t-aio")
        await c.start()
        got: list[PlayEvent] = []
        try:
            while len(got) < 10:
                msg = await asyncio.wait_for(c.getone(), 20)
                got.append(decode(PlayEvent, msg.value))
            await c.commit()
        finally:
            await c.stop()
        c2 = aio_consumer(topics, topic, group_id="t-aio")
        await c2.start()
        rest: list[PlayEvent] = []
        try:
            while len(rest) < 30:
                msg = await asyncio.wait_for(c2.getone(), 20)
                rest.append(decode(PlayEvent, msg.value))
        finally:
            await c2.stop()
        return got, rest

    got, rest = asyncio.run(run())
    assert [e.event_id for e in got + rest] == [e.event_id for e in events]


def test_unreachable_broker_gives_one_actionable_error(settings: Settings) -> None:
    dead = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", data_dir=settings.data_dir)
    with pytest.raises(UnreachableError) as info:
        admin(dead)
    message = str(info.value)
    assert "did not answer" in message and "cadenza stack up" in message
    assert "\n" not in message
