"""Reading the feed: trending windows (the cluster and window end the hub orders them by), and
recommendations (pushed, and the recommender's delay measured)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.feed import Feed, window_of
from gateway.hub import Hub
from infra.settings import Settings
from schemas.topics import RECOMMENDATIONS


def test_window_of_reads_the_cluster_and_the_end_as_epoch_seconds() -> None:
    assert window_of({"cluster": 3, "window_end": "2026-01-01T00:10:00Z"}) == (3, 1767226200.0)
    naive_is_utc = window_of({"cluster": 0, "window_end": "2026-01-01T00:10:00"})
    assert naive_is_utc == (0, 1767226200.0)


@pytest.mark.parametrize(
    "data",
    [
        {"window_end": "2026-01-01T00:10:00Z"},
        {"cluster": "3", "window_end": "2026-01-01T00:10:00Z"},
        {"cluster": True, "window_end": "2026-01-01T00:10:00Z"},
        {"cluster": 3},
        {"cluster": 3, "window_end": 17},
        {"cluster": 3, "window_end": "yesterday"},
    ],
)
def test_window_of_refuses_what_is_not_a_window(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        window_of(data)


def _record(value: dict[str, Any], timestamp_ms: int | None) -> Any:
    return SimpleNamespace(value=json.dumps(value).encode(), key=b"u", timestamp=timestamp_ms, offset=0)


def test_a_live_recommendation_measures_the_recommenders_delay_and_reaches_the_listener(
    tmp_path: Path,
) -> None:
    hub = Hub(queue_size=8)
    feed = Feed(Settings(data_dir=tmp_path), hub)
    conn = hub.connect("ana")
    reco = {"user_id": "ana", "items": [], "cause_ts": "2026-01-01T00:00:00Z", "model_version": "v1"}
    produced_ms = 1767225600_000 + 250  # 0.25 s after the play
    feed._handle(feed.settings.topic(RECOMMENDATIONS), _record(reco, produced_ms), replay=False)
    delay = hub.metrics.recommend_delay
    assert (delay.n, round(delay.total, 3)) == (1, 0.25)
    assert conn.next_message() is not None
    text = hub.metrics.prometheus()
    assert "cadenza_gateway_recommendation_delay_seconds_count 1" in text


@pytest.mark.parametrize(
    ("cause", "timestamp_ms", "replay"),
    [
        (None, 1, False),
        ("soon", 1, False),
        ("2026-01-01T00:00:00Z", None, False),
        ("2026-01-01T00:00:00Z", 1, True),
    ],
)
def test_no_delay_is_counted_without_both_times_or_for_a_replayed_list(
    tmp_path: Path, cause: str | None, timestamp_ms: int | None, replay: bool
) -> None:
    hub = Hub(queue_size=8)
    feed = Feed(Settings(data_dir=tmp_path), hub)
    reco = {"user_id": "ana", "items": [], "cause_ts": cause}
    feed._handle(feed.settings.topic(RECOMMENDATIONS), _record(reco, timestamp_ms), replay=replay)
    assert hub.metrics.recommend_delay.n == 0
    assert hub.latest("ana") is not None  # the list itself is still kept
