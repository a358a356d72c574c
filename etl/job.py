"""The ETL batch job: an FMA directory -> MongoDB ``tracks`` + ``tracks.new`` events, on Spark.

Source: an FMA root (``fma_metadata/tracks.csv`` and audio, as downloaded or as
``cadenza sample-data`` writes it), read by :mod:`etl.fma`. Destinations: MongoDB
``tracks`` (a :class:`~schemas.documents.TrackDoc` per analysed track, ``source`` =
``"extracted"``), ``etl_errors`` (files that could not be analysed, tracks whose audio
is missing) and ``tracks.new`` (a ``TrackEvent`` per stored track), all written by the
executors (:mod:`etl.partition`) except the missing-audio records.

The driver plans the run (tracks already stored with this feature-set version are
skipped, so an interrupted run resumes; tracks stored under an older version are
re-analysed and replaced), spreads the rest over Spark's Python workers in small
partitions (:mod:`etl.spark_run`), reports progress from a Spark accumulator, and returns an
:class:`EtlSummary`. Interrupting it (Ctrl-C, or a progress callback that raises)
cancels the Spark job; what was stored stays stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from etl import writer
from etl.audio import FMA_CLIP_S
from etl.errors import EtlError, MetadataError
from etl.fma import (
    AUDIO_DIRS,
    SUBSETS,
    FmaTrack,
    audio_relpath,
    candidate_dirs,
    load_catalogue,
    metadata_path,
)
from etl.partition import FAILED, STORED, UPDATED, Outcome, PartitionConfig, WorkItem
from etl.spark_run import Progress, run_partitions
from infra.kafka_clients import ensure_topics, producer
from infra.mongo import client, database, init_db, ping
from infra.settings import Settings
from schemas.documents import EtlErrorDoc
from schemas.features import FEATURE_SET_VERSION
from schemas.topics import TRACKS_NEW

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MISSING_AUDIO: Final = "MissingAudio"


@dataclass(frozen=True)
class Plan:
    """What one run does with each selected track."""

    new: list[FmaTrack]
    stale: list[FmaTrack]  # stored under another feature-set version
    skipped: list[int]  # stored with this version
    missing: list[FmaTrack]  # no audio file


@dataclass(frozen=True)
class EtlSummary:
    """What a run did; ``failures`` are the per-file errors, also stored in ``etl_errors``."""

    fma_dir: Path
    subset: str
    selected: int
    stored: int
    updated: int
    skipped: int
    failed: int
    missing: int
    published: int
    analysed: int
    partitions: int
    workers: int
    peak_worker_rss: int
    extract_s: float
    elapsed_s: float
    failures: tuple[Outcome, ...] = ()
    missing_ids: tuple[int, ...] = ()
    excerpt_s: float = FMA_CLIP_S

    @property
    def clips_per_s(self) -> float:
        return self.analysed / self.extract_s if self.extract_s > 0 else 0.0

    def table_rows(self) -> list[tuple[str, str]]:
        """(label, value) lines of the end-of-run table."""
        rss = f"{self.peak_worker_rss / 2**20:.0f} MiB" if self.peak_worker_rss else "-"
        return [
            ("tracks selected", f"{self.selected} ({self.subset}, {self.fma_dir})"),
            ("stored (new)", str(self.stored)),
            ("updated (older feature set)", str(self.updated)),
            ("skipped (already stored)", str(self.skipped)),
            ("failed (see etl_errors)", str(self.failed)),
            ("missing audio (see etl_errors)", str(self.missing)),
            ("events published", str(self.published)),
            ("clips analysed", f"{self.analysed} in {self.partitions} partitions"),
            ("audio analysed", excerpt_text(self.excerpt_s)),
            ("clips/s", f"{self.clips_per_s:.2f}"),
            ("python workers, peak memory", f"{self.workers}, {rss}"),
            ("elapsed", f"{self.elapsed_s:.1f} s"),
        ]


def excerpt_text(excerpt_s: float) -> str:
    """What ``excerpt_s`` means, for the end-of-run table."""
    if excerpt_s <= 0:
        return "whole tracks"
    return f"{excerpt_s:g} s from the middle of each track (shorter tracks whole)"


# --- planning (pure) -------------------------------------------------------------------


def detect_subset(root: Path) -> str:
    """The largest FMA subset whose audio folder exists under ``root`` (``small`` if none)."""
    for name, folder in zip(reversed(SUBSETS), reversed(AUDIO_DIRS), strict=True):
        if (root / folder).is_dir():
            return name
    return "small"


def select(tracks: Iterable[FmaTrack], limit: int | None) -> list[FmaTrack]:
    """Tracks in id order, the first ``limit`` of them if given (the same ones on every run)."""
    ordered = sorted(tracks, key=lambda t: t.id)
    return ordered if limit is None else ordered[: max(0, limit)]


def plan_tracks(tracks: Sequence[FmaTrack], stored: Mapping[int, str], version: str) -> Plan:
    """Split tracks into new, stale, skipped (stored with ``version``) and missing audio."""
    plan = Plan([], [], [], [])
    for track in tracks:
        if stored.get(track.id) == version:
            plan.skipped.append(track.id)
        elif track.audio_path is None:
            plan.missing.append(track)
        elif track.id in stored:
            plan.stale.append(track)
        else:
            plan.new.append(track)
    return plan


def missing_error(root: Path, track: FmaTrack) -> EtlErrorDoc:
    folders = candidate_dirs(track.subset)
    return EtlErrorDoc(
        id=track.id,
        path=audio_relpath(track.id, folders[0]),
        error_class=MISSING_AUDIO,
        message=f"no audio file for track {track.id} in {', '.join(folders)} under {root}; "
        "download that FMA audio subset or choose another with --subset",
    )


# --- the run ---------------------------------------------------------------------------


def resolve_root(settings: Settings, fma_dir: Path | str | None) -> Path:
    """The FMA root to read (``--fma-dir``, else ``CADENZA_FMA_DIR``), checked for metadata."""
    chosen = Path(fma_dir) if fma_dir is not None else settings.fma_dir
    if chosen is None:
        raise EtlError(
            "no FMA directory: pass --fma-dir or set CADENZA_FMA_DIR "
            "(or create one with `cadenza sample-data DIR`)"
        )
    root = chosen.expanduser()
    if not root.is_dir():
        raise MetadataError(
            f"FMA directory {root} does not exist; pass --fma-dir or set CADENZA_FMA_DIR "
            "(or create one with `cadenza sample-data DIR`)"
        )
    if not metadata_path(root, "tracks.csv").is_file():
        raise MetadataError(
            f"{root} has no fma_metadata/tracks.csv; point --fma-dir at the folder holding "
            "fma_metadata/ (FMA's fma_metadata.zip) or create one with `cadenza sample-data DIR`"
        )
    return root


def run_etl(
    spark: SparkSession,
    settings: Settings,
    fma_dir: Path | str | None = None,
    *,
    subset: str | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    partitions: int | None = None,
    excerpt_s: float | None = None,
) -> EtlSummary:
    """Analyse the FMA directory's tracks that are not stored yet; see the module docstring.

    ``subset`` defaults to the largest one whose audio folder exists; ``limit`` keeps
    the first N tracks by id; ``partitions`` overrides the Spark partition count (default:
    one per core, more for big runs); ``excerpt_s`` is how many seconds from the middle
    of each track are analysed (default ``settings.etl_excerpt_s``, FMA's 30 s clip; 0:
    whole tracks). ``progress(done, total)`` is called about 4 times a second while the
    Spark job runs; if it raises, the job is cancelled and the exception propagates (so
    does Ctrl-C).
    """
    started = time.perf_counter()
    excerpt = settings.etl_excerpt_s if excerpt_s is None else excerpt_s
    if not excerpt >= 0:
        raise EtlError(f"excerpt must be 0 (whole tracks) or a number of seconds, got {excerpt_s}")
    root = resolve_root(settings, fma_dir)
    chosen = subset or detect_subset(root)
    if chosen not in SUBSETS:
        raise EtlError(f"unknown subset {chosen!r}; choose one of {', '.join(SUBSETS)}")
    tracks = select(load_catalogue(root, chosen).tracks, limit)
    topic = settings.topic(TRACKS_NEW)
    mongo = client(settings)
    try:
        ping(settings, mongo)
        db = database(settings, mongo)
        init_db(db)
        ensure_topics(settings, [TRACKS_NEW])
        kafka = producer(settings)
        try:
            published = writer.replay_outbox(db, kafka, topic)
            stored = writer.stored_versions(db[writer.TRACKS], [t.id for t in tracks])
            known_errors = writer.error_classes(db[writer.ERRORS])
            plan = plan_tracks(tracks, stored, FEATURE_SET_VERSION)
            missing = [missing_error(root, t) for t in plan.missing]
            writer.record_errors(db[writer.ERRORS], missing, known_errors)
            stale = {t.id for t in plan.stale}
            items = [
                WorkItem(t.id, str(t.audio_path), t.document_fields(), replace=t.id in stale)
                for t in sorted(plan.new + plan.stale, key=lambda t: t.id)
            ]
            had_error = frozenset(i.track_id for i in items if i.track_id in known_errors)
            config = PartitionConfig(settings, str(root.resolve()), had_error, excerpt)
            if items:
                # Compiled here, once, before the workers load them (see features.warm_up).
                from etl.features import warm_up

                warm_up()
            outcomes, used, extract_s = run_partitions(spark, config, items, progress, partitions)
            published += writer.replay_outbox(db, kafka, topic)
        finally:
            kafka.close(timeout=10)
    finally:
        mongo.close()
    return summarise(
        root=root,
        subset=chosen,
        selected=len(tracks),
        plan=plan,
        outcomes=outcomes,
        partitions=used,
        replayed=published,
        extract_s=extract_s,
        started=started,
        excerpt_s=excerpt,
    )


def summarise(
    *,
    root: Path,
    subset: str,
    selected: int,
    plan: Plan,
    outcomes: Sequence[Outcome],
    partitions: int,
    replayed: int,
    extract_s: float,
    started: float,
    excerpt_s: float = FMA_CLIP_S,
) -> EtlSummary:
    status = [o.status for o in outcomes]
    rss: dict[int, int] = {}
    for o in outcomes:
        rss[o.pid] = max(rss.get(o.pid, 0), o.peak_rss)
    stored, updated, failed = status.count(STORED), status.count(UPDATED), status.count(FAILED)
    return EtlSummary(
        fma_dir=root,
        subset=subset,
        selected=selected,
        stored=stored,
        updated=updated,
        skipped=len(plan.skipped) + len(outcomes) - stored - updated - failed,
        failed=failed,
        missing=len(plan.missing),
        published=replayed + stored + updated,
        analysed=len(outcomes),
        partitions=partitions,
        workers=len(rss),
        peak_worker_rss=max(rss.values(), default=0),
        extract_s=extract_s,
        elapsed_s=time.perf_counter() - started,
        failures=tuple(sorted((o for o in outcomes if o.status == FAILED), key=lambda o: o.track_id)),
        missing_ids=tuple(t.id for t in plan.missing),
        excerpt_s=excerpt_s,
    )
