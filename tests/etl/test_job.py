"""The Spark ETL job on a real sample catalogue, real Spark (local[2]), FerretDB and Kafka.

Every good track is stored once with 518 finite features and announced once on
``tracks.new``; broken and missing files end in ``etl_errors``; re-running changes
nothing; an interrupted run resumes to the same state.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bson.binary import Binary
from kafka import TopicPartition
from pymongo.database import Database

from etl import fma
from etl.errors import EtlError, MetadataError
from etl.features import extract_file
from etl.fma import FmaTrack
from etl.job import MISSING_AUDIO, EtlSummary, detect_subset, plan_tracks, run_etl, select
from etl.partition import WorkItem
from etl.sample_data import write_sample_catalogue
from etl.spark_run import deal, failure_message, partition_count
from etl.writer import OUTBOX
from infra.errors import UnreachableError
from infra.kafka_clients import consumer
from infra.settings import Settings
from schemas.codec import decode
from schemas.documents import TrackDoc
from schemas.events import TrackEvent
from schemas.features import FEATURE_SET_VERSION, N_FEATURES
from schemas.vectors import SUBTYPE, unpack

Db = Database[dict[str, Any]]


@dataclass(frozen=True)
class Sample:
    root: Path
    good: tuple[int, ...]
    broken: tuple[int, ...]
    missing: int

    @property
    def every(self) -> list[int]:
        return sorted((*self.good, *self.broken, self.missing))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """42 playable 6 s clips + 3 broken files; one playable track then loses its audio."""
    root = tmp_path_factory.mktemp("fma")
    written = write_sample_catalogue(root, tracks=42, genres=8, seed=11, duration_s=6.0, broken=3, workers=2)
    missing = written.track_ids[7]
    (root / fma.audio_relpath(missing, "fma_small")).unlink()
    good = tuple(t for t in written.track_ids if t != missing)
    return Sample(root, good, written.broken_ids, missing)


def tracks_by_id(db: Db) -> dict[int, dict[str, Any]]:
    return {d["_id"]: d for d in db.tracks.find({})}


def read_events(settings: Settings, timeout_s: float = 30.0) -> list[tuple[bytes, TrackEvent]]:
    """Every record on the test's tracks.new topic, from the beginning."""
    topic = settings.topic("tracks.new")
    c = consumer(settings, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(parts)
        c.seek_to_beginning(*parts)
        end = c.end_offsets(parts)
        out: list[tuple[bytes, TrackEvent]] = []
        deadline = time.monotonic() + timeout_s
        while any(c.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, "timed out reading tracks.new"
            for records in c.poll(timeout_ms=500).values():
                out += [(r.key, decode(TrackEvent, r.value)) for r in records]
        return out
    finally:
        c.close()


def assert_one_event_per_track(settings: Settings, db: Db) -> list[TrackEvent]:
    events = read_events(settings)
    ids = [e.track_id for _, e in events]
    stored = tracks_by_id(db)
    assert sorted(ids) == sorted(stored), "exactly one tracks.new event per stored track"
    for key, event in events:
        assert key == str(event.track_id).encode()
        assert event.features == unpack(stored[event.track_id]["features"]).tolist()
    return [e for _, e in events]


@pytest.mark.stack
@pytest.mark.spark
def test_run_stores_every_good_track_reports_the_rest_and_a_rerun_changes_nothing(
    spark: Any, topics: Settings, db: Db, sample: Sample
) -> None:
    calls: list[tuple[int, int]] = []
    summary = run_etl(spark, topics, sample.root, progress=lambda d, n: calls.append((d, n)))

    stored = tracks_by_id(db)
    assert sorted(stored) == sorted(sample.good)
    catalogue = {t.id: t for t in fma.load_catalogue(sample.root, "small").tracks}
    for track_id, doc in stored.items():
        assert TrackDoc.model_validate(doc).to_mongo().keys() == doc.keys()
        assert isinstance(doc["features"], Binary) and doc["features"].subtype == SUBTYPE  # packed
        assert unpack(doc["features"]).shape == (N_FEATURES,)
        assert (doc["source"], doc["feature_set_version"]) == ("extracted", FEATURE_SET_VERSION)
        meta = catalogue[track_id]
        assert (doc["title"], doc["artist"], doc["genre_top"]) == (meta.title, meta.artist, meta.genre_top)
        assert doc["audio_path"] == meta.audio_path and doc["cluster"] is None
        # 6 s clips, shorter than the default 30 s excerpt: analysed whole, and recorded so
        assert doc["excerpt"]["offset_s"] == 0.0 and abs(doc["excerpt"]["duration_s"] - 6.0) < 0.05
    first = sample.good[0]
    expected = extract_file(sample.root / stored[first]["audio_path"])
    # Same extractor; BLAS threads (1 in executors, several here) only change rounding.
    np.testing.assert_allclose(unpack(stored[first]["features"]), expected, rtol=1e-5)

    errors = {d["_id"]: d for d in db.etl_errors.find({})}
    assert sorted(errors) == sorted((*sample.broken, sample.missing))
    for track_id in sample.broken:
        assert errors[track_id]["error_class"] in {"AudioDecodeError", "FeatureError"}
        assert errors[track_id]["message"] and errors[track_id]["path"].endswith(".mp3")
    assert errors[sample.missing]["error_class"] == MISSING_AUDIO
    assert errors[sample.missing]["path"] == fma.audio_relpath(sample.missing, "fma_small")

    assert (summary.selected, summary.stored, summary.failed, summary.missing) == (45, 41, 3, 1)
    assert (summary.skipped, summary.updated, summary.published, summary.analysed) == (0, 0, 41, 44)
    assert [f.track_id for f in summary.failures] == sorted(sample.broken)
    assert summary.workers >= 1 and 0 < summary.peak_worker_rss < 2**30 and summary.clips_per_s > 0
    assert calls[-1] == (44, 44) and all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    assert_one_event_per_track(topics, db)

    errors_before = list(db.etl_errors.find({}).sort("_id"))
    again = run_etl(spark, topics, sample.root)
    assert (again.stored, again.skipped, again.failed, again.missing, again.published) == (0, 41, 3, 1, 0)
    assert tracks_by_id(db) == stored
    assert list(db.etl_errors.find({}).sort("_id")) == errors_before
    assert len(read_events(topics)) == 41
    assert db[OUTBOX].count_documents({}) == 0


class InterruptError(Exception):
    pass


@pytest.mark.stack
@pytest.mark.spark
def test_an_interrupted_run_resumes_to_the_same_state(
    spark: Any, topics: Settings, db: Db, sample: Sample
) -> None:
    def stop_after_first_partition(done: int, total: int) -> None:
        if done > 0:
            raise InterruptError

    with pytest.raises(InterruptError):
        run_etl(spark, topics, sample.root, progress=stop_after_first_partition, partitions=8)
    partial = tracks_by_id(db)
    assert 0 < len(partial) < len(sample.good)

    summary = run_etl(spark, topics, sample.root)
    stored = tracks_by_id(db)
    assert sorted(stored) == sorted(sample.good)
    assert summary.skipped == len(partial) and summary.stored == len(sample.good) - len(partial)
    assert all(stored[i] == doc for i, doc in partial.items())  # untouched by the resumed run
    assert_one_event_per_track(topics, db)
    assert db[OUTBOX].count_documents({}) == 0


@pytest.mark.stack
@pytest.mark.spark
def test_limit_takes_the_first_tracks_and_the_rest_follow(
    spark: Any, topics: Settings, db: Db, sample: Sample
) -> None:
    first = run_etl(spark, topics, sample.root, subset="small", limit=10)
    head = sample.every[:10]
    assert first.selected == 10
    assert sorted(tracks_by_id(db)) == [t for t in head if t in sample.good]
    run_etl(spark, topics, sample.root, subset="small")
    assert sorted(tracks_by_id(db)) == sorted(sample.good)
    assert_one_event_per_track(topics, db)


@pytest.mark.stack
@pytest.mark.spark
def test_older_feature_sets_are_replaced_and_pending_events_replayed(
    spark: Any, topics: Settings, db: Db, sample: Sample
) -> None:
    stale, kept, lost = sample.good[:3]
    old = TrackDoc(id=stale, title="old", features=[0.0] * N_FEATURES, feature_set_version="old", cluster=3)
    imported = TrackDoc(id=kept, title="imported", features=[1.0] * N_FEATURES, source="fma-features")
    db.tracks.insert_many([old.to_mongo(), imported.to_mongo()])
    # A run that died after storing `kept` but before announcing it, and one that died
    # after marking `lost` but before storing it.
    db[OUTBOX].insert_many([{"_id": kept}, {"_id": lost}])

    limit = sample.every.index(lost) + 1
    summary = run_etl(spark, topics, sample.root, limit=limit)
    stored = tracks_by_id(db)
    assert stored[stale]["feature_set_version"] == FEATURE_SET_VERSION and stored[stale]["cluster"] is None
    assert stored[stale]["source"] == "extracted" and stored[stale]["title"] != "old"
    assert stored[kept]["title"] == "imported"  # same feature set: not re-analysed
    assert lost in stored and summary.updated == 1 and summary.skipped == 1
    events = assert_one_event_per_track(topics, db)
    assert {e.track_id for e in events} >= {stale, kept, lost}
    assert db[OUTBOX].count_documents({}) == 0


@pytest.mark.stack
@pytest.mark.spark
def test_missing_directory_or_metadata_is_an_actionable_error(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(EtlError, match="CADENZA_FMA_DIR"):
        run_etl(spark, settings)
    with pytest.raises(MetadataError, match="does not exist"):
        run_etl(spark, settings, tmp_path / "nope")
    with pytest.raises(MetadataError, match=r"fma_metadata/tracks\.csv"):
        run_etl(spark, settings, tmp_path)


@pytest.mark.stack
@pytest.mark.spark
def test_an_unreachable_database_is_reported_before_any_work(
    spark: Any, settings: Settings, sample: Sample
) -> None:
    nowhere = settings.model_copy(update={"mongodb_uri": "mongodb://127.0.0.1:9/"})
    with pytest.raises(UnreachableError, match="cadenza stack up"):
        run_etl(spark, nowhere, sample.root)


@pytest.mark.stack
@pytest.mark.spark
def test_unknown_subset_is_refused(spark: Any, settings: Settings, sample: Sample) -> None:
    with pytest.raises(EtlError, match="choose one of small, medium, large, full"):
        run_etl(spark, settings, sample.root, subset="tiny")


# --- pure planning ---------------------------------------------------------------------


def test_plan_splits_new_stale_skipped_and_missing() -> None:
    tracks = [
        FmaTrack(2, audio_path="a"),
        FmaTrack(3, audio_path="b"),
        FmaTrack(5, audio_path=None),
        FmaTrack(7, audio_path=None),
        FmaTrack(11, audio_path="c"),
    ]
    plan = plan_tracks(tracks, {3: "old", 7: "v1", 11: "v1"}, "v1")
    assert [t.id for t in plan.new] == [2]
    assert [t.id for t in plan.stale] == [3]
    assert plan.skipped == [7, 11]  # stored: its audio is not needed
    assert [t.id for t in plan.missing] == [5]


def test_select_is_by_id_and_stable() -> None:
    tracks = [FmaTrack(i) for i in (9, 2, 5)]
    assert [t.id for t in select(tracks, None)] == [2, 5, 9]
    assert [t.id for t in select(tracks, 2)] == [2, 5]


@pytest.mark.parametrize(
    ("n", "cores", "expected"), [(0, 2, 0), (1, 2, 1), (44, 2, 2), (8000, 2, 334), (1000, 64, 63)]
)
def test_partition_count(n: int, cores: int, expected: int) -> None:
    assert partition_count(n, cores) == expected


def test_deal_balances_audio_duration_across_partitions() -> None:
    seconds = [600.0, 30.0, 30.0, 30.0, 300.0, 30.0, 0.0, 240.0]  # 0: unknown, counted as 30 s
    items = [WorkItem(i + 2, f"{i}.mp3", {"duration_s": s}) for i, s in enumerate(seconds)]
    chunks = deal(items, 2)
    totals = sorted(sum(max(30.0, it.fields["duration_s"]) for it in chunk) for chunk in chunks)
    assert totals == [630.0, 660.0]
    assert sorted(it.track_id for chunk in chunks for it in chunk) == [it.track_id for it in items]
    assert all([it.track_id for it in chunk] == sorted(it.track_id for it in chunk) for chunk in chunks)
    assert len(deal(items[:1], 4)) == 1 and deal(items, 0) == []
    # with FMA's 30 s excerpt every track costs 30 s: four each
    assert sorted(len(chunk) for chunk in deal(items, 2, excerpt_s=30.0)) == [4, 4]


def test_detect_subset_picks_the_largest_audio_folder(tmp_path: Path) -> None:
    assert detect_subset(tmp_path) == "small"
    (tmp_path / "fma_small").mkdir()
    (tmp_path / "fma_large").mkdir()
    assert detect_subset(tmp_path) == "large"


def test_failure_message_finds_the_python_error() -> None:
    text = (
        "An error occurred while calling o1.collect.\n"
        "org.apache.spark.SparkException: Job aborted\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "etl.writer.StorageError: MongoDB refused 1 document(s) of tracks: disk full\n"
        "\tat org.apache.spark.api.python.BasePythonRunner\n"
    )
    assert (
        failure_message(RuntimeError(text))
        == "StorageError: MongoDB refused 1 document(s) of tracks: disk full"
    )
    assert failure_message(RuntimeError("boom")) == "RuntimeError: boom"


def test_summary_rows_read_well() -> None:
    summary = EtlSummary(
        fma_dir=Path("/fma"),
        subset="small",
        selected=10,
        stored=7,
        updated=0,
        skipped=1,
        failed=1,
        missing=1,
        published=7,
        analysed=8,
        partitions=2,
        workers=2,
        peak_worker_rss=300 * 2**20,
        extract_s=4.0,
        elapsed_s=5.0,
    )
    rows = dict(summary.table_rows())
    assert summary.clips_per_s == 2.0 and rows["clips/s"] == "2.00"
    assert rows["audio analysed"] == "30 s from the middle of each track (shorter tracks whole)"
    assert dict(replace(summary, excerpt_s=0.0).table_rows())["audio analysed"] == "whole tracks"
    assert rows["python workers, peak memory"] == "2, 300 MiB"
