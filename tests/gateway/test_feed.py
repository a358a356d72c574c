"""Reading the feed: trending windows (the cluster and window end the hub orders them by),
recommendations (pushed, and the recommender's delay measured), and the catalogue's new tracks
and clusters (to the in-memory catalogue; bad records dead-lettered)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.feed import Feed, envelope
from gateway.hub import Hub
from gateway.library import Library
from gateway.track_index import TrackIndex
from infra.prometheus import samples
from infra.settings import Settings
from schemas.codec import dead_letter_for
from schemas.errors import SchemaError
from schemas.events import Trending
from schemas.features import N_FEATURES
from schemas.topics import RECOMMENDATIONS, TRACKS_ASSIGNED, TRACKS_NEW, TRENDING


def _record(value: dict[str, Any] | bytes | None, timestamp_ms: int | None = None) -> Any:
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return SimpleNamespace(value=raw, key=b"u", timestamp=timestamp_ms, offset=0)


WINDOW = {
    "cluster": 3,
    "window_start": "2026-01-01T00:00:00Z",
    "window_end": "2026-01-01T00:10:00+00:00",
    "plays": 4,
    "top_tracks": [{"track_id": 7, "plays": 4}],
}


def test_a_trending_window_is_decoded_with_its_cluster_and_end() -> None:
    message, text = envelope("trending", json.dumps(WINDOW).encode())
    assert isinstance(message, Trending)
    assert (message.cluster, message.window_end.timestamp()) == (3, 1767226200.0)
    assert json.loads(text) == {"type": "trending", "data": WINDOW}


def test_a_field_this_gateway_does_not_know_is_kept_for_the_browser() -> None:
    """The topic-evolution rule: producers may add fields; consumers ignore them."""
    message, text = envelope("trending", json.dumps({**WINDOW, "added_later": [1, 2]}).encode())
    assert isinstance(message, Trending)
    assert json.loads(text)["data"]["added_later"] == [1, 2]


HOSTILE: list[bytes | None] = [
    b"[" * 50_000,  # RecursionError in json.loads: killed the feed for every listener
    b"{" * 100_000,
    None,
    b"",
    b"\xff\xfe\x00",
    b"1" * 5000,
    b'{"cluster": 1e999}',
    b"x" * (2 << 20),
    json.dumps({**WINDOW, "window_end": "yesterday"}).encode(),
    json.dumps({**WINDOW, "cluster": [3]}).encode(),
    json.dumps({**WINDOW, "window_end": "2026-01-01T00:10:00"}).encode(),  # no zone
    json.dumps({"user_id": "ana", "items": [], "cause_ts": "soon"}).encode(),
    json.dumps({"user_id": "", "items": []}).encode(),
    json.dumps([1, 2]).encode(),
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("topic", [RECOMMENDATIONS, TRENDING])
@pytest.mark.parametrize("replay", [False, True])
def test_any_bad_record_is_one_dead_letter_and_the_feed_goes_on(
    tmp_path: Path, value: bytes | None, topic: Any, replay: bool
) -> None:
    hub = Hub(queue_size=8)
    letters: list[tuple[Any, BaseException]] = []
    feed = Feed(Settings(data_dir=tmp_path), hub, lambda record, error: letters.append((record, error)))
    conn = hub.connect("ana")
    feed._handle(feed.settings.topic(topic), _record(value), replay=replay)
    assert len(letters) == 1 and letters[0][0].value == value
    assert isinstance(letters[0][1], SchemaError)  # its class reaches the letter's error_class
    record = SimpleNamespace(**vars(_record(value)), topic=feed.settings.topic(topic), partition=0)
    letter = dead_letter_for(record, letters[0][1], "gateway")
    assert (letter.error_class, letter.stage) == ("SchemaError", "gateway")
    assert hub.metrics.errors["feed_bad_message"] == 1
    good = {"user_id": "ana", "items": [], "model_version": "v1"}
    feed._handle(feed.settings.topic(RECOMMENDATIONS), _record(good), replay=False)
    assert conn.next_message() is not None
    assert len(letters) == 1


def test_with_envelope_a_malformed_message_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        envelope("recommendations", b"[" * 50_000)


def test_a_live_recommendation_measures_the_recommenders_delay_and_reaches_the_listener(
    tmp_path: Path,
) -> None:
    hub = Hub(queue_size=8)
    feed = Feed(Settings(data_dir=tmp_path), hub)
    conn = hub.connect("ana")
    reco = {"user_id": "ana", "items": [], "cause_ts": "2026-01-01T00:00:00Z", "model_version": "v1"}
    produced_ms = 1767225600_000 + 250  # 0.25 s after the play
    feed._handle(feed.settings.topic(RECOMMENDATIONS), _record(reco, produced_ms), replay=False)
    metrics = samples(hub.metrics)
    assert metrics["cadenza_gateway_recommendation_delay_seconds_count"] == 1
    assert round(metrics["cadenza_gateway_recommendation_delay_seconds_sum"], 3) == 0.25
    assert metrics['cadenza_gateway_recommendation_delay_seconds_bucket{le="0.25"}'] == 1
    assert metrics['cadenza_gateway_recommendation_delay_seconds_bucket{le="0.1"}'] == 0
    assert conn.next_message() is not None


@pytest.mark.parametrize(
    ("cause", "timestamp_ms", "replay"),
    [
        (None, 1, False),
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
    assert samples(hub.metrics)["cadenza_gateway_recommendation_delay_seconds_count"] == 0
    assert hub.latest("ana") is not None  # the list itself is still kept


@pytest.mark.stack
def test_after_hostile_records_a_started_feed_is_ready_and_pushes(topics: Settings) -> None:
    """Regression: 50,000 ``[`` on the topics raised RecursionError in the feed's replay, so
    the feed task died and a restarted gateway stayed "not ready" forever. Here the bad
    records are already there when the feed starts (the restart case), and more arrive
    while it runs; each is dead-lettered and a valid list still reaches the listener."""
    from infra.kafka_clients import producer

    settings = topics
    sent = [v for v in HOSTILE if v is None or len(v) < 1_000_000]  # the broker's record limit
    with producer(settings) as p:
        for value in sent:
            p.send(settings.topic(RECOMMENDATIONS), key=b"ana", value=value)
            p.send(settings.topic(TRENDING), key=b"3", value=value)
        p.flush()

    async def scenario() -> tuple[int, str | None, bool]:
        hub = Hub(queue_size=8)
        letters: list[str] = []
        feed = Feed(settings, hub, lambda record, reason: letters.append(reason))
        conn = hub.connect("ana")
        task = asyncio.create_task(feed.run())
        try:
            await asyncio.wait_for(feed.ready.wait(), 30)
            with producer(settings) as p:
                p.send(settings.topic(RECOMMENDATIONS), key=b"ana", value=b"[" * 50_000)
                good = {"user_id": "ana", "items": [], "model_version": "live"}
                p.send(settings.topic(RECOMMENDATIONS), key=b"ana", value=json.dumps(good).encode())
                p.flush()
            deadline = asyncio.get_running_loop().time() + 30
            item = None
            while item is None and asyncio.get_running_loop().time() < deadline:
                item = conn.next_message()
                await asyncio.sleep(0.05)
            return len(letters), item[0] if item else None, task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    letters, text, died = asyncio.run(scenario())
    assert not died
    assert text is not None and json.loads(text)["data"]["model_version"] == "live"
    assert letters == 2 * len(sent) + 1


# --- the catalogue's topics -------------------------------------------------------------------


def catalogue_feed(tmp_path: Path) -> tuple[Feed, Library, list[tuple[Any, BaseException]]]:
    """A feed that reads the track topics into a library whose index is loaded (no model)."""
    settings = Settings(data_dir=tmp_path)
    library = Library(settings)
    library.index = TrackIndex(None)
    letters: list[tuple[Any, BaseException]] = []
    feed = Feed(settings, Hub(queue_size=8), lambda record, error: letters.append((record, error)), library)
    return feed, library, letters


NEW_TRACK = {
    "track_id": 42,
    "title": "Hyperballad",
    "artist": "Björk",
    "genre_top": "Pop",
    "features": [0.5] * N_FEATURES,
}


def test_tracks_new_and_tracks_assigned_reach_the_catalogue(tmp_path: Path) -> None:
    feed, library, letters = catalogue_feed(tmp_path)
    feed._handle(feed.settings.topic(TRACKS_NEW), _record(NEW_TRACK), replay=False)
    assigned = {"track_id": 42, "cluster": 3, "model_version": "v1", "ts": "2026-01-01T00:00:00Z"}
    feed._handle(feed.settings.topic(TRACKS_ASSIGNED), _record(assigned), replay=True)
    assert library.index is not None
    found = library.index.search("bjork hyper", None, None, page=1, per_page=5)["items"]
    assert [(t["track_id"], t["cluster"]) for t in found] == [(42, 3)]
    assert library.index.genres()["items"] == [{"genre": "Pop", "tracks": 1}]
    assert (
        feed.hub.metrics.feed_messages["tracks.new"] == 1
        and feed.hub.metrics.feed_messages["tracks.assigned"] == 1
    )
    assert not letters


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("topic", [TRACKS_NEW, TRACKS_ASSIGNED])
def test_a_bad_track_record_is_one_dead_letter_and_the_catalogue_goes_on(
    tmp_path: Path, value: bytes | None, topic: Any
) -> None:
    feed, library, letters = catalogue_feed(tmp_path)
    feed._handle(feed.settings.topic(topic), _record(value), replay=False)
    assert len(letters) == 1 and letters[0][0].value == value
    assert isinstance(letters[0][1], SchemaError)
    assert feed.hub.metrics.errors["feed_bad_message"] == 1
    feed._handle(feed.settings.topic(TRACKS_NEW), _record(NEW_TRACK), replay=False)
    assert library.index is not None and library.index.one(42) is not None
    assert len(letters) == 1


def test_a_feed_without_a_catalogue_does_not_read_the_track_topics(tmp_path: Path) -> None:
    feed = Feed(Settings(data_dir=tmp_path), Hub(queue_size=8))
    assert set(feed.names.values()) == {"recommendations", "trending", "dlq"}
    with_catalogue, _, _ = catalogue_feed(tmp_path)
    assert set(with_catalogue.names.values()) == {
        "recommendations",
        "trending",
        "dlq",
        "tracks.new",
        "tracks.assigned",
    }


class SeekingConsumer:
    """What ``Feed._seek`` asks of a consumer: offsets by time, log ends, seeks."""

    def __init__(self, ends: dict[Any, int]) -> None:
        self.ends, self.at, self.asked = ends, {}, {}

    async def offsets_for_times(self, times: dict[Any, int]) -> dict[Any, Any]:
        self.asked = dict(times)
        return {tp: SimpleNamespace(offset=1) for tp in times}

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: self.ends[tp] for tp in tps}

    def seek(self, tp: Any, offset: int) -> None:
        self.at[tp] = offset


def test_track_topics_resume_where_they_were_and_readiness_does_not_wait_for_them(tmp_path: Path) -> None:
    from aiokafka import TopicPartition

    feed, _, _ = catalogue_feed(tmp_path)
    reco, new = (
        TopicPartition(feed.settings.topic(RECOMMENDATIONS), 0),
        TopicPartition(feed.settings.topic(TRACKS_NEW), 0),
    )
    consumer = SeekingConsumer({reco: 5, new: 9})
    replaying, catching_up = asyncio.run(feed._seek(consumer, [reco, new]))
    assert consumer.at == {reco: 1, new: 1}
    assert replaying == {reco: 5, new: 9} and catching_up == {reco: 5}  # readiness: the lists only
    assert consumer.asked[new] > consumer.asked[reco]  # a minute of tracks, CADENZA_GATEWAY_REPLAY_S of lists
    feed.positions[new] = 7  # read up to 6 before the connection was lost
    replaying, catching_up = asyncio.run(feed._seek(consumer, [reco, new]))
    assert consumer.at[new] == 7 and replaying[new] == 9
