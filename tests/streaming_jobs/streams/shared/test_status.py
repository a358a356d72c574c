"""Unit tests of :mod:`streaming_jobs.streams.shared.status`.

Checkpoint files, progress dicts, status files.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from streaming_jobs.streams.shared.status import (
    STATUS_DIR,
    Counters,
    checkpoint_offsets,
    lag,
    offsets_value,
    processed_offsets,
    progress_summary,
    read_statuses,
)

#: Above Linux's PID_MAX_LIMIT (2**22): no process can have this id.
DEAD_PID = 2**22 + 1


def write_offsets(
    checkpoint: Path, batch: int, offsets: dict[str, dict[str, int]], *, committed: bool = True
) -> None:
    if committed:
        (checkpoint / "commits").mkdir(parents=True, exist_ok=True)
        (checkpoint / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}', encoding="utf-8")
    directory = checkpoint / "offsets"
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {"batchWatermarkMs": 0, "batchTimestampMs": 1_700_000_000_000 + batch, "conf": {}}
    (directory / str(batch)).write_text(
        f"v1\n{json.dumps(metadata)}\n{json.dumps(offsets)}", encoding="utf-8"
    )


# --- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_offsets_come_from_the_highest_batch(tmp_path: Path) -> None:
    checkpoint = tmp_path / "plays-history"
    write_offsets(checkpoint, 0, {"t.plays": {"0": 5, "1": 7}})
    write_offsets(checkpoint, 1, {"t.plays": {"0": 9, "1": 7}})
    assert checkpoint_offsets(checkpoint) == {"t.plays": {0: 9, 1: 7}}

    # numeric, not lexical, order: batch 10 is after batch 9
    write_offsets(checkpoint, 9, {"t.plays": {"0": 90, "1": 91}})
    write_offsets(checkpoint, 10, {"t.plays": {"0": 100, "1": 101, "2": 3}})
    # Hadoop's checksum files and temp files sit next to the batches
    (checkpoint / "offsets" / ".10.crc").write_bytes(b"\x00crc")
    (checkpoint / "offsets" / ".11.tmp").write_text("junk")
    assert checkpoint_offsets(checkpoint) == {"t.plays": {0: 100, 1: 101, 2: 3}}


def test_a_batch_planned_but_not_committed_is_not_processed_yet(tmp_path: Path) -> None:
    checkpoint = tmp_path / "plays-history"
    assert checkpoint_offsets(checkpoint) == {}
    write_offsets(checkpoint, 0, {"t.plays": {"0": 5}}, committed=False)
    assert checkpoint_offsets(checkpoint) == {}  # the first batch is still being written
    (checkpoint / "commits").mkdir()
    (checkpoint / "commits" / "0").write_text("v1\n{}")
    assert checkpoint_offsets(checkpoint) == {"t.plays": {0: 5}}
    write_offsets(checkpoint, 1, {"t.plays": {"0": 9}}, committed=False)
    assert checkpoint_offsets(checkpoint) == {"t.plays": {0: 5}}


def test_checkpoint_offsets_tolerate_a_trailing_newline(tmp_path: Path) -> None:
    checkpoint = tmp_path / "q"
    (checkpoint / "commits").mkdir(parents=True)
    (checkpoint / "commits" / "3").write_text("v1\n{}")
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "offsets" / "3").write_text('v1\n{"batchWatermarkMs":0}\n{"t.plays":{"0":42}}\n\n')
    assert checkpoint_offsets(checkpoint) == {"t.plays": {0: 42}}


def test_checkpoint_offsets_of_a_query_that_never_ran(tmp_path: Path) -> None:
    assert checkpoint_offsets(tmp_path / "missing") == {}
    (tmp_path / "empty" / "offsets").mkdir(parents=True)
    assert checkpoint_offsets(tmp_path / "empty") == {}
    (tmp_path / "no-offsets-dir").mkdir()
    assert checkpoint_offsets(tmp_path / "no-offsets-dir") == {}


def test_checkpoint_offsets_of_a_half_written_batch(tmp_path: Path) -> None:
    checkpoint = tmp_path / "q"
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "offsets" / "0").write_text("")
    assert checkpoint_offsets(checkpoint) == {}
    (checkpoint / "offsets" / "0").write_text('v1\n{"batchWatermarkMs":0}\n{"t.plays":{"0":4')
    assert checkpoint_offsets(checkpoint) == {}


# --- lag -------------------------------------------------------------------------------------


def test_lag_per_topic_and_partition() -> None:
    processed = {"t.plays": {0: 5, 1: 7, 3: 50}, "t.other": {0: 1}}
    end = {"t.plays": {0: 10, 1: 7, 2: 3, 3: 40}, "t.tracks": {0: 4}}
    assert lag(processed, end) == {
        "t.plays": {0: 5, 1: 0, 2: 3, 3: 0},  # unread partition counts whole; never negative
        "t.tracks": {0: 4},  # unread topic counts whole
    }
    assert lag({}, {}) == {}
    assert lag(end, end) == {"t.plays": {0: 0, 1: 0, 2: 0, 3: 0}, "t.tracks": {0: 0}}


# --- progress --------------------------------------------------------------------------------


def sample_progress() -> dict[str, Any]:
    return {
        "id": "6f6c1b4e-0000-0000-0000-000000000000",
        "name": "plays-listeners",
        "batchId": 17,
        "timestamp": "2026-03-02T12:00:05.123Z",
        "numInputRows": 1234,
        "inputRowsPerSecond": 411.3333333,
        "processedRowsPerSecond": 987.26,
        "durationMs": {"addBatch": 900, "getBatch": 3, "triggerExecution": 1250},
        "eventTime": {"avg": "2026-03-02T11:59:00.000Z", "watermark": "2026-03-02T11:50:00.000Z"},
        "stateOperators": [
            {"operatorName": "dedupe", "numRowsTotal": 5000, "numRowsDroppedByWatermark": 3},
            {"operatorName": "applyInPandasWithState", "numRowsTotal": 120, "numRowsDroppedByWatermark": 0},
            {"operatorName": "other"},
        ],
        "sources": [
            {
                "description": "KafkaV2[Subscribe[t.plays]]",
                "startOffset": '{"t.plays":{"0":10,"1":20}}',
                "endOffset": '{"t.plays":{"0":15,"1":27}}',
            }
        ],
        "sink": {"description": "ForeachBatchSink"},
    }


def test_progress_summary_picks_the_operator_fields() -> None:
    assert progress_summary(sample_progress()) == {
        "batch_id": 17,
        "timestamp": "2026-03-02T12:00:05.123Z",
        "input_rows": 1234,
        "input_rows_per_s": 411.3,
        "processed_rows_per_s": 987.3,
        "batch_duration_ms": 1250,
        "watermark": "2026-03-02T11:50:00.000Z",
        "state_rows": 5120,
        "dropped_by_watermark": 3,
        "end_offsets": {"t.plays": {0: 15, 1: 27}},
    }


def test_progress_summary_of_no_progress_and_of_a_sparse_one() -> None:
    assert progress_summary(None) == {}
    assert progress_summary({}) == {}
    sparse = progress_summary({"batchId": 0, "numInputRows": 0, "inputRowsPerSecond": None})
    assert sparse == {
        "batch_id": 0,
        "timestamp": None,
        "input_rows": 0,
        "input_rows_per_s": 0.0,
        "processed_rows_per_s": 0.0,
        "batch_duration_ms": None,
        "watermark": None,
        "state_rows": 0,
        "dropped_by_watermark": 0,
        "end_offsets": {},
    }


@pytest.mark.parametrize(
    "value",
    [
        {"t.plays": {"0": 15, "1": 27}},
        '{"t.plays":{"0":15,"1":27}}',
        str({"t.plays": {"0": 15, "1": 27}}),  # pyspark's str(dict)
    ],
)
def test_end_offsets_in_every_shape_progress_uses(value: Any) -> None:
    assert offsets_value(value) == {"t.plays": {0: 15, 1: 27}}
    assert processed_offsets({"sources": [{"endOffset": value}]}) == {"t.plays": {0: 15, 1: 27}}


def test_end_offsets_that_are_not_offsets() -> None:
    assert offsets_value(None) == {}
    assert offsets_value("not an offset {") == {}
    assert offsets_value("[1, 2]") == {}
    assert offsets_value({"t.plays": 5, "t.x": {"1": 2}}) == {"t.x": {1: 2}}
    assert processed_offsets(None) == {}
    assert processed_offsets({"sources": None}) == {}
    two = {"sources": [{"endOffset": {"a": {"0": 1}}}, {"endOffset": '{"b": {"2": 3}}'}]}
    assert processed_offsets(two) == {"a": {0: 1}, "b": {2: 3}}


# --- counters --------------------------------------------------------------------------------


def test_counters_add_and_snapshot() -> None:
    counters = Counters()
    assert counters.snapshot() == {}
    counters.add("plays-history", "written")
    counters.add("plays-history", "written", 41)
    counters.add("plays-history", "dlq.SchemaError", 2)
    counters.add("plays-trending", "written", 0)
    snap = counters.snapshot()
    assert snap == {
        "plays-history": {"written": 42, "dlq.SchemaError": 2},
        "plays-trending": {"written": 0},
    }
    # a snapshot is a copy
    snap["plays-history"]["written"] = -1
    snap["new"] = {}
    assert counters.snapshot()["plays-history"]["written"] == 42
    assert "new" not in counters.snapshot()


def test_counters_are_exact_under_concurrent_adds() -> None:
    counters = Counters()

    def work() -> None:
        for _ in range(2000):
            counters.add("q", "n")
            counters.add("q", "m", 2)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counters.snapshot() == {"q": {"n": 8000, "m": 16000}}


# --- status files ----------------------------------------------------------------------------


def write_status(settings: Settings, job: str, **fields: Any) -> None:
    directory = settings.run_path / STATUS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{job}.json").write_text(json.dumps({"job": job, **fields}), encoding="utf-8")


def test_read_statuses_tells_which_jobs_are_alive(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert read_statuses(settings) == []

    write_status(settings, "assign", pid=DEAD_PID, state="running", queries=[])
    write_status(settings, "plays", pid=os.getpid(), state="running", queries=[{"name": "plays-history"}])
    write_status(settings, "stopped", pid=os.getpid(), state="stopped")
    write_status(settings, "nopid", state="running")
    (settings.run_path / STATUS_DIR / "broken.json").write_text("{half", encoding="utf-8")
    (settings.run_path / STATUS_DIR / "notes.txt").write_text("{}", encoding="utf-8")

    statuses = read_statuses(settings)
    assert [s["job"] for s in statuses] == ["assign", "nopid", "plays", "stopped"]
    alive = {s["job"]: s["alive"] for s in statuses}
    assert alive == {"assign": False, "nopid": False, "plays": True, "stopped": False}
    plays = next(s for s in statuses if s["job"] == "plays")
    assert plays["queries"] == [{"name": "plays-history"}]
    assert plays["pid"] == os.getpid()
