"""``cadenza recommender --workers 2``: two workers in one group share the listeners; SIGTERM stops both."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from infra.groups import describe_group
from infra.settings import Settings
from infra.stack.process import free_port
from schemas.codec import decode
from schemas.events import Recommendation
from schemas.topics import PLAYS, RECOMMENDATIONS
from tests.recommender_stream.conftest import Reader, env_for, play
from tests.streaming_jobs._plays import publish

pytestmark = [pytest.mark.stack, pytest.mark.spark]


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def wait_settled(settings: Settings, members: int, timeout: float = 120) -> None:
    """Until the recommender group is Stable with ``members`` members holding every plays
    partition (a rebalance is over), read from the broker rather than guessed with a sleep."""
    topic = settings.topic(PLAYS)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if describe_group(settings, settings.recommender_group).settled(topic, PLAYS.partitions, members):
            return
        time.sleep(0.25)
    raise AssertionError(f"the recommender group did not settle on {members} members in {timeout:.0f} s")


def test_two_workers_share_the_listeners_and_stop_on_sigterm(
    trained: dict[str, Any], topics: Settings, tmp_path: Path
) -> None:
    settings = topics
    base = free_port()  # the workers use base and base + 1
    env = env_for(settings, base)
    log = (tmp_path / "cli.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra", "recommender", "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while (
            time.monotonic() < deadline
            and min(
                metric(base, "cadenza_recommender_events_total"),
                metric(base + 1, "cadenza_recommender_events_total"),
            )
            < 0
        ):
            time.sleep(1)
        tracks = [d["_id"] for d in trained["stored"]]
        users = [f"listener{i}" for i in range(24)]
        recs = Reader(settings, settings.topic(RECOMMENDATIONS))
        wait_settled(settings, members=2)
        publish(
            settings, settings.topic(PLAYS), [play(u, tracks[i % len(tracks)]) for i, u in enumerate(users)]
        )
        recs.until(lambda v: {decode(Recommendation, x).user_id for x in v} >= set(users), timeout=120)
        counts = [metric(base + i, "cadenza_recommender_events_total") for i in range(2)]
        assert sum(counts) >= len(users) and min(counts) > 0, counts  # both workers took listeners
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
