"""Hostile records on every Cadenza topic, published as an upstream service would, against the
running system (both Spark jobs, the recommender worker and the gateway under supervisord).

Each class of bad input is sent at least 10 times to each topic with a plain Kafka client,
with hostile keys and headers. Then: no process restarted (same supervisor pids); every
record is in ``cadenza.dlq`` exactly once per stage that consumes its topic, with a
reason; the gateway (which also reads ``cadenza.dlq`` for the ops page) skips hostile
records written there; valid plays before and after are all in the history, and a play
posted afterwards reaches the listener's websocket; ``/readyz`` answers 200, and again
after the gateway restarts and replays the corpus.

``cadenza.tracks.assigned`` is read by the gateway alone (its in-memory catalogue), which
also reads ``cadenza.tracks.new``.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infra import supervise
from infra.demo import wait_ready
from infra.kafka_clients import producer
from infra.prometheus import parse_metrics
from schemas.codec import decode
from schemas.errors import SchemaError
from schemas.events import DeadLetter, PlayEvent, Recommendation, TrackAssigned, TrackEvent, Trending
from schemas.features import N_FEATURES
from schemas.topics import DLQ, PLAYS, RECOMMENDATIONS, TRACKS_ASSIGNED, TRACKS_NEW, TRENDING
from tests.conftest import read_until_idle
from tests.e2e.conftest import System
from tests.e2e.test_system import history_ids, play_and_wait

pytestmark = [pytest.mark.stack, pytest.mark.spark, pytest.mark.e2e]

PER_CLASS = 10
HUGE = (2 << 20) - (128 << 10)  # with a 70 kB key, under the broker's 2 MiB record limit
#: Who consumes each topic, by the ``stage`` their dead letters carry.
STAGES = {
    PLAYS.name: {"recommender_stream", "streaming_jobs.plays"},
    TRACKS_NEW.name: {"recommender_stream", "streaming_jobs.assign", "gateway"},
    TRACKS_ASSIGNED.name: {"gateway"},
    RECOMMENDATIONS.name: {"gateway"},
    TRENDING.name: {"recommender_stream", "gateway"},
}
MODELS: dict[str, Any] = {
    PLAYS.name: PlayEvent,
    TRACKS_NEW.name: TrackEvent,
    TRACKS_ASSIGNED.name: TrackAssigned,
    RECOMMENDATIONS.name: Recommendation,
    TRENDING.name: Trending,
}
HOSTILE_KEYS: list[bytes | None] = [None, b"", b"\xff\xfe\x00", b"k" * 70_000, "ü🎵".encode(), b"\x00" * 8]
HOSTILE_HEADERS: list[list[tuple[str, bytes]]] = [
    [],
    [("", b"")],
    [("x", b"\xff" * 100)],
    [("ü" * 100, b"\x00")],
    [("a", b"1"), ("a", b"2")],
]


def play_json(i: int, **fields: Any) -> bytes:
    base = {"event_id": str(uuid.uuid4()), "user_id": f"evil{i}", "track_id": 1, "kind": "play"}
    return json.dumps({**base, **fields}).encode()


def generic(i: int) -> dict[str, bytes | None]:
    """Classes of bad value that no topic accepts, the ``i``-th of each."""
    return {
        "empty": b"",
        "tombstone": None,
        "invalid_utf8": b"\xff\xfe" + bytes([i]) + b'{"a": 1}',
        "two_mib": b"[" * HUGE if i % 2 else b"x" * HUGE,
        "deep_nesting": b"[" * 100_000 if i % 2 else b'{"a":' * 50_000,
        "huge_integer": b'{"track_id": ' + b"9" * (5000 + i) + b"}",
        "nan": b'{"track_id": NaN, "cluster": Infinity, "plays": -Infinity, "i": %d}' % i,
        "not_an_object": [b"[1, 2]", b'"text"', b"42", b"null", b"true"][i % 5],
        "truncated_json": b'{"user_id": "u%d", "items": [' % i,
    }


def specific(topic: str, i: int) -> dict[str, bytes]:
    """Classes that look right but break a topic's rules: wrong types, unknown ids, bad times."""
    if topic == PLAYS.name:
        return {
            "wrong_types": play_json(i, track_id="abc", kind=7),
            "unknown_id": play_json(i, track_id=900_000_000 + i),
            "future_time": play_json(i, ts="3000-01-01T00:00:00Z"),
            "ancient_time": play_json(i, ts="1500-01-01T00:00:00Z"),
            "naive_time": play_json(i, ts="2026-01-01T00:00:00"),
        }
    if topic == TRACKS_NEW.name:
        return {
            "wrong_types": json.dumps({"track_id": "x", "features": "loud"}).encode(),
            "short_vector": json.dumps({"track_id": 10_000 + i, "features": [0.5] * 17}).encode(),
            "nan_features": json.dumps(
                {"track_id": 10_000 + i, "features": [float("nan")] * N_FEATURES}
            ).encode(),
        }
    if topic == TRACKS_ASSIGNED.name:
        return {
            "wrong_types": json.dumps({"track_id": "x", "cluster": "hot"}).encode(),
            "negative_cluster": json.dumps(
                {"track_id": 10_000 + i, "cluster": -1, "model_version": "v"}
            ).encode(),
            "no_model_version": json.dumps(
                {"track_id": 10_000 + i, "cluster": 1, "model_version": ""}
            ).encode(),
        }
    if topic == RECOMMENDATIONS.name:
        return {
            "wrong_types": json.dumps({"user_id": ["a"], "items": "none"}).encode(),
            "bad_item": json.dumps({"user_id": f"u{i}", "items": [{"track_id": -1}]}).encode(),
        }
    return {
        "wrong_types": json.dumps({"cluster": "hot", "plays": "many"}).encode(),
        "naive_time": json.dumps(
            {
                "cluster": 1,
                "window_start": "2026-01-01T00:00:00",
                "window_end": "2026-01-01T00:10:00",
                "plays": 1,
            }
        ).encode(),
    }


def corpus(topic: str) -> Iterator[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """(class, key, value, headers): at least PER_CLASS records per class."""
    for i in range(PER_CLASS):
        for name, value in {**generic(i), **specific(topic, i)}.items():
            key = HOSTILE_KEYS[i % len(HOSTILE_KEYS)]
            if key is None and value is None:  # Kafka clients refuse a record with neither
                key = b"\xff"
            yield name, key, value, HOSTILE_HEADERS[i % len(HOSTILE_HEADERS)]


def pids(system: System) -> dict[str, str]:
    out = {}
    for row in supervise.status(system.settings):
        out[row["name"]] = str(row["pid"]) if row["state"] == "RUNNING" else row["state"]
    return out


def metrics(system: System) -> dict[str, float]:
    return parse_metrics(httpx.get(f"{system.url}/metrics", timeout=30).text)


def test_hostile_records_on_every_topic_are_dead_lettered_once_per_stage_and_nothing_stops(
    system: System,
) -> None:
    settings = system.settings

    def running_pids() -> dict[str, str] | None:
        found = pids(system)
        return found if all(v.isdigit() for v in found.values()) else None

    before = system.wait("every program RUNNING", running_pids)
    track = int(system.db.tracks.find_one({"cluster": {"$exists": True}}, {"_id": 1})["_id"])  # type: ignore[index]
    first = play_and_wait(system, "steady-1", track)
    assert first

    sent: dict[tuple[str, int, int], str] = {}  # (topic, partition, offset) -> class
    expect_dead: set[tuple[str, int, int]] = set()
    counts: Counter[tuple[str, str]] = Counter()
    with producer(settings, max_request_size=4 << 20, linger_ms=20) as p:
        futures = []
        for topic in STAGES:
            for name, key, value, headers in corpus(topic):
                future = p.send(settings.topic(topic), key=key, value=value, headers=headers)
                futures.append((topic, name, value, future))
                counts[(topic, name)] += 1
        dlq_values = [b"[" * 100_000, b"", None, b"\xff\xff", b'{"topic": 5}', b"x" * HUGE] * PER_CLASS
        dlq_futures = [p.send(settings.topic(DLQ), key=b"evil", value=v) for v in dlq_values]
        p.flush(timeout=120)
        for topic, name, value, future in futures:
            meta = future.get(timeout=60)
            where = (settings.topic(topic), meta.partition, meta.offset)
            sent[where] = name
            try:
                decode(MODELS[topic], value)
            except SchemaError:
                expect_dead.add(where)
            else:  # valid in shape: refused by every consumer for its content (unknown track)
                assert (topic, name) == (PLAYS.name, "unknown_id"), (topic, name)
                expect_dead.add(where)
        for future in dlq_futures:
            future.get(timeout=60)
    assert min(counts.values()) >= PER_CLASS
    assert len(expect_dead) == len(sent)

    stage_of = {settings.topic(name): stages for name, stages in STAGES.items()}

    def letters() -> Counter[tuple[str, int, int, str]]:
        seen: Counter[tuple[str, int, int, str]] = Counter()
        for r in read_until_idle(settings, settings.topic(DLQ), idle_polls=2):
            try:
                letter = decode(DeadLetter, r.value)
            except SchemaError:
                continue
            where = (letter.topic, letter.partition or 0, letter.offset or 0)
            if where in sent:
                assert letter.error, letter
                seen[(*where, letter.stage)] += 1
        return seen

    wanted = {(*where, stage) for where in expect_dead for stage in stage_of[where[0]]}
    found: Counter[tuple[str, int, int, str]] = Counter()

    def all_dead_lettered() -> bool:
        found.clear()
        found.update(letters())
        return set(found) >= wanted

    system.wait(f"{len(wanted)} dead letters", all_dead_lettered, 420, 5)
    assert set(found) == wanted
    doubled = {k: n for k, n in found.items() if n != 1}
    assert not doubled, list(doubled.items())[:5]

    # Nothing restarted; the gateway read the hostile dead-letter records and skipped them.
    assert pids(system) == before
    m = metrics(system)
    assert m["cadenza_gateway_dlq_unreadable_total"] >= len(dlq_values)
    for topic, stages in STAGES.items():
        for stage in stages:
            assert m.get(f'cadenza_dead_letters_total{{stage="{stage}",topic="{topic}"}}', 0) >= PER_CLASS, (
                topic,
                stage,
            )
    assert httpx.get(f"{system.url}/api/ops", timeout=30).status_code == 200
    assert httpx.get(f"{system.url}/readyz", timeout=30).status_code == 200

    # Valid plays still flow: one posted now reaches the listener's websocket, and every
    # valid play, before and after, is in the history once.
    after = play_and_wait(system, "steady-2", track)
    assert after
    users = {"steady-1", "steady-2"}
    stored = system.wait("both valid plays in history", lambda: len(history_ids(system, users)) >= 2, 180, 2)
    assert stored
    history = history_ids(system, users)
    assert len(history) == 2 and max(history.values()) == 1

    # A restarted gateway replays the corpus (recommendations, trending and dead letters)
    # and still becomes ready.
    supervise.restart_program(settings, "gateway")
    wait_ready(settings, timeout=120)
    assert httpx.get(f"{system.url}/readyz", timeout=30).status_code == 200
    assert play_and_wait(system, "steady-3", track)
    restarted = pids(system)
    assert {k: v for k, v in restarted.items() if k != "gateway"} == {
        k: v for k, v in before.items() if k != "gateway"
    }
