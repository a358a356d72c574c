"""Executor side of the batch job: the audio files of one Spark partition -> MongoDB + Kafka.

Source: :class:`WorkItem` rows (track id, audio path under the FMA root, metadata)
that :mod:`etl.job` spreads over Spark's Python workers. Each file's excerpt (FMA's
30 s from the middle by default, :attr:`PartitionConfig.excerpt_s`) is decoded and
analysed in bounded memory by :func:`etl.features.analyse_file` and recorded on the
document with the whole track's duration; then, once per partition, the new
tracks are inserted into ``tracks`` (unordered, duplicates = already stored), tracks
stored under an older feature-set version are replaced, and every track written is
announced as a ``TrackEvent`` on ``tracks.new`` through the outbox of
:mod:`etl.writer`. A file that fails becomes an ``etl_errors`` record and the
partition carries on. Yields one :class:`Outcome` per item for the driver's summary.

MongoDB clients and Kafka producers are kept per worker process (Spark reuses Python
workers), so numba's warm-up and the connections are paid once per worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol

from kafka import KafkaProducer
from pymongo import MongoClient
from pymongo.database import Database

from etl import writer
from etl.audio import FMA_CLIP_S
from infra.kafka_clients import producer as new_producer
from infra.mongo import client as new_client
from infra.settings import Settings
from schemas.documents import EtlErrorDoc
from schemas.events import TrackEvent

STORED: Final = "stored"
UPDATED: Final = "updated"
DUPLICATE: Final = "duplicate"
FAILED: Final = "failed"
SOURCE: Final = "extracted"

_MONGO: dict[str, MongoClient[writer.Doc]] = {}
_PRODUCERS: dict[str, KafkaProducer] = {}


class Counter(Protocol):
    """What the job needs of a Spark accumulator."""

    def add(self, term: int) -> None: ...


@dataclass(frozen=True)
class WorkItem:
    """One track to analyse: ``fields`` are :meth:`etl.fma.FmaTrack.document_fields`."""

    track_id: int
    audio_path: str
    fields: dict[str, Any] = field(default_factory=dict)
    replace: bool = False  # stored under an older feature-set version


@dataclass(frozen=True)
class PartitionConfig:
    """Everything an executor needs, shipped with each task (small and picklable)."""

    settings: Settings
    root: str
    had_error: frozenset[int] = frozenset()  # ids with an etl_errors record to clear on success
    excerpt_s: float = FMA_CLIP_S  # seconds analysed from the middle of each track; 0: all


@dataclass(frozen=True)
class Outcome:
    """What happened to one item, plus the worker's pid and peak memory (bytes)."""

    track_id: int
    status: str
    audio_path: str = ""
    error_class: str | None = None
    message: str | None = None
    pid: int = 0
    peak_rss: int = 0


def peak_rss() -> int:
    """Peak resident memory of this process in bytes (0 where unknown)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _mongo(settings: Settings) -> MongoClient[writer.Doc]:
    if settings.mongo_uri not in _MONGO:
        _MONGO[settings.mongo_uri] = new_client(settings, timeout_ms=15000)
    return _MONGO[settings.mongo_uri]


def _producer(settings: Settings) -> KafkaProducer:
    if settings.bootstrap_servers not in _PRODUCERS:
        _PRODUCERS[settings.bootstrap_servers] = new_producer(settings)
    return _PRODUCERS[settings.bootstrap_servers]


def analyse(root: Path, item: WorkItem, excerpt_s: float) -> tuple[writer.Doc, TrackEvent]:
    """Features of one file's excerpt -> its ``tracks`` document and ``tracks.new`` event (may raise).

    The document records the excerpt analysed; its ``duration_s`` stays the metadata's
    whole-track duration, or the file's when the metadata has none.
    """
    from etl.features import analyse_file  # heavy (librosa, numba): import in the worker only

    result = analyse_file(root / item.audio_path, excerpt_s)
    fields = {
        **item.fields,
        "duration_s": item.fields.get("duration_s") or result.track_s,
        "excerpt": {"offset_s": result.offset_s, "duration_s": result.duration_s},
    }
    doc = writer.track_document(fields, result.features, SOURCE)
    return doc, writer.track_event(doc)


def process_partition(config: PartitionConfig, items: Iterable[WorkItem], done: Counter) -> Iterator[Outcome]:
    """Analyse, store and announce one partition's tracks; yield an outcome per item."""
    settings, root, pid = config.settings, Path(config.root), os.getpid()
    db = _mongo(settings)[settings.mongodb_db]
    ready: list[tuple[WorkItem, writer.Doc, TrackEvent]] = []
    outcomes: list[Outcome] = []
    for item in items:
        try:
            doc, event = analyse(root, item, config.excerpt_s)
        except Exception as exc:  # any per-file problem is recorded, never fatal
            name, message = type(exc).__name__, str(exc)[:2000] or type(exc).__name__
            error = EtlErrorDoc(id=item.track_id, path=item.audio_path, error_class=name, message=message)
            writer.record_error(db[writer.ERRORS], error)
            outcomes.append(Outcome(item.track_id, FAILED, item.audio_path, error.error_class, error.message))
        else:
            ready.append((item, doc, event))
        done.add(1)
    statuses = store(config, db, ready) if ready else {}
    rss = peak_rss()
    for item, _doc, _event in ready:
        outcomes.append(Outcome(item.track_id, statuses[item.track_id], item.audio_path))
    for outcome in outcomes:
        yield replace(outcome, pid=pid, peak_rss=rss)


def store(
    config: PartitionConfig, db: Database[writer.Doc], ready: list[tuple[WorkItem, writer.Doc, TrackEvent]]
) -> dict[int, str]:
    """Write analysed tracks, publish their events, clear their marks; return status per id."""
    settings = config.settings
    ids = [item.track_id for item, _, _ in ready]
    fresh_marks = writer.outbox_add(db, ids)
    inserted = writer.insert_new(db[writer.TRACKS], [doc for item, doc, _ in ready if not item.replace])
    replaced = writer.replace_all(db[writer.TRACKS], [doc for item, doc, _ in ready if item.replace])
    written = inserted | replaced
    events = [event for item, _, event in ready if item.track_id in written]
    if events:
        writer.publish(_producer(settings), settings.topic("tracks.new"), events)
    # A duplicate whose mark already existed belongs to an earlier, interrupted attempt:
    # keep its mark so the driver replays the event; otherwise nothing is pending.
    duplicates = set(ids) - written
    writer.outbox_clear(db, written | (duplicates & fresh_marks))
    writer.forget_errors(db[writer.ERRORS], set(ids) & config.had_error)
    return {i: UPDATED if i in replaced else STORED if i in inserted else DUPLICATE for i in ids}
