"""The gateway on the real stack: plays to Kafka, catalogue API on FerretDB, audio, feed -> websocket, lag."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo.database import Database
from starlette.testclient import TestClient

from gateway.app import create_app
from infra.kafka_clients import consumer, producer
from infra.prometheus import parse_metrics
from infra.settings import Settings, child_env
from schemas.codec import decode, encode, encode_key
from schemas.events import DeadLetter, PlayEvent, Recommendation, RecommendedTrack
from schemas.topics import DLQ, PLAYS, RECOMMENDATIONS
from tests.conftest import topic_reader
from tests.gateway.conftest import token_for
from tests.recommender_stream.conftest import trained  # noqa: F401 - a fixture

pytestmark = [pytest.mark.stack]
Db = Database[dict[str, Any]]


def read_all(settings: Settings, topic: str, expect: int, timeout: float = 20.0) -> list[Any]:
    c = topic_reader(settings, topic)
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(got) < expect:
            for records in c.poll(timeout_ms=300).values():
                got.extend(records)
        # and nothing more arrives
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            for records in c.poll(timeout_ms=300).values():
                got.extend(records)
    finally:
        c.close()
    return got


@pytest.fixture
def gateway_settings(topics: Settings) -> Settings:
    return topics.model_copy(update={"token_secret": SecretStr("stack-secret"), "gateway_replay_s": 600.0})


@contextmanager
def started(settings: Settings) -> Iterator[TestClient]:
    """The gateway app, ready, and its catalogue loaded if it keeps one in memory."""
    with TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + 30
        while (ready := c.get("/readyz")).status_code != 200 or ready.json()["catalogue"][
            "state"
        ] == "loading":
            assert time.monotonic() < deadline, ready.json()
            time.sleep(0.2)
        yield c


@pytest.fixture
def client(gateway_settings: Settings, db: Db) -> Iterator[TestClient]:
    with started(gateway_settings) as c:
        yield c


def auth(settings: Settings, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user, settings)}"}


def test_a_reported_play_becomes_exactly_one_play_event(
    client: TestClient, gateway_settings: Settings, db: Db
) -> None:
    db.tracks.insert_many([{"_id": 10, "title": "Ten"}, {"_id": 11, "title": "Eleven"}])
    headers = auth(gateway_settings, "alice")
    event_id = str(uuid.uuid4())
    ok = client.post(
        "/api/plays",
        json={"track_id": 10, "kind": "skip", "position_s": 12.5, "event_id": event_id},
        headers=headers,
    )
    assert ok.status_code == 202 and ok.json() == {"event_id": event_id}
    bad = {
        "kind": ({"track_id": 10, "kind": "rewind"}, "kind"),
        "position": ({"track_id": 10, "kind": "play", "position_s": -1}, "position_s"),
        "user": ({"track_id": 10, "kind": "play", "user_id": "mallory"}, "user_id"),
        "unknown track": ({"track_id": 999, "kind": "play"}, "track_id"),
        "id type": ({"track_id": "10; drop", "kind": "play"}, "track_id"),
        "operator": ({"track_id": {"$gt": 0}, "kind": "play"}, "track_id"),
        "not an object": ([1, 2], "body"),
    }
    for name, (body, field) in bad.items():
        r = client.post("/api/plays", json=body, headers=headers)
        assert r.status_code == 422, name
        assert r.json()["field"] == field, name
    assert client.post("/api/plays", content=b"{not json", headers=headers).json()["field"] == "body"
    assert client.post("/api/plays", json={"track_id": 10, "kind": "play"}).status_code == 401
    records = read_all(gateway_settings, gateway_settings.topic(PLAYS), expect=1)
    assert len(records) == 1
    event = decode(PlayEvent, records[0].value)
    assert records[0].key == b"alice"
    assert (event.user_id, event.track_id, event.kind.value, event.position_s, str(event.event_id)) == (
        "alice",
        10,
        "skip",
        12.5,
        event_id,
    )


@pytest.mark.parametrize("memory", [True, False], ids=["memory", "mongodb"])
def test_catalogue_search_paging_genres_and_no_operator_injection(
    gateway_settings: Settings, db: Db, memory: bool
) -> None:
    db.tracks.insert_many(
        [
            {
                "_id": i,
                "title": f"Song {i}",
                "artist": "Band A" if i % 2 else "Band B",
                "genre_top": "Rock" if i < 8 else "Jazz",
            }
            for i in range(1, 13)
        ]
        + [{"_id": 50, "title": "a.*b (live)", "artist": "Regex", "genre_top": "Pop"}]
    )
    settings = gateway_settings.model_copy(update={"gateway_catalogue_memory": memory})
    with started(settings) as client:
        h = auth(gateway_settings, "bob")
        page1 = client.get("/api/tracks?q=song&per_page=5&page=1", headers=h).json()
        page3 = client.get("/api/tracks?q=song&per_page=5&page=3", headers=h).json()
        assert page1["total"] == 12 and [t["track_id"] for t in page1["items"]] == [1, 2, 3, 4, 5]
        assert [t["track_id"] for t in page3["items"]] == [11, 12]
        assert "features" not in page1["items"][0] and page1["items"][0]["audio_url"] == "/audio/1"
        jazz = client.get("/api/tracks?genre=Jazz&artist=band%20a", headers=h).json()
        assert [t["track_id"] for t in jazz["items"]] == [9, 11]
        # Query text is matched literally, never as a pattern or an operator: in MongoDB as a
        # substring; in memory as words, and ".*" holds none.
        literal = [t["track_id"] for t in client.get("/api/tracks?q=.*", headers=h).json()["items"]]
        assert literal == ([] if memory else [50])
        assert [t["track_id"] for t in client.get("/api/tracks?q=live", headers=h).json()["items"]] == [50]
        for hostile in ('{"$ne": null}', "[$ne]=1", "$where"):
            r = client.get("/api/tracks", params={"genre": hostile, "q": hostile}, headers=h)
            assert r.status_code == 200 and r.json()["total"] == 0
        r = client.get("/api/tracks?genre[$ne]=Rock", headers=h).json()
        assert r["total"] == 13  # an unknown parameter is ignored, not interpreted
        genres = client.get("/api/genres", headers=h).json()["items"]
        assert genres == [
            {"genre": "Rock", "tracks": 7},
            {"genre": "Jazz", "tracks": 5},
            {"genre": "Pop", "tracks": 1},
        ]
        assert client.get("/api/tracks/3", headers=h).json()["title"] == "Song 3"
        for missing in (
            "/api/tracks/777",
            "/api/tracks/abc",
            "/api/tracks/..%2F..%2Fetc",
            "/api/tracks/777/similar",
        ):
            assert client.get(missing, headers=h).status_code == 404


@pytest.mark.spark
def test_similar_tracks_are_the_nearest_of_the_same_cluster(
    trained: dict[str, Any],  # noqa: F811
    client: TestClient,
    gateway_settings: Settings,
    db: Db,
) -> None:
    seed = trained["stored"][0]["_id"]
    cluster = db.tracks.find_one({"_id": seed})["cluster"]  # type: ignore[index]
    got = client.get(f"/api/tracks/{seed}/similar?limit=5", headers=auth(gateway_settings, "carol")).json()
    assert got["cluster"] == cluster and len(got["items"]) == 5
    assert all(t["cluster"] == cluster and t["track_id"] != seed for t in got["items"])
    distances = [t["distance"] for t in got["items"]]
    assert distances == sorted(distances)
    same = db.tracks.count_documents({"cluster": cluster})
    everything = client.get(
        f"/api/tracks/{seed}/similar?limit=100", headers=auth(gateway_settings, "carol")
    ).json()
    assert len(everything["items"]) == same - 1


def test_audio_is_served_by_track_id_with_ranges(
    client: TestClient, gateway_settings: Settings, db: Db
) -> None:
    root = gateway_settings.audio_root
    (root / "000").mkdir(parents=True)
    payload = bytes(range(256)) * 400
    (root / "000" / "000002.mp3").write_bytes(payload)
    (gateway_settings.data_dir / "secret.txt").write_text("not audio")
    db.tracks.insert_many(
        [
            {"_id": 2, "title": "ok", "audio_path": "000/000002.mp3"},
            {"_id": 3, "title": "escape", "audio_path": "../secret.txt"},
            {"_id": 4, "title": "no file"},
        ]
    )
    h = auth(gateway_settings, "dave")
    full = client.get("/audio/2", headers=h)
    assert (
        full.status_code == 200 and full.content == payload and full.headers["content-type"] == "audio/mpeg"
    )
    part = client.get("/audio/2", headers={**h, "Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == payload[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(payload)}"
    assert client.get("/audio/2", headers={**h, "Range": f"bytes={len(payload)}-"}).status_code == 416
    again = client.get("/audio/2", headers={**h, "If-None-Match": full.headers["etag"]})
    assert again.status_code == 304
    token = token_for("dave", gateway_settings)
    assert client.get(f"/audio/2?token={token}", headers={"Range": "bytes=0-9"}).content == payload[:10]
    for bad in ("/audio/3", "/audio/4", "/audio/5", "/audio/..%2Fsecret.txt", "/audio/-1"):
        assert client.get(bad, headers=h).status_code == 404, bad


def test_recommendations_from_kafka_reach_the_listeners_websocket(
    client: TestClient, gateway_settings: Settings
) -> None:
    p = producer(gateway_settings)
    topic = gateway_settings.topic(RECOMMENDATIONS)

    def send(user: str, track: int) -> None:
        message = Recommendation(
            user_id=user, items=[RecommendedTrack(track_id=track, score=1.0, reason="r")]
        )
        p.send(topic, key=encode_key(user), value=encode(message))
        p.flush()

    token = token_for("erin", gateway_settings)
    with client.websocket_connect(f"/ws?token={token}") as ws:
        assert json.loads(ws.receive_text())["type"] == "hello"
        send("someone-else", 1)
        send("erin", 42)
        message = json.loads(ws.receive_text())
        assert message["type"] == "recommendations"
        assert message["data"]["user_id"] == "erin" and message["data"]["items"][0]["track_id"] == 42
    p.send(topic, key=b"erin", value=b"\xff not json")
    p.flush()
    letters = read_all(gateway_settings, gateway_settings.topic(DLQ), expect=1)
    assert len(letters) == 1
    letter = decode(DeadLetter, letters[0].value)
    assert letter.stage == "gateway" and letter.topic == topic
    p.close()


def test_a_new_gateway_knows_the_latest_lists_from_the_topic(gateway_settings: Settings, db: Db) -> None:
    p = producer(gateway_settings)
    topic = gateway_settings.topic(RECOMMENDATIONS)
    for track in (5, 6, 7):
        message = Recommendation(
            user_id="frank", items=[RecommendedTrack(track_id=track, score=1.0, reason="r")]
        )
        p.send(topic, key=b"frank", value=encode(message))
    p.flush()
    p.close()
    with TestClient(create_app(gateway_settings)) as c:
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        with c.websocket_connect(f"/ws?token={token_for('frank', gateway_settings)}") as ws:
            assert json.loads(ws.receive_text())["type"] == "hello"
            latest = json.loads(ws.receive_text())
            assert latest["data"]["items"][0]["track_id"] == 7


def test_lag_of_a_stopped_group_is_exact_in_the_cli_and_metrics(
    client: TestClient, gateway_settings: Settings, tmp_path: Path
) -> None:
    settings = gateway_settings
    topic = settings.topic(PLAYS)
    p = producer(settings)
    for i in range(30):
        p.send(topic, key=f"u{i % 5}".encode(), value=b"{}")
    p.flush()
    group = f"{settings.topic_prefix}lagtest"
    c = consumer(settings, topic, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False)
    seen = 0
    deadline = time.monotonic() + 20
    while seen < 30 and time.monotonic() < deadline:
        seen += sum(len(r) for r in c.poll(timeout_ms=300).values())
    c.commit()
    c.close()
    for i in range(17):
        p.send(topic, key=f"u{i % 5}".encode(), value=b"{}")
    p.flush()
    p.close()
    env = {**child_env(settings), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "infra", "lag", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [r for r in json.loads(out.stdout) if r["name"] == group]
    assert sum(r["lag"] for r in rows) == 17 and all(r["end"] - r["committed"] == r["lag"] for r in rows)
    client.app.state.gateway.lag_read = 0.0  # type: ignore[attr-defined]
    metrics = parse_metrics(client.get("/metrics").text)
    lags = [v for k, v in metrics.items() if k.startswith(f'cadenza_consumer_lag{{consumer="{group}",')]
    assert sum(lags) == 17
    assert metrics[f'cadenza_consumer_group_stable{{consumer="{group}",state="Empty"}}'] == 0
    table = subprocess.run(
        [sys.executable, "-m", "infra", "lag"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert group in table and "17" in table
