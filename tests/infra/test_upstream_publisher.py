"""The upstream example (infra/deploy/upstream_publisher.py): schema-checked plays and tracks reach Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.kafka_clients import consumer
from infra.settings import Settings
from schemas.codec import decode
from schemas.events import PlayEvent, TrackEvent
from schemas.features import N_FEATURES
from schemas.json_schema import export
from schemas.topics import PLAYS, TRACKS_NEW

pytestmark = [pytest.mark.stack]
SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "deploy" / "upstream_publisher.py"


def publish(settings: Settings, schemas: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--bootstrap",
            settings.bootstrap_servers,
            "--topic-prefix",
            settings.topic_prefix,
            "--schemas",
            str(schemas),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def read(settings: Settings, topic: str) -> list[Any]:
    c = consumer(settings, topic, group_id=f"r-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest")
    got: list[Any] = []
    try:
        for _ in range(10):
            for records in c.poll(timeout_ms=500).values():
                got.extend(records)
    finally:
        c.close()
    return got


def test_the_example_publishes_valid_plays_and_tracks_and_refuses_invalid_ones(
    topics: Settings, tmp_path: Path
) -> None:
    schemas = tmp_path / "schemas"
    export(schemas, topics.topic_prefix)
    ok = publish(topics, schemas, "play", "upstream-1", "42", "like", "--position", "3.5")
    assert ok.returncode == 0, ok.stderr
    refused = publish(topics, schemas, "play", "bad user!", "42", "play")
    assert refused.returncode == 2 and "user_id" in refused.stderr
    track = {"track_id": 777, "title": "From upstream", "genres": [12], "features": [0.5] * N_FEATURES}
    (tmp_path / "track.json").write_text(json.dumps(track))
    assert publish(topics, schemas, "track", str(tmp_path / "track.json")).returncode == 0
    short = {**track, "features": [0.5] * 3}
    (tmp_path / "short.json").write_text(json.dumps(short))
    bad = publish(topics, schemas, "track", str(tmp_path / "short.json"))
    assert bad.returncode == 2 and "features" in bad.stderr

    plays = read(topics, topics.topic(PLAYS))
    assert len(plays) == 1 and plays[0].key == b"upstream-1"
    event = decode(PlayEvent, plays[0].value)
    assert (event.user_id, event.track_id, event.kind.value, event.position_s) == (
        "upstream-1",
        42,
        "like",
        3.5,
    )
    tracks = read(topics, topics.topic(TRACKS_NEW))
    assert len(tracks) == 1 and tracks[0].key == b"777"
    assert decode(TrackEvent, tracks[0].value).title == "From upstream"
