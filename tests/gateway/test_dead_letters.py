"""The ops page's view of cadenza.dlq: counts per topic and stage, bounded labels, and hostile
records on the dead-letter topic itself skipped (gateway.dead_letters)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from gateway.dead_letters import MAX_STAGES, DeadLetterLog
from gateway.feed import Feed
from gateway.hub import Hub
from infra.prometheus import samples
from infra.settings import Settings
from schemas.codec import dead_letter, encode
from schemas.topics import DLQ


def letter(topic: str, stage: str) -> bytes:
    return encode(dead_letter(topic=topic, value=b"{", error="not JSON", stage=stage, partition=0, offset=1))


def test_letters_are_counted_by_topic_and_stage_and_the_newest_kept() -> None:
    log = DeadLetterLog("cadenza.")
    for _ in range(3):
        assert log.observe(letter("cadenza.plays", "recommender_stream"))
    assert log.observe(letter("cadenza.plays", "streaming_jobs.plays"))
    assert log.observe(letter("elsewhere.topic", "x"))
    assert log.observe(letter("cadenza.plays", "s"), count=False)  # replayed at start-up
    assert log.counts == {
        ("plays", "recommender_stream"): 3,
        ("plays", "streaming_jobs.plays"): 1,
        ("other", "x"): 1,
    }
    assert log.recent[0]["stage"] == "s" and len(log.recent) == 6
    metrics = samples(log)
    assert metrics['cadenza_dead_letters_total{stage="recommender_stream",topic="plays"}'] == 3
    assert metrics['cadenza_dead_letters_total{stage="x",topic="other"}'] == 1
    assert metrics["cadenza_gateway_dlq_unreadable_total"] == 0


def test_hostile_records_on_the_dead_letter_topic_are_skipped_and_labels_stay_bounded() -> None:
    log = DeadLetterLog("cadenza.")
    for value in (None, b"", b"[" * 100_000, b"\xff", b"1" * 5000, b'{"topic": 1}'):
        assert not log.observe(value)
    assert log.unreadable == 6 and not log.counts
    for i in range(MAX_STAGES * 3):
        log.observe(letter("cadenza.plays", f"stage-{i}" + "z" * 500))
    stages = {s for _, s in log.counts}
    assert len(stages) == MAX_STAGES + 1 and "other" in stages
    assert max(len(s) for s in stages) <= 60


def test_the_feed_counts_dead_letters_and_reports_its_newest_messages_age(tmp_path: Path) -> None:
    feed = Feed(Settings(data_dir=tmp_path), Hub(queue_size=4))
    assert samples(feed)["cadenza_gateway_feed_last_message_age_seconds"] == -1
    record = SimpleNamespace(
        value=letter("cadenza.plays", "recommender_stream"), key=None, timestamp=0, offset=0
    )
    feed._handle(feed.settings.topic(DLQ), record, replay=False)
    feed._handle(
        feed.settings.topic(DLQ),
        SimpleNamespace(value=b"[" * 50_000, key=None, timestamp=0, offset=1),
        replay=False,
    )
    metrics = samples(feed)
    assert metrics['cadenza_dead_letters_total{stage="recommender_stream",topic="plays"}'] == 1
    assert metrics["cadenza_gateway_dlq_unreadable_total"] == 1
    assert 0 <= metrics["cadenza_gateway_feed_last_message_age_seconds"] < 5
