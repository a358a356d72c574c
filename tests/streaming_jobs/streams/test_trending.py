"""The trending sink's windows reach Kafka before its micro-batch completes: a failed send is
sent again (regression: sends were not checked, so a window whose send failed was lost
while the batch, and its offsets, completed). It stores every window a batch changed and
publishes each cluster's newest only (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

from infra.settings import Settings
from schemas.codec import decode
from schemas.events import Trending
from streaming_jobs.errors import StreamError
from streaming_jobs.streams import trending
from streaming_jobs.streams.shared.kafka_io import deliver
from streaming_jobs.streams.shared.status import Counters
from streaming_jobs.streams.trending import TrendingSink


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float) -> Any:
        if self.error is not None:
            raise self.error
        return "metadata"


class Producer:
    """kafka-python's send/get as seen by the sink; the n-th sends listed in ``failing`` fail."""

    def __init__(self, failing: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.failing = set(failing)
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def send(self, topic: str, key: bytes | None, value: bytes) -> Future:
        self.sent.append((topic, key, value))
        error = NotLeaderForPartitionError() if len(self.sent) in self.failing else None
        return Future(error)


class Batch:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def collect(self) -> list[Any]:
        return self.rows


def window(cluster: int, minutes_later: int = 0, plays: int = 3) -> Any:
    top = json.dumps([[100 + cluster, plays]])
    start = 1767225600000 + minutes_later * 60_000
    return SimpleNamespace(cluster=cluster, start_ms=start, end_ms=start + 600_000, plays=plays, top=top)


def test_a_window_whose_send_failed_is_sent_again_before_the_batch_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored: list[list[dict[str, Any]]] = []
    monkeypatch.setattr(trending, "process_db", lambda settings: None)
    monkeypatch.setattr(trending, "replace_all", lambda db, name, docs: stored.append(docs))
    monkeypatch.setattr("streaming_jobs.streams.shared.kafka_io.time.sleep", lambda s: None)
    counters = Counters()
    sink = TrendingSink(Settings(data_dir=tmp_path), counters)
    producer = Producer(failing={2})
    sink._kafka = producer
    sink(Batch([window(0), window(1), window(2)]), 7)
    clusters = [decode(Trending, value).cluster for _, _, value in producer.sent]
    assert clusters == [0, 1, 2, 1]  # cluster 1's window failed once and was sent again
    assert len(stored) == 1 and len(stored[0]) == 3


def test_deliver_gives_up_with_a_clear_error_so_the_batch_runs_again() -> None:
    class Down(Producer):
        def send(self, topic: str, key: bytes | None, value: bytes) -> Future:
            self.sent.append((topic, key, value))
            return Future(KafkaTimeoutError("no broker"))

    waits: list[float] = []
    producer = Down()
    with pytest.raises(StreamError, match="not delivered"):
        deliver(producer, "t", [(b"k", b"v")], first_s=1, max_s=4, give_up_s=10, sleep=waits.append)
    assert waits == [1, 2, 4]
    assert len(producer.sent) == 4


def test_deliver_returns_how_many_were_sent_again() -> None:
    producer = Producer(failing={1, 3})
    assert deliver(producer, "t", [(b"a", b"1"), (b"b", b"2")], sleep=lambda s: None) == 2
    assert [v for _, _, v in producer.sent] == [b"1", b"2", b"1", b"1"]


def test_every_changed_window_is_stored_and_each_clusters_newest_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored: list[list[dict[str, Any]]] = []
    monkeypatch.setattr(trending, "process_db", lambda settings: None)
    monkeypatch.setattr(trending, "replace_all", lambda db, name, docs: stored.append(docs))
    counters = Counters()
    sink = TrendingSink(Settings(data_dir=tmp_path), counters)
    producer = Producer()
    sink._kafka = producer
    # A batch with plays of cluster 3 in two minutes (its ten windows each, overlapping: 11
    # windows) and of cluster 1 in one (10), as trending_state emits them (any order).
    rows = [window(3, m, plays=2 if m < 0 else 1) for m in range(-9, 1)] + [window(3, 1, plays=1)]
    rows += [window(1, m) for m in range(-9, 1)]
    sink(Batch(rows[::-1]), 3)
    assert len(stored) == 1 and len(stored[0]) == 21
    published = [decode(Trending, value) for _, _, value in producer.sent]
    assert [(m.cluster, m.window_start.timestamp() * 1000, m.plays) for m in published] == [
        (1, 1767225600000, 3),
        (3, 1767225660000, 1),
    ]
    assert [key for _, key, _ in producer.sent] == [b"1", b"3"]
    assert counters.snapshot()["plays-trending"] == {"windows_written": 21, "windows_published": 2}
