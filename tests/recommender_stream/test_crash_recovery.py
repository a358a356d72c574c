"""kill -9 a recommender worker mid-stream and restart it: state recovered, every play counted once.

Listener state lives in a Faust table changelogged to Kafka. After the crash, the new
worker restores the table and re-reads the uncommitted plays; the bounded list of seen
event ids makes the replay (and plays re-sent by a producer) change nothing. (Faust's
stock recovery could drop the plays fetched while it finished; see
``infra/faust_internals.py``.) The final
state of each listener, read from the changelog topic, must equal the state recomputed
in the test from that listener's distinct events, in order.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

import pytest

from infra.settings import Settings
from recommender_stream.app import changelog_topic
from recommender_stream.listener import Limits, ListenerState
from schemas.codec import encode, encode_key
from schemas.events import PlayEvent, PlayKind
from schemas.topics import PLAYS, RECOMMENDATIONS
from tests.conftest import read_until_idle
from tests.recommender_stream.conftest import Reader, Worker
from tests.streaming_jobs._plays import publish

pytestmark = [pytest.mark.stack, pytest.mark.spark]
KINDS = (PlayKind.PLAY, PlayKind.PLAY, PlayKind.COMPLETE, PlayKind.SKIP, PlayKind.LIKE)


def changelog_state(settings: Settings) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for r in read_until_idle(settings, changelog_topic(settings)):
        latest[json.loads(r.key)] = json.loads(r.value) if r.value is not None else {}
    return latest


def test_kill_9_and_restart_recovers_every_listener_exactly_once(
    trained: dict[str, Any], topics: Settings, worker: Worker
) -> None:
    settings = topics
    tracks = [d["_id"] for d in trained["stored"]]
    cluster = trained["spark_cluster"]
    events: list[PlayEvent] = []
    base = time.time() - 3600
    for i in range(240):
        user = f"user{i % 6}"
        events.append(
            PlayEvent(
                user_id=user,
                track_id=tracks[(i * 7) % len(tracks)],
                kind=KINDS[i % len(KINDS)],
                ts=base + i * 10,
            )
        )
    first, second = events[:120], events[120:]
    resent = events[100:130]  # a producer retrying: same event ids again
    topic = settings.topic(PLAYS)
    worker.start()
    recs = Reader(settings, settings.topic(RECOMMENDATIONS))
    publish(settings, topic, [(encode_key(e.user_id), encode(e)) for e in first])
    recs.until(lambda v: len(v) >= 60, timeout=120)
    worker.stop(kill=True)  # kill -9 in the middle of the first half
    publish(settings, topic, [(encode_key(e.user_id), encode(e)) for e in [*second, *resent]])
    worker.start()

    expected: dict[str, ListenerState] = defaultdict(ListenerState)
    limits = Limits(settings.reco_last_n, settings.reco_half_life_s, settings.reco_seen_events)
    for e in events:
        expected[e.user_id].apply(
            str(e.event_id),
            track_id=e.track_id,
            kind=e.kind.value,
            cluster=cluster[e.track_id],
            ts=e.ts.timestamp(),
            limits=limits,
        )
    deadline = time.monotonic() + 180
    state: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        state = changelog_state(settings)
        if all(state.get(u, {}).get("events") == s.events for u, s in expected.items()):
            break
        time.sleep(2)
    for user, want in expected.items():
        got = ListenerState.from_dict(state.get(user))
        assert got.events == want.events == 40, user
        assert (got.recent, got.skipped, got.liked, got.seen) == (
            want.recent,
            want.skipped,
            want.liked,
            want.seen,
        )
        assert got.last_ts == pytest.approx(want.last_ts)
        assert got.affinity.keys() == want.affinity.keys()
        for c, w in want.affinity.items():
            assert got.affinity[c] == pytest.approx(w, rel=1e-9, abs=1e-12)
    assert worker.proc is not None and worker.proc.poll() is None
    assert "cadenza_recommender_duplicates_total" in worker.metrics()
