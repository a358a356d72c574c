"""``cadenza stream plays`` and ``cadenza stream status`` as an operator runs them.

The job runs as its own process (its own SparkSession, local[2]) against the session's
stack: it processes plays, logs structured progress, reports itself in
``cadenza stream status`` with zero lag once caught up, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from infra.settings import Settings, child_env
from schemas.topics import PLAYS
from tests.streaming_jobs._plays import VERSION, install_model_files, play, publish

pytestmark = [pytest.mark.stack, pytest.mark.spark]

CADENZA = [sys.executable, "-m", "infra"]


def env_for(settings: Settings) -> dict[str, str]:
    return child_env(
        settings,
        spark_master="local[2]",
        spark_shuffle_partitions=2,
        stream_trigger_s=0.5,
        profile_trigger_s=1,
        log_format="json",
    )


def status(settings: Settings) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [*CADENZA, "stream", "status", "--json"],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {row["query"]: row for row in json.loads(out.stdout)}


def test_plays_job_reports_progress_and_lag_and_stops_on_sigterm(
    topics: Settings, db: Database[dict[str, Any]], tmp_path: Path
) -> None:
    settings = topics
    install_model_files(settings.models_path, {11: 0, 12: 1})
    db.tracks.insert_many([{"_id": 11, "cluster": 0, "model_version": VERSION}])
    before = status(settings)
    assert {r["state"] for r in before.values()} == {"never run"}

    events = [play(f"u{i % 3}", 11 + i % 2, i) for i in range(12)]
    publish(settings, settings.topic(PLAYS), [*events, (b"x", b"not json")])
    log = (tmp_path / "stream.log").open("w")
    job = subprocess.Popen(
        [*CADENZA, "stream", "plays"], env=env_for(settings), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 240
        rows: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            assert job.poll() is None, (tmp_path / "stream.log").read_text()[-3000:]
            rows = status(settings)
            history = rows["plays-history"]
            if history["counters"].get("plays_stored") == len(events) and all(
                r["lag"] == 0 for r in rows.values() if r["job"] == "plays"
            ):
                break
            time.sleep(2)
        history = rows["plays-history"]
        assert history["state"] == "running" and history["pid"] == job.pid
        assert history["counters"]["plays_stored"] == len(events)
        assert history["counters"]["dead_letters.SchemaError"] == 1
        assert {r["lag"] for r in rows.values() if r["job"] == "plays"} == {0}
        assert history["processed_offsets"] and sum(history["processed_offsets"].values()) == len(events) + 1
        assert rows["tracks-assign"]["state"] == "never run"

        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=90) == 0
    finally:
        if job.poll() is None:
            job.kill()
        log.close()

    after = status(settings)
    assert {
        after[q]["state"] for q in ("plays-history", "plays-sessions", "plays-profiles", "plays-trending")
    } == {"stopped"}
    assert after["plays-history"]["lag"] == 0
    assert db.plays.count_documents({}) == len(events)
    lines = [
        json.loads(line)
        for line in (tmp_path / "stream.log").read_text().splitlines()
        if line.startswith("{")
    ]
    progress = [entry for entry in lines if entry.get("query") == "plays-history" and "progress" in entry]
    assert progress and any(entry["progress"]["input_rows"] for entry in progress)
