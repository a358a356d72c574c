"""Plays over the listener's websocket (issue 23): ``play`` frames published like ``POST /api/plays``,
answered with ``play_ack``/``play_error`` on the same socket, in order; anything else ignored.

Component tests on ``create_app(settings, start_feed=False)`` with in-memory MongoDB and Kafka
stand-ins (:mod:`tests.gateway.fakes`), the pure frame reader, and one test on the real stack
(Kafka and FerretDB): the frames' plays on ``cadenza.plays``, keyed by the token's listener.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr
from pymongo.database import Database
from starlette.testclient import TestClient
from websockets.sync.client import connect

from gateway.app import create_app
from gateway.intake import MAX_FRAME, MAX_REF, MAX_WAITING, Frame, read_frame
from gateway.track_index import TrackIndex
from gateway.track_json import Track
from infra.prometheus import parse_metrics
from infra.settings import Settings
from schemas.codec import decode
from schemas.events import PlayEvent
from schemas.topics import PLAYS
from tests.conftest import topic_reader
from tests.gateway import fakes
from tests.gateway.conftest import token_for
from tests.gateway.live_server import serve

TRACKS = [{"_id": i, "title": f"Song {i}", "audio_path": f"{i}.mp3"} for i in (1, 2, 3)]


def play(ref: Any, **data: Any) -> str:
    return json.dumps({"type": "play", "ref": ref, "data": data})


def receive(ws: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(ws.receive_text())
    return answer


def hello(ws: Any) -> None:
    assert receive(ws)["type"] == "hello"


def faked(settings: Settings, producer: Any = None) -> TestClient:
    app = create_app(settings, start_feed=False)
    app.state.gateway.mongo = fakes.Mongo(TRACKS)
    app.state.gateway.producer = producer if producer is not None else fakes.Producer()
    return TestClient(app)


def socket_of(client: TestClient, settings: Settings, user: str) -> Any:
    return client.websocket_connect(f"/ws?token={token_for(user, settings)}")


def gw_of(client: TestClient) -> Any:
    return client.app.state.gateway  # type: ignore[attr-defined]


def sent_events(producer: Any) -> list[tuple[bytes, PlayEvent]]:
    return [(key, decode(PlayEvent, value)) for _topic, key, value in producer.sent]


class SlowProducer(fakes.Producer):
    """Acknowledges each send after a random few milliseconds (or when ``gate`` opens)."""

    def __init__(self, *, gated: bool = False, delay_s: float = 0.004) -> None:
        super().__init__()
        self.gated, self.delay_s = gated, delay_s
        self.entered: list[bytes] = []
        self.gate: asyncio.Event | None = None

    async def send_and_wait(self, topic: str, *, key: bytes, value: bytes) -> None:
        self.entered.append(value)
        if self.gated:
            if self.gate is None:
                self.gate = asyncio.Event()
            await self.gate.wait()
        else:
            await asyncio.sleep(random.uniform(0, self.delay_s))
        await super().send_and_wait(topic, key=key, value=value)


# --- the frame reader (pure) ---------------------------------------------------------------------


def test_the_frame_reader_takes_play_frames_and_sorts_out_the_rest() -> None:
    data = {"track_id": 1, "kind": "play"}
    assert read_frame(play("r1", **data)) == Frame("r1", data)
    assert read_frame(play(7, **data)) == Frame(7, data)
    assert read_frame(json.dumps({"type": "play", "data": data})) == Frame(None, data)
    for other in ('{"type": "pong", "ts": 1}', '{"type": "nope"}', "{}", '{"type": ["play"]}'):
        assert read_frame(other) == "other", other
    for ignored in (
        "",
        "not json",
        "[1]",
        "1",
        "null",
        "[" * 5000,
        '{"a":' * 3000,
        play("x" * MAX_FRAME, **data),
    ):
        assert read_frame(ignored) == "ignored", ignored[:40]
    for bad_ref in (True, [1], {"a": 1}, "x" * (MAX_REF + 1), 2**53 + 1, 1e400):
        frame = read_frame(json.dumps({"type": "play", "ref": bad_ref, "data": data}))
        assert isinstance(frame, Frame) and (frame.status, frame.field, frame.ref) == (400, "ref", None)
    bad_data: Any
    for bad_data in (None, [], "x", 1):
        frame = read_frame(json.dumps({"type": "play", "ref": "r", "data": bad_data}))
        assert isinstance(frame, Frame) and (frame.status, frame.field, frame.ref) == (422, "data", "r")


# --- component: fakes for MongoDB and Kafka ------------------------------------------------------


def test_a_play_frame_is_published_for_the_tokens_listener_and_acked(component_settings: Settings) -> None:
    producer = fakes.Producer()
    with faked(component_settings, producer) as client, socket_of(client, component_settings, "alice") as ws:
        hello(ws)
        event_id = str(uuid.uuid4())
        ws.send_text(play("first", track_id=2, kind="skip", position_s=12.5, event_id=event_id))
        assert receive(ws) == {"type": "play_ack", "ref": "first", "event_id": event_id}
        ws.send_text(play(2, track_id=2, kind="play", user_id="mallory"))
        refused = receive(ws)
        assert (refused["type"], refused["ref"], refused["status"], refused["field"]) == (
            "play_error",
            2,
            422,
            "user_id",
        )
        [(key, event)] = sent_events(producer)
        assert key == b"alice"
        assert (event.user_id, event.track_id, event.kind.value, event.position_s, str(event.event_id)) == (
            "alice",
            2,
            "skip",
            12.5,
            event_id,
        )
        metrics = parse_metrics(client.get("/metrics").text)
    assert metrics["cadenza_gateway_plays_accepted_total"] == 1
    assert metrics['cadenza_gateway_plays_refused_total{field="user_id"}'] == 1
    assert metrics['cadenza_gateway_ws_frames_total{kind="play"}'] == 2


def test_bad_frames_get_a_play_error_or_are_ignored_and_the_socket_stays_open(
    component_settings: Settings,
) -> None:
    producer = fakes.Producer()
    with faked(component_settings, producer) as client, socket_of(client, component_settings, "bob") as ws:
        hello(ws)
        ws.send_bytes(b'{"type": "play", "ref": "b", "data": {"track_id": 1, "kind": "play"}}')
        for junk in (
            "not json",
            "[1, 2]",
            '{"type": "pong", "ts": 1}',
            '{"type": "unknown", "data": {}}',
            "[" * 10_000,
            '{"type": "play", "ref": "deep", "data": ' + "[" * 2000 + "]" * 2000 + "}",  # over 4 KiB
            play("big", track_id=1, kind="play", pad="x" * MAX_FRAME),
            "\x00" * 100,
        ):
            ws.send_text(junk)
        ws.send_text(json.dumps({"type": "play", "ref": ["no"], "data": {"track_id": 1, "kind": "play"}}))
        ws.send_text(json.dumps({"type": "play", "ref": "d", "data": "track 1"}))
        ws.send_text(json.dumps({"type": "play", "ref": "e"}))
        ws.send_text(play("f", track_id=1, kind="rewind"))
        ws.send_text(play("g", track_id=999, kind="play"))
        ws.send_text(play("h", track_id={"$gt": 0}, kind="play"))
        ws.send_text(play("i", track_id=1, kind="play", position_s=-1))
        ws.send_text(play("ok", track_id=1, kind="play"))
        answers = [receive(ws) for _ in range(8)]
        assert [(a["type"], a["ref"], a.get("status"), a.get("field")) for a in answers] == [
            ("play_error", None, 400, "ref"),
            ("play_error", "d", 422, "data"),
            ("play_error", "e", 422, "data"),
            ("play_error", "f", 422, "kind"),
            ("play_error", "g", 422, "track_id"),
            ("play_error", "h", 422, "track_id"),
            ("play_error", "i", 422, "position_s"),
            ("play_ack", "ok", None, None),
        ]
        assert all(isinstance(a["error"], str) and a["error"] for a in answers[:-1])
        assert "no track 999" in answers[4]["error"]
        assert len(producer.sent) == 1
        client.portal.call(gw_of(client).hub.push, "bob", '{"type":"recommendations","data":{"items":[]}}')  # type: ignore[union-attr]
        assert receive(ws)["type"] == "recommendations"  # still open, still fed
        metrics = parse_metrics(client.get("/metrics").text)
    assert metrics['cadenza_gateway_ws_frames_total{kind="play"}'] == 8
    assert metrics['cadenza_gateway_ws_frames_total{kind="other"}'] == 2
    assert metrics['cadenza_gateway_ws_frames_total{kind="ignored"}'] == 7


def test_plays_on_the_socket_share_the_listeners_rate_with_http(component_settings: Settings) -> None:
    settings = component_settings.model_copy(update={"plays_rate_per_s": 0.5, "plays_burst": 3})
    now = [1000.0]
    with faked(settings) as client, socket_of(client, settings, "carol") as ws:
        gw_of(client).plays_limiter.clock = lambda: now[0]
        hello(ws)
        headers = {"Authorization": f"Bearer {token_for('carol', settings)}"}
        body = {"track_id": 1, "kind": "play"}
        assert [client.post("/api/plays", json=body, headers=headers).status_code for _ in range(2)] == [
            202
        ] * 2
        ws.send_text(play(1, **body))
        assert receive(ws)["type"] == "play_ack"
        ws.send_text(play(2, **body))
        refused = receive(ws)
        assert (refused["type"], refused["ref"], refused["status"]) == ("play_error", 2, 429)
        assert refused["retry_after_s"] == pytest.approx(2.0) and "rate" in refused["error"]
        assert client.post("/api/plays", json=body, headers=headers).status_code == 429
        now[0] += 2.0  # one token back
        ws.send_text(play(3, **body))
        ack = receive(ws)
        assert (ack["type"], ack["ref"]) == ("play_ack", 3)
        assert len(gw_of(client).producer.sent) == 4
        metrics = parse_metrics(client.get("/metrics").text)
    assert metrics['cadenza_gateway_refused_total{reason="plays_rate"}'] == 2


def test_a_burst_of_plays_on_one_socket_is_published_and_answered_in_order(
    component_settings: Settings,
) -> None:
    producer = SlowProducer()
    kinds = ["play", "like", "skip", "complete"]
    with faked(component_settings, producer) as client, socket_of(client, component_settings, "dora") as ws:
        hello(ws)
        ids = [str(uuid.uuid4()) for _ in range(40)]
        for i, event_id in enumerate(ids):
            ws.send_text(play(i, track_id=1 + i % 3, kind=kinds[i % 4], event_id=event_id))
        answers = [receive(ws) for _ in ids]
    assert [(a["type"], a["ref"], a["event_id"]) for a in answers] == [
        ("play_ack", i, event_id) for i, event_id in enumerate(ids)
    ]
    assert [str(e.event_id) for _, e in sent_events(producer)] == ids


def test_known_tracks_are_checked_without_a_thread_or_mongodb(
    component_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with faked(component_settings) as client, socket_of(client, component_settings, "erin") as ws:
        gw = gw_of(client)
        hello(ws)
        gw.audio_paths.get(gw.db, 3)  # the audio route's cache knows track 3
        index = TrackIndex(None)
        index.put(Track(7, "Seven"), None)
        gw.library.index = index  # the in-memory catalogue knows track 7
        gw.mongo = None  # and nothing else can be asked

        async def no_thread(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a known track went to a worker thread")

        monkeypatch.setattr(gw, "query", no_thread)
        for ref, track in ((1, 7), (2, 3)):
            ws.send_text(play(ref, track_id=track, kind="play"))
            assert receive(ws)["type"] == "play_ack"
        headers = {"Authorization": f"Bearer {token_for('erin', component_settings)}"}
        assert (
            client.post("/api/plays", json={"track_id": 7, "kind": "play"}, headers=headers).status_code
            == 202
        )
        monkeypatch.undo()
        ws.send_text(play(3, track_id=2, kind="play"))  # held by neither: MongoDB, which is gone
        refused = receive(ws)
        assert (refused["type"], refused["status"]) == ("play_error", 503) and "MongoDB" in refused["error"]
    assert [e.track_id for _, e in sent_events(gw.producer)] == [7, 3, 7]


def test_kafka_trouble_is_a_503_play_error_and_the_socket_goes_on(component_settings: Settings) -> None:
    class Broken(fakes.Producer):
        async def send_and_wait(self, topic: str, *, key: bytes, value: bytes) -> None:
            raise KafkaConnectionError("broker gone")

    with faked(component_settings, Broken()) as client, socket_of(client, component_settings, "fred") as ws:
        hello(ws)
        ws.send_text(play("a", track_id=1, kind="play"))
        failed = receive(ws)
        assert (failed["type"], failed["ref"], failed["status"]) == ("play_error", "a", 503)
        assert "same event_id" in failed["error"]
        gw_of(client).producer = None
        ws.send_text(play("b", track_id=1, kind="play"))
        assert receive(ws)["status"] == 503
        gw_of(client).producer = fakes.Producer()
        ws.send_text(play("c", track_id=1, kind="play"))
        assert receive(ws)["type"] == "play_ack"
        metrics = parse_metrics(client.get("/metrics").text)
    assert metrics['cadenza_gateway_errors_total{kind="kafka_publish"}'] == 1


def test_plays_beyond_the_waiting_limit_are_refused_at_once(component_settings: Settings) -> None:
    settings = component_settings.model_copy(update={"ws_queue_size": 4 * MAX_WAITING, "plays_burst": 1000})
    producer = SlowProducer(gated=True)
    with faked(settings, producer) as client, socket_of(client, settings, "gina") as ws:
        hello(ws)
        ws.send_text(play(0, track_id=1, kind="play"))
        deadline = time.monotonic() + 5
        while not producer.entered:  # the first play is being published (and holds the lane)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for i in range(1, MAX_WAITING + 3):
            ws.send_text(play(i, track_id=1, kind="play"))
        early = [receive(ws) for _ in range(2)]  # answered at once, before the gate opens
        assert [(a["ref"], a["status"], a["retry_after_s"]) for a in early] == [
            (MAX_WAITING + 1, 429, 1.0),
            (MAX_WAITING + 2, 429, 1.0),
        ]
        assert producer.gate is not None
        client.portal.call(producer.gate.set)  # type: ignore[union-attr]
        acks = [receive(ws) for _ in range(MAX_WAITING + 1)]
    assert [(a["type"], a["ref"]) for a in acks] == [("play_ack", i) for i in range(MAX_WAITING + 1)]


def test_plays_received_before_the_socket_closes_are_still_published(component_settings: Settings) -> None:
    """A real server (the TestClient cancels the endpoint when its socket closes): the browser
    sends three plays and goes away at once; the endpoint publishes them before it returns."""
    producer = SlowProducer(delay_s=0.2)
    app = create_app(component_settings, start_feed=False)
    app.state.gateway.mongo = fakes.Mongo(TRACKS)
    app.state.gateway.producer = producer
    with serve(app) as running:
        url = f"ws://127.0.0.1:{running.port}/ws?token={token_for('hank', component_settings)}"
        with connect(url, proxy=None) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
            for i in range(3):
                ws.send(play(i, track_id=1, kind="play"))
        deadline = time.monotonic() + 5
        while len(producer.sent) < 3 or running.asgi_tasks():
            assert time.monotonic() < deadline, (producer.sent, running.asgi_tasks())
            time.sleep(0.02)
    assert [e.user_id for _, e in sent_events(producer)] == ["hank"] * 3


# --- the real stack --------------------------------------------------------------------------------

Db = Database[dict[str, Any]]


@pytest.fixture
def stack_client(topics: Settings, db: Db) -> Iterator[tuple[TestClient, Settings]]:
    settings = topics.model_copy(
        update={"token_secret": SecretStr("stack-secret"), "plays_rate_per_s": 0.01, "plays_burst": 30}
    )
    db.tracks.insert_many([{"_id": 10, "title": "Ten"}, {"_id": 11, "title": "Eleven"}])
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 30
        while (ready := client.get("/readyz")).status_code != 200 or ready.json()["catalogue"][
            "state"
        ] == "loading":
            assert time.monotonic() < deadline, ready.json()
            time.sleep(0.2)
        yield client, settings


def read_plays(settings: Settings, expect: int, timeout: float = 20.0) -> list[tuple[bytes, PlayEvent]]:
    c = topic_reader(settings, settings.topic(PLAYS))
    got: list[tuple[bytes, PlayEvent]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(got) < expect:
            for records in c.poll(timeout_ms=300).values():
                got += [(r.key, decode(PlayEvent, r.value)) for r in records]
        quiet = time.monotonic() + 1.5  # and nothing more arrives
        while time.monotonic() < quiet:
            for records in c.poll(timeout_ms=300).values():
                got += [(r.key, decode(PlayEvent, r.value)) for r in records]
    finally:
        c.close()
    return got


@pytest.mark.stack
def test_websocket_plays_reach_the_plays_topic_in_order_on_the_stack(
    stack_client: tuple[TestClient, Settings],
) -> None:
    client, settings = stack_client
    first = str(uuid.uuid4())
    with socket_of(client, settings, "wendy") as ws:
        hello(ws)
        ws.send_text(play("w1", track_id=10, kind="skip", position_s=3.5, event_id=first))
        assert receive(ws) == {"type": "play_ack", "ref": "w1", "event_id": first}
        ws.send_bytes(b"\xff\x00")
        ws.send_text("not json")
        ws.send_text('{"type": "pong", "ts": 1}')
        ws.send_text(json.dumps({"type": "play", "ref": {"x": 1}, "data": {}}))
        ws.send_text(play("w2", track_id=10, kind="play", user_id="mallory"))
        ws.send_text(play("w3", track_id=999, kind="play"))
        assert [(a["ref"], a["status"], a["field"]) for a in (receive(ws) for _ in range(3))] == [
            (None, 400, "ref"),
            ("w2", 422, "user_id"),
            ("w3", 422, "track_id"),
        ]
    kinds = ["play", "like", "complete"]
    ids = [str(uuid.uuid4()) for _ in range(31)]
    with socket_of(client, settings, "rita") as ws:
        hello(ws)
        for i, event_id in enumerate(ids):  # a burst: the bucket holds 30
            ws.send_text(play(i, track_id=10 + i % 2, kind=kinds[i % 3], event_id=event_id))
        answers = [receive(ws) for _ in ids]
    assert [(a["type"], a["ref"]) for a in answers] == [("play_ack", i) for i in range(30)] + [
        ("play_error", 30)
    ]
    assert answers[-1]["status"] == 429 and answers[-1]["retry_after_s"] > 1
    records = read_plays(settings, expect=31)
    assert [(k, e.user_id, str(e.event_id)) for k, e in records if k == b"wendy"] == [
        (b"wendy", "wendy", first)
    ]
    rita = [e for k, e in records if k == b"rita"]
    assert [str(e.event_id) for e in rita] == ids[:30]  # one partition per listener: in order
    assert all(e.user_id == "rita" for e in rita) and len(records) == 31


@pytest.mark.stack
def test_where_a_play_was_started_from_reaches_the_topic_and_the_acceptance_metrics(
    stack_client: tuple[TestClient, Settings],
) -> None:
    """Plays say their source (socket or POST); the gateway counts them by kind and source,
    and /api/ops turns the counts into acceptance and skip rates; a bad source is a 422."""
    client, settings = stack_client
    sent = [
        ("play", "up_next"),
        ("skip", "up_next"),
        ("play", "radio"),
        ("play", "browse"),
        ("play", "queue"),
        ("complete", "queue"),
        ("play", None),
    ]
    with socket_of(client, settings, "sam") as ws:
        hello(ws)
        for i, (kind, source) in enumerate(sent):
            data: dict[str, Any] = {"track_id": 10, "kind": kind}
            if source is not None:
                data["source"] = source
            ws.send_text(play(i, **data))
        assert [(a["type"], a["ref"]) for a in (receive(ws) for _ in sent)] == [
            ("play_ack", i) for i in range(len(sent))
        ]
        ws.send_text(play("bad", track_id=10, kind="play", source="billboard"))
        refused = receive(ws)
        assert (refused["type"], refused["status"], refused["field"]) == ("play_error", 422, "source")
    headers = {"Authorization": f"Bearer {token_for('sam', settings)}"}
    posted = client.post(
        "/api/plays", json={"track_id": 11, "kind": "skip", "source": "browse"}, headers=headers
    )
    assert posted.status_code == 202, posted.text
    bad = client.post("/api/plays", json={"track_id": 11, "kind": "play", "source": 3}, headers=headers)
    assert (bad.status_code, bad.json()["field"]) == (422, "source")

    records = read_plays(settings, expect=len(sent) + 1)
    assert [(e.kind.value, e.source.value if e.source else None) for k, e in records if k == b"sam"] == [
        *sent,
        ("skip", "browse"),
    ]
    metrics = parse_metrics(client.get("/metrics").text)
    assert metrics['cadenza_gateway_plays_total{kind="play",source="up_next"}'] == 1
    assert metrics['cadenza_gateway_plays_total{kind="skip",source="up_next"}'] == 1
    assert metrics['cadenza_gateway_plays_total{kind="play",source="unknown"}'] == 1
    assert metrics['cadenza_gateway_plays_total{kind="like",source="radio"}'] == 0  # exported from 0
    listening = client.get("/api/ops").json()["rates"]["listening"]
    # 5 starts (play), 2 of them from up next or radio; 1 of those 2 skipped; 1 of 1 browsed skipped.
    assert listening == {"acceptance": 0.4, "skip_recommended": 0.5, "skip_browsed": 1.0}
