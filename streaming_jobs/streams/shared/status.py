"""Progress, counters and lag of the streaming queries, for logs and ``cadenza stream status``.

Sources: each running query's ``lastProgress`` (rows in, rows/s, batch duration,
watermark, state rows, rows dropped by the watermark), the counters the
``foreachBatch`` sinks keep (documents written, dead letters per reason), the
checkpoint's ``offsets/`` log (what a query has processed, even while it is stopped)
and the topics' end offsets. Destinations: one structured log line per new batch, and
``<data_dir>/run/streams/<job>.json``, rewritten every few seconds by the running job
and read by ``cadenza stream status``.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from infra.offsets import checkpoint_offsets, lag
from infra.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("cadenza.stream")
STATUS_DIR: Final = "streams"


class Counters:
    """Thread-safe cumulative counters per query (driver side)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[str, int]] = defaultdict(dict)

    def add(self, query: str, name: str, amount: int = 1) -> None:
        with self._lock:
            values = self._values[query]
            values[name] = values.get(name, 0) + int(amount)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {q: dict(v) for q, v in self._values.items()}


# --- progress ---------------------------------------------------------------------------------


def offsets_value(value: Any) -> dict[str, dict[int, int]]:
    """A Kafka source offset from progress: a dict, its JSON, or pyspark's ``str(dict)``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return {}
    if not isinstance(value, dict):
        return {}
    return {
        str(topic): {int(p): int(o) for p, o in parts.items()}
        for topic, parts in value.items()
        if isinstance(parts, dict)
    }


def processed_offsets(progress: dict[str, Any] | None) -> dict[str, dict[int, int]]:
    """End offsets of the last batch of a query's progress, per topic and partition."""
    out: dict[str, dict[int, int]] = {}
    for source in (progress or {}).get("sources") or []:
        out.update(offsets_value(source.get("endOffset")))
    return out


def progress_summary(progress: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of a ``StreamingQueryProgress`` an operator looks at."""
    if not progress:
        return {}
    durations = progress.get("durationMs") or {}
    states = progress.get("stateOperators") or []
    return {
        "batch_id": progress.get("batchId"),
        "timestamp": progress.get("timestamp"),
        "input_rows": progress.get("numInputRows"),
        "input_rows_per_s": round(float(progress.get("inputRowsPerSecond") or 0.0), 1),
        "processed_rows_per_s": round(float(progress.get("processedRowsPerSecond") or 0.0), 1),
        "batch_duration_ms": durations.get("triggerExecution"),
        "watermark": (progress.get("eventTime") or {}).get("watermark"),
        "state_rows": sum(int(s.get("numRowsTotal") or 0) for s in states),
        "dropped_by_watermark": sum(int(s.get("numRowsDroppedByWatermark") or 0) for s in states),
        "end_offsets": processed_offsets(progress),
    }


@dataclass
class StatusBoard:
    """Writes a job's status file and logs each new batch; run :meth:`watch` in a thread."""

    settings: Settings
    job: str
    queries: list[StreamingQuery]
    counters: Counters
    interval_s: float = 2.0

    def __post_init__(self) -> None:
        self.started = datetime.now(UTC).isoformat()
        self._stop = threading.Event()
        self._last_batch: dict[str, Any] = {}
        self._dropped: dict[str, int] = defaultdict(int)

    @property
    def path(self) -> Path:
        return self.settings.run_path / STATUS_DIR / f"{self.job}.json"

    def snapshot(self, state: str = "running") -> dict[str, Any]:
        counters = self.counters.snapshot()
        queries = []
        for query in self.queries:
            name = query.name or str(query.id)
            error: BaseException | None
            try:
                progress = progress_summary(query.lastProgress)
                active = query.isActive
                error = query.exception()
            except Exception as err:  # the JVM side may be gone while shutting down
                progress, active, error = {}, False, err
            queries.append(
                {
                    "name": name,
                    "id": str(query.id),
                    "active": active,
                    "error": None if error is None else str(error).splitlines()[0][:500],
                    "checkpoint": str(self.settings.checkpoints_path / name),
                    "progress": progress,
                    "dropped_by_watermark_total": self._dropped[name],
                    "counters": counters.get(name, {}),
                }
            )
        return {
            "job": self.job,
            "pid": os.getpid(),
            "state": state,
            "started": self.started,
            "updated": datetime.now(UTC).isoformat(),
            "queries": queries,
        }

    def write(self, state: str = "running") -> dict[str, Any]:
        snap = self.snapshot(state)
        for q in snap["queries"]:
            progress = q["progress"]
            if progress and progress.get("batch_id") != self._last_batch.get(q["name"]):
                self._last_batch[q["name"]] = progress.get("batch_id")
                self._dropped[q["name"]] += int(progress.get("dropped_by_watermark") or 0)
                q["dropped_by_watermark_total"] = self._dropped[q["name"]]
                log.info(
                    "%s batch %s: %s rows, %.0f rows/s in, %.0f rows/s processed, %s ms",
                    q["name"],
                    progress.get("batch_id"),
                    progress.get("input_rows"),
                    progress.get("input_rows_per_s") or 0.0,
                    progress.get("processed_rows_per_s") or 0.0,
                    progress.get("batch_duration_ms"),
                    extra={"query": q["name"], "progress": progress, "counters": q["counters"]},
                )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(snap, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, self.path)
        return snap

    def watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.write()
            except Exception:  # never let monitoring kill the job
                log.exception("could not write the stream status")

    def stop(self) -> None:
        self._stop.set()


def read_statuses(settings: Settings) -> list[dict[str, Any]]:
    """Every job's last status file, with ``alive`` telling whether its process still runs."""
    directory = settings.run_path / STATUS_DIR
    out = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        status["alive"] = status.get("state") == "running" and _alive(int(status.get("pid") or 0))
        out.append(status)
    return out


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def query_rows(settings: Settings, ends: dict[str, dict[int, int]] | None) -> list[dict[str, Any]]:
    """One row per known query: state, last progress, counters and lag (when ``ends`` is known).

    Lag comes from the checkpoint's offsets, so it is right for a stopped query too.
    """
    from streaming_jobs.streams.shared.names import JOBS, SOURCES

    statuses = {s["job"]: s for s in read_statuses(settings)}
    rows = []
    for job, names in JOBS.items():
        status = statuses.get(job)
        by_name = {q["name"]: q for q in (status or {}).get("queries", [])}
        for name in names:
            q = by_name.get(name, {})
            topic = settings.topic(SOURCES[name])
            processed = checkpoint_offsets(settings.checkpoints_path / name)
            if status is None and not processed:
                state = "never run"
            elif status is not None and status["alive"] and q.get("active", True):
                state = "running"
            elif status is not None and status.get("state") == "failed":
                state = "failed"
            else:
                state = "stopped"
            row_lag = None
            if ends is not None and topic in ends:
                row_lag = sum(lag({topic: processed.get(topic, {})}, {topic: ends[topic]})[topic].values())
            rows.append(
                {
                    "job": job,
                    "query": name,
                    "topic": topic,
                    "state": state,
                    "pid": (status or {}).get("pid"),
                    "error": q.get("error"),
                    "progress": q.get("progress") or {},
                    "counters": q.get("counters") or {},
                    "dropped_by_watermark_total": q.get("dropped_by_watermark_total", 0),
                    "processed_offsets": processed.get(topic, {}),
                    "lag": row_lag,
                }
            )
    return rows
