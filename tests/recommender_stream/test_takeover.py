"""Two workers in one group; one is killed -9: the survivor takes its listeners with their state.

The survivor must take over the dead worker's ``cadenza.plays`` partitions once its session
runs out (``CADENZA_FAUST_SESSION_TIMEOUT_S``), restore those listeners' table partitions
from the changelog (its RocksDB standby copy plus the tail), and answer their next plays
from the restored state, not from an empty one. How long this takes under load is measured
by ``python -m bench.faults`` on the cluster profile; here it is what happens that is checked.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kafka.partitioner import murmur2

from infra.groups import GroupAssignment, describe_group
from infra.settings import Settings
from schemas.codec import decode, encode_key
from schemas.events import Recommendation
from schemas.topics import PLAYS, RECOMMENDATIONS
from tests.recommender_stream.conftest import Reader, Worker, play
from tests.recommender_stream.test_crash_recovery import changelog_state
from tests.streaming_jobs._plays import publish

pytestmark = [pytest.mark.stack, pytest.mark.spark]


def partition_of(user: str) -> int:
    """The partition the producers' default partitioner gives a listener's key."""
    return (murmur2(encode_key(user)) & 0x7FFFFFFF) % PLAYS.partitions


def settled(settings: Settings, ports: list[int], timeout: float = 120.0) -> GroupAssignment:
    """Wait until the group is stable with exactly the workers on ``ports``, each holding plays."""
    topic = settings.topic(PLAYS)
    deadline = time.monotonic() + timeout
    group = None
    while time.monotonic() < deadline:
        group = describe_group(settings, settings.recommender_group)
        holders = {port_of(m.worker) for m in group.members if m.holds(topic)}
        if group.settled(topic, PLAYS.partitions, len(ports)) and holders == set(ports):
            return group
        time.sleep(0.5)
    raise AssertionError(f"the group did not settle on workers {ports}: {group}")


def port_of(worker_url: str) -> int | None:
    """The web port in a Faust worker's URL (``http://127.0.0.1:6066``)."""
    return urlsplit(worker_url).port if worker_url else None


def recommended_users(values: list[bytes]) -> Counter[str]:
    return Counter(decode(Recommendation, v).user_id for v in values)


def test_a_killed_workers_listeners_move_to_the_survivor_with_their_state(
    trained: dict[str, Any], topics: Settings, tmp_path: Path
) -> None:
    settings = topics
    a, b = Worker(settings, tmp_path / "a.log"), Worker(settings, tmp_path / "b.log")
    tracks = [d["_id"] for d in trained["stored"]]
    users = [f"mover{i}" for i in range(24)]
    try:
        a.start()
        b.start()
        group = settled(settings, [a.port, b.port])
        owners = group.owners(settings.topic(PLAYS))
        on_a = [u for u in users if port_of(owners[partition_of(u)]) == a.port]
        assert on_a and len(on_a) < len(users), owners  # both workers hold some listeners

        recs = Reader(settings, settings.topic(RECOMMENDATIONS))
        first = [play(u, tracks[i % len(tracks)]) for i, u in enumerate(users)]
        publish(settings, settings.topic(PLAYS), first)
        recs.until(lambda v: set(recommended_users(v)) >= set(users), timeout=120)

        a.stop(kill=True)
        group = settled(settings, [b.port])
        assert set(group.owners(settings.topic(PLAYS))) == set(range(PLAYS.partitions))

        second = [play(u, tracks[(i + 5) % len(tracks)]) for i, u in enumerate(users)]
        publish(settings, settings.topic(PLAYS), second)
        recs.until(lambda v: all(recommended_users(v).get(u, 0) >= 2 for u in users), timeout=120)
    finally:
        a.stop()
        b.stop()

    # The survivor applied each moved listener's second play to the state the dead worker
    # had written (two events), not to a fresh one (which would show one).
    state = changelog_state(settings)
    assert {u: state[u]["events"] for u in users} == dict.fromkeys(users, 2)
    for i, u in enumerate(users):
        if u in on_a:  # both plays, in order, in the restored-then-updated state
            assert state[u]["recent"][-2:] == [tracks[i % len(tracks)], tracks[(i + 5) % len(tracks)]]
