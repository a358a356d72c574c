"""Gateway component tests (Starlette TestClient, no broker): auth, websockets, pages, sign-in."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from gateway.app import create_app
from gateway.errors import NotFoundError
from gateway.hub import CLOSE_SLOW, CLOSE_UNAUTHORIZED, Hub
from gateway.routes.params import parse_track_id
from infra.prometheus import parse_metrics
from infra.settings import Settings
from tests.gateway.conftest import token_for


def hub_of(client: TestClient) -> Hub:
    return client.app.state.gateway.hub  # type: ignore[attr-defined,no-any-return]


def reco(user: str, tracks: list[int]) -> str:
    data = {"user_id": user, "items": [{"track_id": t, "score": 1.0, "reason": "r"} for t in tracks]}
    return json.dumps({"type": "recommendations", "data": data}, separators=(",", ":"))


def receive(ws: Any) -> dict[str, Any]:
    return json.loads(ws.receive_text())  # type: ignore[no-any-return]


def test_websocket_refuses_missing_forged_and_expired_tokens(
    component: TestClient, component_settings: Settings
) -> None:
    forged = token_for("alice", component_settings)[:-2] + "xx"
    expired = token_for("alice", component_settings, ttl=1)
    component.app.state.gateway.clock = lambda: 4_000_000_000.0  # type: ignore[attr-defined]
    for url in ("/ws", f"/ws?token={forged}", f"/ws?token={expired}"):
        with component.websocket_connect(url) as ws, pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == CLOSE_UNAUTHORIZED
    for path in ("/api/me", "/api/tracks", "/api/recommendations", "/audio/1"):
        assert component.get(path).status_code == 401
        assert component.get(path, headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_each_listener_gets_only_their_recommendations(
    component: TestClient, component_settings: Settings
) -> None:
    hub = hub_of(component)
    ta, tb = token_for("alice", component_settings), token_for("bob", component_settings)
    with (
        component.websocket_connect(f"/ws?token={ta}") as a,
        component.websocket_connect(f"/ws?token={tb}") as b,
    ):
        assert receive(a) == {"type": "hello", "user_id": "alice"}
        assert receive(b) == {"type": "hello", "user_id": "bob"}
        component.portal.call(hub.push, "alice", reco("alice", [1, 2]))  # type: ignore[union-attr]
        component.portal.call(hub.push, "bob", reco("bob", [3]))  # type: ignore[union-attr]
        component.portal.call(hub.push, "alice", reco("alice", [4]))  # type: ignore[union-attr]
        got_a = [receive(a)["data"]["items"][0]["track_id"] for _ in range(2)]
        got_b = receive(b)
        assert got_a == [1, 4]
        assert got_b["data"]["user_id"] == "bob" and got_b["data"]["items"][0]["track_id"] == 3
        # Trending goes to everyone, as one batch frame per trending round.
        component.portal.call(hub.broadcast, 5, '{"type":"trending","data":{"cluster":5}}', 60.0)  # type: ignore[union-attr]
        component.portal.call(hub.flush_trending)  # type: ignore[union-attr]
        for socket in (a, b):
            frame = receive(socket)
            assert frame == {"type": "batch", "messages": [{"type": "trending", "data": {"cluster": 5}}]}
    assert hub.count() == 0
    assert component.app.state.gateway.metrics.messages_pushed == 5  # type: ignore[attr-defined]


def test_a_reconnecting_listener_gets_the_latest_list_at_once(
    component: TestClient, component_settings: Settings
) -> None:
    hub = hub_of(component)
    token = token_for("carol", component_settings)
    component.portal.call(hub.push, "carol", reco("carol", [7]))  # type: ignore[union-attr]
    component.portal.call(hub.push, "carol", reco("carol", [8, 9]))  # type: ignore[union-attr]
    for _ in range(2):
        with component.websocket_connect(f"/ws?token={token}") as ws:
            assert receive(ws)["type"] == "hello"
            latest = receive(ws)
            assert [i["track_id"] for i in latest["data"]["items"]] == [8, 9]
    r = component.get("/api/recommendations", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and [i["track_id"] for i in r.json()["items"]] == [8, 9]
    other = token_for("dave", component_settings)
    assert component.get("/api/recommendations", headers={"Authorization": f"Bearer {other}"}).json() == {
        "items": []
    }


def test_a_slow_connection_is_closed_with_4408_and_others_carry_on(
    component: TestClient, component_settings: Settings
) -> None:
    hub = hub_of(component)
    ts, tf = token_for("slow", component_settings), token_for("fast", component_settings)

    def flood() -> None:  # synchronously, before the writer can drain anything
        for i in range(component_settings.ws_queue_size + 5):
            hub.push("slow", reco("slow", [i + 1]))
        hub.push("fast", reco("fast", [99]))

    with (
        component.websocket_connect(f"/ws?token={ts}") as slow,
        component.websocket_connect(f"/ws?token={tf}") as fast,
    ):
        receive(slow), receive(fast)
        component.portal.call(flood)  # type: ignore[union-attr]
        assert receive(fast)["data"]["items"][0]["track_id"] == 99
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                receive(slow)
        assert closed.value.code == CLOSE_SLOW
        component.portal.call(hub.push, "fast", reco("fast", [100]))  # type: ignore[union-attr]
        assert receive(fast)["data"]["items"][0]["track_id"] == 100
    assert hub.metrics.slow_disconnects >= 1


def test_the_player_answers_pings_and_the_heartbeat_sends_them(component_settings: Settings) -> None:
    settings = component_settings.model_copy(update={"gateway_heartbeat_s": 0.05})
    client = TestClient(create_app(settings, start_feed=False))
    with client, client.websocket_connect(f"/ws?token={token_for('erin', settings)}") as ws:
        assert receive(ws)["type"] == "hello"
        ping = receive(ws)
        assert ping["type"] == "ping"
        ws.send_text(json.dumps({"type": "pong", "ts": ping["ts"]}))
        assert receive(ws)["type"] == "ping"


def test_signin_is_only_there_in_the_demo(component: TestClient, component_settings: Settings) -> None:
    assert component.get("/api/config").json()["demo_signin"] is True
    bad = component.post("/api/signin", json={"name": "no spaces allowed"})
    assert bad.status_code == 422 and bad.json()["field"] == "name"
    assert component.post("/api/signin", content=b"not json").status_code == 422
    ok = component.post("/api/signin", json={"name": "frank"})
    assert ok.status_code == 200
    me = component.get("/api/me", headers={"Authorization": f"Bearer {ok.json()['token']}"})
    assert me.json()["user_id"] == "frank"
    assert component.get("/api/me").json()["user_id"] == "frank"  # the sign-in cookie
    off = component_settings.model_copy(update={"demo_signin": False})
    with TestClient(create_app(off, start_feed=False)) as client:
        assert client.get("/api/config").json()["demo_signin"] is False
        assert client.post("/api/signin", json={"name": "frank"}).status_code == 404


def test_pages_health_and_metrics(component: TestClient) -> None:
    assert component.get("/healthz").json() == {"status": "ok"}
    index = component.get("/")
    assert index.status_code == 200 and 'id="player-audio"' in index.text
    assert component.get("/ops").status_code == 200
    assert component.get("/static/player.js").status_code == 200
    text = component.get("/metrics").text
    for name in (
        "cadenza_gateway_connections",
        "cadenza_gateway_fanout_seconds_bucket",
        "cadenza_consumer_lag_up",
    ):
        assert name in text
    assert component.get("/readyz").status_code == 503  # no broker, no database in this app


def test_metrics_is_prometheus_text_from_the_apps_own_registry(component_settings: Settings) -> None:
    """/metrics is prometheus_client's exposition of one registry per app: two apps in one
    process do not collide, and nothing lands in prometheus_client's global registry."""
    apps = [create_app(component_settings, start_feed=False) for _ in range(2)]
    apps[0].state.gateway.metrics.plays_refused["track_id"] += 2
    apps[0].state.gateway.metrics.fanout.observe(0.003)
    with TestClient(apps[0]) as client, TestClient(apps[1]) as other:
        response = client.get("/metrics")
        assert other.get("/metrics").status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    families = list(text_string_to_metric_families(response.text))
    types = {sample.name: family.type for family in families for sample in family.samples}
    assert types["cadenza_gateway_connections"] == "gauge"
    assert types["cadenza_gateway_fanout_seconds_bucket"] == "histogram"
    assert types["process_start_time_seconds"] == "gauge"
    for name in ("connections", "plays_accepted", "refused", "plays_refused", "auth_failures"):
        assert types[f"cadenza_gateway_{name}_total"] == "counter"
    names = {family.name for family in families}  # a counter's family name drops its _total
    assert {"cadenza_gateway_errors", "cadenza_consumer_lag", "cadenza_dead_letters"} <= names
    assert not [name for name in names | types.keys() if name.endswith("_created")]
    metrics = parse_metrics(response.text)
    assert metrics["cadenza_gateway_connections_total"] == 0
    assert metrics['cadenza_gateway_plays_refused_total{field="track_id"}'] == 2
    assert metrics['cadenza_gateway_refused_total{reason="plays_rate"}'] == 0
    assert metrics['cadenza_gateway_fanout_seconds_bucket{le="0.005"}'] == 1
    assert metrics["cadenza_gateway_fanout_seconds_count"] == 1
    assert metrics["cadenza_consumer_lag_up"] == 0  # lag "not read yet": this app has no broker
    assert metrics["process_start_time_seconds"] > 0
    assert REGISTRY.get_sample_value("cadenza_gateway_connections") is None


@pytest.mark.parametrize("text", ["0", "-1", "1e3", "abc", "12345678901234567", "9007199254740992", "٣"])
def test_odd_track_ids_are_not_found(text: str) -> None:
    with pytest.raises(NotFoundError):
        parse_track_id(text)


def test_track_ids_parse() -> None:
    assert parse_track_id("2") == 2 and parse_track_id("9007199254740991") == 2**53 - 1


def test_the_ops_data_names_each_consumer_group_and_streaming_query(component_settings: Settings) -> None:
    """Regression: the ops page's group column was blank (it reads ``group``; rows had ``name``)."""
    from infra.offsets import LagRow

    app = create_app(component_settings, start_feed=False)
    app.state.gateway.lag = [
        LagRow(
            kind="group",
            name="cadenza.recommender",
            topic="cadenza.plays",
            partition=0,
            committed=5,
            end=7,
            lag=2,
            state="Stable",
        ),
        LagRow(
            kind="query", name="plays-history", topic="cadenza.plays", partition=0, committed=6, end=7, lag=1
        ),
    ]
    with TestClient(app) as client:
        data = client.get("/api/ops").json()
    assert [(g["group"], g["lag"]) for g in data["groups"]] == [("cadenza.recommender", 2)]
    assert [(q["query"], q["processed"]) for q in data["streams"]] == [("plays-history", 6)]
    assert data["dead_letters"]["unreadable"] == 0
